package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/admin"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// popbridgeCLI runs the binary with args and returns its exit code and
// its stdout and stderr together.
func popbridgeCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("popbridge %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestAdminViewOfARunningPopbridge runs the binary with an admin listener
// over an in-memory upstream and an OAuth2 account, and the admin verbs as
// an operator would: who sees a POP3 session, kick closes it without its
// UPDATE state, config shows the configuration without its secrets, oauth
// status the account's state; without the token the listener refuses.
func TestAdminViewOfARunningPopbridge(t *testing.T) {
	t.Parallel()
	up, err := startDemo()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	idp := oauthtest.Start(t, oauthtest.Options{})

	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(token, []byte("admin-e2e-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pop3, metrics, adminAddr := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	cfg := bridgeConfig(up.Addr, pop3, metrics, oauthtest.ConfigSection(t, idp, "code", "")+
		fmt.Sprintf("admin:\n  listen: %s\n  token_file: %s\n", adminAddr, token))
	b := startBridge(t, cfg, metrics)
	b.waitLog(t, `msg="serving the admin view" addr=`+adminAddr+` token=true`)

	c := pop3test.Dial(t, pop3)
	c.Login("demo", "demo")
	n, _ := c.Stat()
	c.OK("DELE 1")

	code, out := popbridgeCLI(t, "who", "-l", "-config", b.config)
	if code != exitOK || !strings.Contains(out, "demo ") || !strings.Contains(out, c.Conn.LocalAddr().String()) ||
		!strings.Contains(out, "transaction") {
		t.Errorf("who -l = %d\n%s\nwant the demo session from %s", code, out, c.Conn.LocalAddr())
	}
	code, out = popbridgeCLI(t, "who", "-config", b.config)
	if code != exitOK || !strings.Contains(out, "demo") || !strings.Contains(out, "(127.0.0.1)") {
		t.Errorf("who = %d\n%s", code, out)
	}

	// The kick closes the connection; the DELE marked before is not
	// carried out.
	code, out = popbridgeCLI(t, "kick", "-config", b.config, "demo")
	if code != exitOK || !strings.Contains(out, "kicked 1 session(s) of user demo") {
		t.Errorf("kick demo = %d\n%s", code, out)
	}
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(c); err != nil && !strings.Contains(err.Error(), "reset") || len(got) != 0 {
		t.Errorf("the kicked client read %q, %v; want the connection closed", got, err)
	}
	b.waitLog(t, `admin kick: closed without UPDATE`)
	c = pop3test.Dial(t, pop3)
	c.Login("demo", "demo")
	if after, _ := c.Stat(); after != n {
		t.Errorf("after the kick: %d messages, want %d: a kick must delete nothing", after, n)
	}
	c.Quit()
	for i := 0; ; i++ {
		code, out = popbridgeCLI(t, "who", "-config", b.config, "demo")
		if code == exitOK && !strings.Contains(out, "demo") {
			break
		}
		if i == 50 {
			t.Fatalf("who demo after the kick and a QUIT = %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	code, out = popbridgeCLI(t, "config", "-config", b.config)
	if code != exitOK || !strings.Contains(out, "password_hash: "+admin.Redacted) || strings.Contains(out, oauthtest.LocalHash) ||
		!strings.Contains(out, "address: "+up.Addr) || !strings.Contains(out, "token_file: "+token) {
		t.Errorf("config = %d\n%s\nwant the configuration with password_hash redacted", code, out)
	}

	// The account never got a refresh token: a login finds out, and
	// oauth status says what to run.
	c = pop3test.Dial(t, pop3)
	c.OK("USER " + oauthtest.FixtureAccount)
	if got := c.Cmd("PASS " + oauthtest.LocalPassword); !strings.HasPrefix(got, "-ERR [SYS/PERM]") {
		t.Errorf("login of the unauthorised account: %q", got)
	}
	code, out = popbridgeCLI(t, "oauth", "status", "-config", b.config)
	if code != exitOK || !strings.Contains(out, "scanner") || !strings.Contains(out, "needs_login") ||
		!strings.Contains(out, "popbridge oauth login") {
		t.Errorf("oauth status = %d\n%s", code, out)
	}

	// Without the token: 401, and the CLI says what it wants.
	resp, err := http.Get("http://" + adminAddr + "/sessions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /sessions without a token: %s, want 401", resp.Status)
	}
	code, out = popbridgeCLI(t, "who", "-admin", adminAddr)
	if code != exitFail || !strings.Contains(out, "bearer token") {
		t.Errorf("who without a token = %d\n%s", code, out)
	}

	// A rotated token takes effect at SIGHUP; the old one is refused.
	old := filepath.Join(dir, "old.token")
	if err := os.Rename(token, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("admin-e2e-rotated-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	for i := 0; ; i++ {
		if code, out = popbridgeCLI(t, "who", "-config", b.config); code == exitOK {
			break
		}
		if i == 50 {
			t.Fatalf("who with the rotated token after SIGHUP = %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, out = popbridgeCLI(t, "who", "-admin", adminAddr, "-token-file", old); code != exitFail || !strings.Contains(out, "401") {
		t.Errorf("who with the old token after the reload = %d\n%s", code, out)
	}
}

// TestCheckConfigRefusesAnOpenAdminListener: a non-loopback admin
// listener without a token file fails check-config, as it would the start.
func TestCheckConfigRefusesAnOpenAdminListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	if err := os.WriteFile(path, []byte("upstream:\n  address: imap.example.com:993\nadmin:\n  listen: 0.0.0.0:9111\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("check-config", path)
	want := `admin.listen (line 4): "0.0.0.0:9111" is not a loopback address: a non-loopback admin listener needs admin.token_file`
	if code != exitConfig || !strings.Contains(errOut, want) {
		t.Errorf("check-config = %d %q %q, want exit %d and %q", code, out, errOut, exitConfig, want)
	}
}

// The token states of the cache and of the admin listener are the same
// strings: the adapter copies them.
func TestTokenStatesAgree(t *testing.T) {
	for got, want := range map[string]string{oauth2.StateValid: admin.TokenValid, oauth2.StateIdle: admin.TokenIdle,
		oauth2.StateNeedsLogin: admin.TokenNeedsLogin, oauth2.StateFailing: admin.TokenFailing} {
		if got != want {
			t.Errorf("oauth2 state %q, admin state %q", got, want)
		}
	}
}

// TestAdminListenerThatCannotBeBound: the daemon does not start, with a
// runtime failure (exit 1), not a configuration error.
func TestAdminListenerThatCannotBeBound(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	cfg := fmt.Sprintf("listen:\n  - address: %s\nupstream: {address: 127.0.0.1:1, tls: none}\nadmin:\n  listen: %s\n",
		testkit.FreeAddr(t), busy.Addr())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := popbridgeCLI(t, "-config", path)
	if code != exitFail || !strings.Contains(out, "popbridge: admin: admin.listen:") {
		t.Errorf("start with the admin address in use = %d\n%s\nwant exit %d", code, out, exitFail)
	}
}
