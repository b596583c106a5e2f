package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/oauth2/passhash"
)

// runBinary runs the popbridge binary to its end with stdin and returns
// its exit code, stdout and stderr.
func runBinary(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("popbridge %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// argon2idMatches checks password against a PHC argon2id string on its
// own, with nothing of popbridge's parser.
func argon2idMatches(t *testing.T, phc, password string) bool {
	t.Helper()
	f := strings.Split(phc, "$")
	var m, tm uint32
	var p uint8
	if len(f) != 6 || f[1] != "argon2id" || f[2] != "v=19" {
		t.Fatalf("%q is not an argon2id PHC string", phc)
	}
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &tm, &p); err != nil {
		t.Fatalf("%q: parameters: %v", phc, err)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
	key, err2 := base64.RawStdEncoding.DecodeString(f[5])
	if err1 != nil || err2 != nil {
		t.Fatalf("%q: salt or hash not unpadded base64", phc)
	}
	return subtle.ConstantTimeCompare(argon2.IDKey([]byte(password), salt, tm, m, p, uint32(len(key))), key) == 1
}

func TestHashPasswordCommandPrintsAHashThatVerifiesAndConfigsAccept(t *testing.T) {
	t.Parallel()
	const password = "Scanner-Pa55 with spaces"
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		prefix string
		check  func(hash string) bool
	}{
		{"argon2id", []string{"hash-password"}, password + "\n", "$argon2id$v=19$m=19456,t=2,p=1$",
			func(h string) bool { return argon2idMatches(t, h, password) && !argon2idMatches(t, h, password+"x") }},
		{"argon2id, CRLF line end", []string{"hash-password"}, password + "\r\n", "$argon2id$",
			func(h string) bool { return argon2idMatches(t, h, password) }},
		{"bcrypt", []string{"hash-password", "-bcrypt"}, password, "$2a$10$",
			func(h string) bool {
				return bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil &&
					bcrypt.CompareHashAndPassword([]byte(h), []byte(password+"x")) != nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, tc.stdin, tc.args...)
			if code != exitOK || strings.Count(stdout, "\n") != 1 || !strings.HasPrefix(stdout, tc.prefix) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want one line starting %q", code, stdout, stderr, tc.prefix)
			}
			if strings.Contains(stdout+stderr, "Pa55") {
				t.Fatalf("the password is in the output: %q %q", stdout, stderr)
			}
			hash := strings.TrimSuffix(stdout, "\n")
			if !tc.check(hash) {
				t.Fatalf("hash %q does not verify the password (or verifies another)", hash)
			}
			// check-config takes it as an account's password_hash.
			dir := t.TempDir()
			config := filepath.Join(dir, "popbridge.yaml")
			os.WriteFile(config, []byte(fmt.Sprintf(`upstream: {address: imap.example.com:993}
oauth2:
  token_store: {dir: %s}
  providers:
    m365: {preset: microsoft, client_id: 00000000-0000-0000-0000-000000000000}
  accounts:
    - {user: scanner, password_hash: '%s', provider: m365}
`, dir, hash)), 0o600)
			if code, stdout, stderr := runBinary(t, "", "check-config", config); code != exitOK {
				t.Fatalf("check-config of an account with this hash: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}

func TestHashPasswordCommandRefusesNoPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, stdin, want string }{
		{"empty stdin", "", "the password is empty"},
		{"empty line", "\n", "the password is empty"},
		{"too long", strings.Repeat("x", 5000) + "\n", "longer than 4096 octets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, tc.stdin, "hash-password")
			if code != exitFail || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, exitFail, tc.want)
			}
		})
	}
	code, _, stderr := runBinary(t, strings.Repeat("y", 80)+"\n", "hash-password", "-bcrypt")
	if code != exitFail || !strings.Contains(stderr, "72") || strings.Contains(stderr, "yyyy") {
		t.Errorf("bcrypt of 80 octets: exit %d, stderr %q; want a refusal naming bcrypt's 72-octet limit", code, stderr)
	}
}

func TestOAuthKeygenWritesAKeyAndRefusesToOverwriteIt(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token-store.key")
	code, stdout, stderr := runBinary(t, "", "oauth", "keygen", path)
	if code != exitOK || !strings.Contains(stdout, "oauth2.token_store.key_file") {
		t.Fatalf("keygen: exit %d\n%s%s", code, stdout, stderr)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(path)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(key)))
	if st.Mode().Perm() != 0o600 || err != nil || len(raw) != 32 {
		t.Fatalf("key file mode %v, content %q: want 0600 and 32 octets base64", st.Mode().Perm(), key)
	}
	if strings.Contains(stdout+stderr, strings.TrimSpace(string(key))) {
		t.Fatal("keygen printed the key")
	}

	code, stdout, stderr = runBinary(t, "", "oauth", "keygen", path)
	if code != exitFail || !strings.Contains(stderr, "exists: not overwritten") {
		t.Fatalf("second keygen: exit %d\n%s%s; want a refusal", code, stdout, stderr)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, key) {
		t.Fatal("the second keygen changed the key")
	}
	if code, _, stderr := runBinary(t, "", "oauth", "keygen"); code != exitConfig || !strings.Contains(stderr, "usage: popbridge oauth keygen FILE") {
		t.Errorf("keygen without FILE: exit %d, %q", code, stderr)
	}
}

func TestUsageListsTheOperatorCommands(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runBinary(t, "", "help")
	for _, want := range []string{"check-config FILE", "oauth login -config FILE", "oauth keygen FILE", "hash-password [-bcrypt]", "docs/oauth2.md"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("help: exit %d, missing %q in\n%s", code, want, stdout)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"oauth"}, "usage: popbridge oauth login"},
		{[]string{"oauth", "logout"}, `unknown command "logout"`},
		{[]string{"oauth", "login"}, "usage: popbridge oauth login -config FILE"},
		{[]string{"oauth", "login", "scanner"}, "-config FILE is required"},
		{[]string{"oauth", "login", "scanner", "-config", "/nonexistent/popbridge.yaml"}, "no such file"},
	} {
		if code, _, stderr := runBinary(t, "", tc.args...); code != exitConfig || !strings.Contains(stderr, tc.want) {
			t.Errorf("popbridge %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, exitConfig, tc.want)
		}
	}
}

// oauthLoginConfig writes a config whose account scanner gets its tokens
// from the test server with grant, kept in a token store directory.
func oauthLoginConfig(t *testing.T, s *oauthtest.Server, grant string) (config, storeDir string) {
	t.Helper()
	dir := t.TempDir()
	storeDir = filepath.Join(dir, "tokens")
	if err := os.Mkdir(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	hash, err := passhash.Argon2id("local-pw")
	if err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "popbridge.yaml")
	err = os.WriteFile(config, []byte(fmt.Sprintf(`upstream: {address: imap.example.com:993}
oauth2:
  token_store: {dir: %s}
  providers:
    idp: {preset: generic, client_id: %s, token_url: "%s/token", auth_url: "%s/authorize", device_auth_url: "%s/device",
          scopes: [imap, offline_access], upstream: default, grant: %s}
  accounts:
    - {user: scanner, password_hash: '%s', provider: idp, upstream_user: scanner@example.com}
`, storeDir, oauthtest.DefaultClientID, s.URL, s.URL, s.URL, grant, hash)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return config, storeDir
}

// loginProcess is `popbridge oauth login` running.
type loginProcess struct {
	cmd    *exec.Cmd
	out    *testkit.LockedBuffer // stdout and stderr
	exited chan struct{}
	code   int
}

func startLoginBinary(t *testing.T, args ...string) *loginProcess {
	t.Helper()
	p := &loginProcess{out: &testkit.LockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, append([]string{"oauth", "login"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *loginProcess) await(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.exited:
			t.Fatalf("oauth login exited (%d) before printing %s:\n%s", p.code, re, p.out.String())
		case <-deadline:
			t.Fatalf("no %s within 30s:\n%s", re, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *loginProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatalf("oauth login did not exit within 30s:\n%s", p.out.String())
		return -1
	}
}

// checkStoredToken reads scanner's token from the (plain JSON) store
// directory and refreshes it at the test server.
func checkStoredToken(t *testing.T, s *oauthtest.Server, storeDir, output string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(storeDir, "scanner"))
	if err != nil {
		t.Fatalf("no token for scanner in the store: %v", err)
	}
	var tok oauth2.Token
	if err := json.Unmarshal(data, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || !s.RefreshTokenValid(tok.RefreshToken) {
		t.Fatalf("stored token: access token %v, refresh token valid %v", tok.AccessToken != "", s.RefreshTokenValid(tok.RefreshToken))
	}
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken} {
		if strings.Contains(output, secret) {
			t.Errorf("the command printed a token (%.6s...):\n%s", secret, output)
		}
	}
	c := &oauth2.Config{ClientID: oauthtest.DefaultClientID, Endpoint: s.Endpoint()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fresh, err := c.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || !s.AccessTokenValid(fresh.AccessToken) {
		t.Fatalf("refreshing the stored token: %v", err)
	}
}

var (
	userCodeRE = regexp.MustCompile(`enter this code:\s+(\S+)`)
	authURLRE  = regexp.MustCompile(`Open this address in a browser on this computer:\s+(\S+)`)
)

func TestOAuthLoginCommandDeviceGrant(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second})
	config, storeDir := oauthLoginConfig(t, s, "device")
	// Flags after the account work as well as before it.
	p := startLoginBinary(t, "scanner", "-config", config, "-timeout", "1m")
	if err := s.ApproveDevice(p.await(t, userCodeRE), "scanner@example.com"); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, p.out.String())
	}
	out := p.out.String()
	for _, want := range []string{"Open this page in a browser", s.URL + "/verify", "Done: account scanner is authorised", "no restart needed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkStoredToken(t, s, storeDir, out)
}

func TestOAuthLoginCommandFailsCleanlyWithoutApproval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		act  func(s *oauthtest.Server, p *loginProcess, code string) error
		want string
	}{
		{"denied", func(s *oauthtest.Server, _ *loginProcess, code string) error { return s.DenyDevice(code) },
			"popbridge oauth login: the sign-in was declined (access_denied); nothing stored"},
		{"Ctrl-C", func(_ *oauthtest.Server, p *loginProcess, _ string) error { return p.cmd.Process.Signal(os.Interrupt) },
			"popbridge oauth login: interrupted; nothing stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second})
			config, storeDir := oauthLoginConfig(t, s, "device")
			p := startLoginBinary(t, "-config", config, "scanner")
			if err := tc.act(s, p, p.await(t, userCodeRE)); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t); code != exitFail || !strings.Contains(p.out.String(), tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, p.out.String(), exitFail, tc.want)
			}
			if entries, _ := os.ReadDir(storeDir); len(entries) != 0 {
				t.Errorf("the store directory is not empty: %v", entries)
			}
		})
	}
}

func TestOAuthLoginCommandCodeGrant(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: "scanner@example.com"})
	config, storeDir := oauthLoginConfig(t, s, "code")
	p := startLoginBinary(t, "-config", config, "scanner")
	// The browser: the authorisation server redirects to the command's
	// loopback listener, whose page ends the sign-in.
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(p.await(t, authURLRE))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte("You can close this window")) {
		t.Errorf("the last page of the sign-in: %s\n%s", resp.Status, page)
	}
	if code := p.wait(t); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, p.out.String())
	}
	checkStoredToken(t, s, storeDir, p.out.String())
	if n := s.Stats().AuthorizationCodeGrants; n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}
}

// ptyRun runs a shell command line on a pseudo-terminal, types input
// (a string; "\x03" is Ctrl-C) once wait has appeared, and prints all the
// terminal showed as JSON.
const ptyRun = `
import json, os, pty, sys, time
cmdline, wait, typed = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", cmdline])
out, end, sent = b"", time.time() + 20, False
while time.time() < end:
    if not sent and wait in out:
        os.write(fd, typed)
        sent = True
    try:
        b = os.read(fd, 4096)
    except OSError:
        break
    if not b:
        break
    out += b
os.waitpid(pid, 0)
json.dump(out.decode("utf-8", "replace"), sys.stdout)
`

// onTerminal runs popbridge hash-password on a terminal and returns what
// the terminal showed, with "stty -a" after it.
func onTerminal(t *testing.T, typed string) string {
	t.Helper()
	python := testkit.Program(t, "python3")
	testkit.Program(t, "stty")
	// trap: Ctrl-C ends popbridge, not the shell that runs stty after it.
	cmdline := fmt.Sprintf("trap : INT; %s hash-password; echo EXIT=$?; stty -a", binary)
	out, err := exec.Command(python, "-c", ptyRun, cmdline, "Password", typed).Output()
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	var screen string
	if err := json.Unmarshal(out, &screen); err != nil {
		t.Fatal(err)
	}
	return screen
}

var echoOn = regexp.MustCompile(`(^|[\s;])echo([\s;]|$)`)

func TestHashPasswordOnATerminalDoesNotShowThePassword(t *testing.T) {
	t.Parallel()
	screen := onTerminal(t, "typed-on-a-tty\n")
	hash := regexp.MustCompile(`\$argon2id\$\S+`).FindString(screen)
	if !strings.Contains(screen, "Password (not shown): ") || hash == "" || !strings.Contains(screen, "EXIT=0") {
		t.Fatalf("terminal showed:\n%s", screen)
	}
	if strings.Contains(screen, "typed-on-a-tty") {
		t.Errorf("the password was echoed:\n%s", screen)
	}
	if !argon2idMatches(t, hash, "typed-on-a-tty") {
		t.Errorf("hash %q does not verify the typed password", hash)
	}
	if !echoOn.MatchString(screen[strings.Index(screen, "EXIT="):]) {
		t.Errorf("echo is still off afterwards:\n%s", screen)
	}
}

func TestHashPasswordCtrlCEndsItAndRestoresEcho(t *testing.T) {
	t.Parallel()
	screen := onTerminal(t, "\x03")
	i := strings.Index(screen, "EXIT=")
	if !strings.Contains(screen, "popbridge hash-password: interrupted") || i < 0 || !strings.HasPrefix(screen[i:], "EXIT=1") {
		t.Fatalf("terminal showed:\n%s", screen)
	}
	if !echoOn.MatchString(screen[i:]) {
		t.Errorf("echo is still off after Ctrl-C:\n%s", screen)
	}
}
