package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "popbridge-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "popbridge")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startDemo runs the real binary with no configuration and returns the
// POP3 address from the line it prints.
func runDemoBinary(t *testing.T) (addr string, cmd *exec.Cmd) {
	t.Helper()
	cmd = exec.Command(binary, "-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("popbridge stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		m := regexp.MustCompile(`curl pop3://demo:demo@([0-9.:]+)/1`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("demo printed %q, want a curl command line", line)
		}
		return m[1], cmd
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start within 20s")
	}
	return "", nil
}

func demoMessage(i int) []byte { return crlf(demoMessages[i]) }

func TestDemoServesCurl(t *testing.T) {
	curl := testkit.Program(t, "curl")
	addr, _ := runDemoBinary(t)
	url := "pop3://demo:demo@" + addr + "/"
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	var want strings.Builder
	for i := range demoMessages {
		want.WriteString(strings.Join([]string{itoa(i + 1), itoa(len(demoMessage(i)))}, " ") + "\r\n")
	}
	if got := run(url); got != want.String() {
		t.Errorf("curl list = %q, want %q", got, want.String())
	}
	for i := range demoMessages {
		if got := run(url + itoa(i+1)); got != string(demoMessage(i)) {
			t.Errorf("curl retrieve %d = %q, want %q", i+1, got, demoMessage(i))
		}
	}
	// Delete message 1: curl sends DELE 1 and then QUIT.
	run("-X", "DELE", "-I", url+"1")
	if got := run(url); strings.Count(got, "\r\n") != len(demoMessages)-1 || strings.HasPrefix(got, "1 "+itoa(len(demoMessage(0)))+"\r\n") {
		t.Errorf("after DELE 1 and QUIT, list = %q", got)
	}
}

// pythonPoplib downloads and deletes with Python's poplib, the library
// behind many scripts and ticket-system importers.
const pythonPoplib = `
import json, poplib, sys
host, port = sys.argv[1].rsplit(":", 1)
p = poplib.POP3(host, int(port), timeout=20)
caps = p.capa()
p.user("demo"); p.pass_("demo")
count, size = p.stat()
uidl = [l.decode() for l in p.uidl()[1]]
msgs = ["\r\n".join(l.decode("utf-8", "surrogateescape") for l in p.retr(i)[1]) + "\r\n" for i in range(1, count + 1)]
top = [l.decode() for l in p.top(2, 0)[1]]
p.dele(count)
quit = p.quit().decode()
p = poplib.POP3(host, int(port), timeout=20)
p.user("demo"); p.pass_("demo")
after, _ = p.stat()
p.quit()
json.dump({"caps": sorted(caps), "count": count, "size": size, "uidl": uidl, "msgs": msgs,
           "top": top, "quit": quit, "after": after}, sys.stdout)
`

func TestDemoServesPythonPoplib(t *testing.T) {
	python := testkit.Program(t, "python3")
	addr, _ := runDemoBinary(t)
	out, err := exec.Command(python, "-c", pythonPoplib, addr).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	var got struct {
		Caps  []string
		Count int
		Size  int
		UIDL  []string
		Msgs  []string
		Top   []string
		Quit  string
		After int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	wantCaps := []string{"AUTH-RESP-CODE", "IMPLEMENTATION", "PIPELINING", "RESP-CODES", "SASL", "TOP", "UIDL", "USER"}
	if strings.Join(got.Caps, ",") != strings.Join(wantCaps, ",") {
		t.Errorf("CAPA = %v, want %v", got.Caps, wantCaps)
	}
	total := 0
	for i := range demoMessages {
		total += len(demoMessage(i))
		if i < len(got.Msgs) && got.Msgs[i] != string(demoMessage(i)) {
			t.Errorf("RETR %d = %q, want %q", i+1, got.Msgs[i], demoMessage(i))
		}
	}
	if got.Count != len(demoMessages) || got.Size != total || len(got.Msgs) != got.Count {
		t.Errorf("STAT = %d %d with %d messages retrieved, want %d %d", got.Count, got.Size, len(got.Msgs), len(demoMessages), total)
	}
	if len(got.UIDL) != got.Count || got.UIDL[0] != "1 0000000100000001" {
		t.Errorf("UIDL = %v", got.UIDL)
	}
	header, _, _ := strings.Cut(string(demoMessage(1)), "\r\n\r\n")
	if strings.Join(got.Top, "\r\n") != header+"\r\n" {
		t.Errorf("TOP 2 0 = %q, want the header and the blank line", got.Top)
	}
	if !strings.HasPrefix(got.Quit, "+OK") || got.After != got.Count-1 {
		t.Errorf("QUIT %q, then %d messages; want +OK and %d", got.Quit, got.After, got.Count-1)
	}
}

func TestSIGTERMExitsCleanly(t *testing.T) {
	_, cmd := runDemoBinary(t)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("popbridge did not exit within 15s of SIGTERM")
	}
}

func TestVersionAndCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string { return testkit.WriteFile(t, dir, name, content) }
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout or stderr
	}{
		{"version", []string{"version"}, exitOK, "popbridge dev"},
		{"example config", []string{"check-config", "../../deploy/popbridge.yaml"}, exitOK, "ok"},
		{"minimal config", []string{"check-config", write("min.yaml", "upstream:\n  address: imap.example.com:993\n")}, exitOK, "ok"},
		{"unknown key names its line", []string{"check-config", write("typo.yaml", "upstream:\n  address: imap.example.com:993\n  mailbx: INBOX\n")},
			exitConfig, "upstream.mailbx (line 3): unknown key; did you mean mailbox?"},
		{"bad value", []string{"check-config", write("bad.yaml", "upstream:\n  address: imap.example.com:993\n  tls: maybe\n")},
			exitConfig, `upstream.tls (line 3): "maybe" is not one of implicit, starttls, none`},
		{"missing upstream", []string{"check-config", write("empty.yaml", "log:\n  level: debug\n")}, exitConfig, "upstream.address: required"},
		{"bad uidl format", []string{"check-config", write("uidl.yaml", "upstream:\n  address: a:1\npolicy:\n  uidl_format: '%v'\n")},
			exitConfig, "must contain %u"},
		{"missing file", []string{"check-config", filepath.Join(dir, "nope.yaml")}, exitConfig, "no such file"},
		{"bad flag", []string{"-no-such-flag"}, exitConfig, "flag provided but not defined"},
		{"bad config on start", []string{"-upstream", "imap.example.com:993", "-upstream-tls", "ssl"}, exitConfig, "upstream.tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, tc.args, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Errorf("exit %d, output %q; want exit %d and %q", code, out, tc.wantCode, tc.wantOut)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// In JSON logs a duration is seconds as a number; in text, Go's form.
func TestJSONLogDurationsAreSeconds(t *testing.T) {
	var buf bytes.Buffer
	newLogger("json", slog.LevelInfo, &buf).With("idle", 10*time.Minute).WithGroup("g").
		Info("session ended", "duration", 1500*time.Millisecond, "count", 3)
	var rec struct {
		Idle float64 `json:"idle"`
		G    struct {
			Duration any `json:"duration"`
			Count    any `json:"count"`
		} `json:"g"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec.Idle != 600 || rec.G.Duration != 1.5 || rec.G.Count != 3.0 {
		t.Errorf("got %s, want idle 600, duration 1.5 and count 3", buf.String())
	}
	buf.Reset()
	newLogger("text", slog.LevelInfo, &buf).Info("session ended", "duration", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), "duration=1.5s") {
		t.Errorf("text log %q, want duration=1.5s", buf.String())
	}
}
