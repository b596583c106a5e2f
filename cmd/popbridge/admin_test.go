package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/admintest"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/admin"
)

type adminOAuth []admin.AccountState

func (a adminOAuth) OAuthStatus() []admin.AccountState { return a }

const adminTestToken = "cli-test-token-0123456789abcdef"

var adminT0 = time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)

// startAdmin runs an admin listener on 127.0.0.1 with a token over three
// sessions of two users and two OAuth2 accounts. It returns its address,
// the token's file and the session list.
func startAdmin(t *testing.T) (addr, tokenFile string, sessions *admintest.Sessions) {
	t.Helper()
	old := defaultConfigPath
	t.Cleanup(func() { defaultConfigPath = old })
	defaultConfigPath = filepath.Join(t.TempDir(), "absent.yaml")
	tokenFile = filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(adminTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	sessions = admintest.NewSessions([]pop3front.SessionInfo{
		{ID: "k1-1", User: "alice", Device: "phone", RemoteAddr: remote("192.0.2.7", 50001), Listener: "0.0.0.0:995", TLS: true,
			Since: adminT0, State: "transaction", Sent: 2048, Retrieved: 3, Marked: 2},
		{ID: "k1-2", User: "alice", Device: "phone", RemoteAddr: remote("192.0.2.8", 50002), Listener: "0.0.0.0:995", TLS: true,
			Since: adminT0.Add(time.Second), State: "transaction"},
		{ID: "k1-3", User: "bob", RemoteAddr: remote("2001:db8::1", 50003), Listener: "0.0.0.0:110",
			Since: adminT0.Add(2 * time.Second), State: "transaction"},
		{ID: "k1-4", RemoteAddr: remote("198.51.100.9", 50004), Listener: "0.0.0.0:110",
			Since: adminT0.Add(3 * time.Second), State: "authorization"},
	}...)
	effective := map[string]any{"upstream": map[string]any{"address": "imap.example.com:993", "password": "hunter2"}}
	s, err := admin.New(admin.Options{
		Config:    admin.Config{Listen: "127.0.0.1:0", TokenFile: tokenFile},
		Servers:   func() []admin.Sessions { return []admin.Sessions{sessions} },
		Effective: func() any { return effective },
		OAuth: adminOAuth{
			{Account: "alice", Provider: "m365", State: admin.TokenValid, ValidUntil: adminT0.Add(time.Hour)},
			{Account: "bob", Provider: "m365", State: admin.TokenNeedsLogin, LastError: "revoked"},
			{Account: "carol", Provider: "gmail", State: admin.TokenFailing, FailingSince: adminT0, LastError: "failed"},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s.Addr().String(), tokenFile, sessions
}

// runCLI runs popbridge with args and returns its exit code and outputs.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestAdminWho(t *testing.T) {
	addr, tokenFile, _ := startAdmin(t)
	flags := []string{"-admin", "http://" + addr, "-token-file", tokenFile}

	code, out, errOut := runCLI(append([]string{"who"}, flags...)...)
	want := "USER   DEVICE  SESSIONS  REMOTE\n" +
		"alice  phone   2         (192.0.2.7 192.0.2.8)\n" +
		"bob    -       1         (2001:db8::1)\n"
	if code != exitOK || out != want {
		t.Errorf("who = %d %q\n%s\nwant\n%s", code, errOut, out, want)
	}

	// The user may come before or after the flags.
	code, out, _ = runCLI(append([]string{"who", "bob"}, flags...)...)
	if code != exitOK || strings.Contains(out, "alice") || !strings.Contains(out, "bob ") {
		t.Errorf("who bob = %d\n%s", code, out)
	}

	code, out, _ = runCLI(append(append([]string{"who", "-l"}, flags...), "alice")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
		strings.Join(strings.Fields(lines[1]), " ") != "k1-1 alice phone 192.0.2.7:50001 0.0.0.0:995 yes - transaction 2026-12-06T01:00:00Z 2048 3 2" {
		t.Errorf("who -l alice = %d\n%s", code, out)
	}
	code, out, _ = runCLI(append([]string{"who", "-l"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "k1-4  -  ") || !strings.Contains(out, "authorization") {
		t.Errorf("who -l must list sessions not logged in yet:\n%s", out)
	}
}

func TestAdminKick(t *testing.T) {
	addr, tokenFile, sessions := startAdmin(t)
	flags := []string{"-admin", addr, "-token-file", tokenFile}

	code, out, errOut := runCLI(append([]string{"kick", "alice"}, flags...)...)
	if code != exitOK || out != "kicked 2 session(s) of user alice: closed without UPDATE, nothing deleted\n" {
		t.Errorf("kick alice = %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(append([]string{"kick", "-id", "k1-3"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "kicked 1 session(s) with id k1-3") {
		t.Errorf("kick -id k1-3 = %d %q", code, out)
	}
	if left := sessions.Sessions(); len(left) != 1 || left[0].ID != "k1-4" {
		t.Errorf("left after the kicks: %+v", left)
	}
	code, _, errOut = runCLI(append([]string{"kick", "alice"}, flags...)...)
	if code != exitFail || !strings.Contains(errOut, "no open session of user alice") {
		t.Errorf("kick alice again = %d %q, want %d and why", code, errOut, exitFail)
	}
	for _, args := range [][]string{{"kick"}, {"kick", "-id", "k1-1", "bob"}, {"kick", "a", "b"}} {
		code, _, errOut = runCLI(append(args, flags...)...)
		if code != exitConfig || !strings.Contains(errOut, "give USER or -id ID") {
			t.Errorf("%v = %d %q, want a usage error", args, code, errOut)
		}
	}
}

func TestAdminConfigAndOAuthStatus(t *testing.T) {
	addr, tokenFile, _ := startAdmin(t)
	flags := []string{"-admin", addr, "-token-file", tokenFile}

	code, out, errOut := runCLI(append([]string{"config"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "address: imap.example.com:993") ||
		!strings.Contains(out, "password: "+admin.Redacted) || strings.Contains(out, "hunter2") {
		t.Errorf("config = %d %q\n%s", code, errOut, out)
	}

	code, out, errOut = runCLI(append([]string{"oauth", "status"}, flags...)...)
	want := "ACCOUNT  PROVIDER  STATE            DETAIL\n" +
		"carol    gmail     refresh_failing  refresh failing since 2026-12-06T01:00:00Z (last error: failed)\n" +
		"alice    m365      valid            access token valid until 2026-12-06T02:00:00Z\n" +
		"bob      m365      needs_login      revoked; run: popbridge oauth login -config FILE bob\n"
	if code != exitOK || out != want {
		t.Errorf("oauth status = %d %q\n%s\nwant\n%s", code, errOut, out, want)
	}
}

// The address and the token come from the configuration file's admin
// section, the one given or the default one.
func TestAdminDefaultsFromTheConfigFile(t *testing.T) {
	addr, tokenFile, _ := startAdmin(t)
	_, port, _ := net.SplitHostPort(addr)
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	doc := fmt.Sprintf("upstream:\n  address: imap.example.com:993\nadmin:\n  listen: 127.0.0.1:%s\n  token_file: %s\n", port, tokenFile)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI("who", "-config", path); code != exitOK || !strings.Contains(out, "alice") {
		t.Errorf("who -config = %d %q %q", code, out, errOut)
	}
	defaultConfigPath = path
	if code, out, errOut := runCLI("who"); code != exitOK || !strings.Contains(out, "alice") {
		t.Errorf("who with the default config file = %d %q %q", code, out, errOut)
	}
	// A flag wins over the file.
	if code, _, errOut := runCLI("who", "-token-file", os.DevNull); code != exitFail || !strings.Contains(errOut, "admin.token_file") {
		t.Errorf("who -token-file /dev/null = %d %q, want the empty token refused", code, errOut)
	}

	off := filepath.Join(t.TempDir(), "off.yaml")
	os.WriteFile(off, []byte("upstream:\n  address: imap.example.com:993\n"), 0o600)
	if code, _, errOut := runCLI("who", "-config", off); code != exitFail || !strings.Contains(errOut, "admin.listen is not set") {
		t.Errorf("who with the listener off = %d %q", code, errOut)
	}
}

func TestAdminRefusals(t *testing.T) {
	addr, _, _ := startAdmin(t)
	if code, _, errOut := runCLI("who", "-admin", addr); code != exitFail || !strings.Contains(errOut, "401") ||
		!strings.Contains(errOut, "-token-file") {
		t.Errorf("who without the token = %d %q, want 401 and a hint", code, errOut)
	}
	if code, _, errOut := runCLI("config"); code != exitFail || !strings.Contains(errOut, "give -admin URL, or -config FILE") {
		t.Errorf("config with no admin address = %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("who", "-admin", addr, "a", "b"); code != exitConfig || !strings.Contains(errOut, "one USER at most") {
		t.Errorf("who a b = %d %q", code, errOut)
	}
	if code, _, _ := runCLI("oauth", "status", "-nope"); code != exitConfig {
		t.Errorf("oauth status -nope = %d, want %d", code, exitConfig)
	}
}

func TestAdminCommandsInTheUsage(t *testing.T) {
	_, out, _ := runCLI("help")
	for _, want := range []string{"popbridge who [-l]", "popbridge kick [ADMIN FLAGS] USER | -id ID", "popbridge config [ADMIN FLAGS]",
		"popbridge oauth status", "ADMIN FLAGS: -admin URL -token-file FILE -config FILE"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := runCLI("oauth", "logout"); code != exitConfig || !strings.Contains(errOut, "want login, keygen or status") {
		t.Errorf("oauth logout = %d %q", code, errOut)
	}
}
