// python_test.go runs Login against a hook written in Python
// (testdata/hook.py), to show that a hook needs nothing from Go.

package authhttp

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// startPythonHook runs testdata/hook.py and returns its URL.
func startPythonHook(t *testing.T, secret string) string {
	t.Helper()
	python := testkit.Program(t, "python3")
	cmd := exec.Command(python, "testdata/hook.py", secret)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	select {
	case p := <-port:
		if p == "" {
			t.Fatal("the Python hook did not start")
		}
		return "http://127.0.0.1:" + p + "/auth"
	case <-time.After(20 * time.Second):
		t.Fatal("the Python hook did not start in time")
	}
	return ""
}

func TestPythonHook(t *testing.T) {
	url := startPythonHook(t, "hook-secret")
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("hook-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{URL: url, Headers: []Header{{Name: "X-Auth-Key", ValueFile: secret}},
		Servers: []Server{{Address: "127.0.0.1:1143", TLS: "none"}}}
	c, obs := newClient(t, cfg, Options{})

	for _, tc := range []struct{ user, pass, mailbox string }{
		{"alice", "pw", "Users/alice"},
		{"jürgen@example.org", "pä ss+%", "Users/jürgen@example.org"},
	} {
		a, err := login(c, tc.user, tc.pass)
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		if a.Addr.String() != "127.0.0.1:1143" || a.User != "master" || a.Pass != "master-secret" ||
			a.Mailbox != tc.mailbox || a.Device != "desk" || a.Server == nil {
			t.Fatalf("%s: answer %+v", tc.user, a)
		}
	}
	_, err := login(c, "jürgen@example.org", "pä ss %")
	var de *DeniedError
	if !errors.As(err, &de) || popReply(err) != "[AUTH] Invalid login or password" || de.Wait != time.Millisecond {
		t.Fatalf("wrong password: %v", err)
	}

	c.headers[0][1] = "wrong"
	if _, err := login(c, "alice", "pw"); popReply(err) != "[AUTH] Hook refused the request" {
		t.Fatalf("wrong secret: %v", err)
	}
	if got := obs.list(); got != "ok,ok,denied,denied" {
		t.Fatalf("observed %q", got)
	}
}
