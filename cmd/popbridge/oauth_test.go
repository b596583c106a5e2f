package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
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
