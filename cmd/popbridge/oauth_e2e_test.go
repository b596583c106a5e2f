package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/oauth2/passhash"
)

// The operator's whole story, with real processes: popbridge runs; a
// device's login fails until the account is authorised; `popbridge oauth
// login` (a second process) stores the token; the running popbridge takes
// it at the next login, without restart or reload, and logs in to Dovecot,
// which checks the token at the OAuth2 server.
func TestOAuthLoginIsPickedUpByARunningPopbridge(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second})
	if !dovecottest.Available() {
		testkit.Unavailable(t, "dovecot is not installed")
	}
	d := dovecottest.Start(t, dovecottest.Options{
		Users:                  map[string]string{"alice": "imap-password"},
		OAuth2IntrospectionURL: s.IntrospectionURL(),
	})
	d.Deliver(t, "alice", lifecycleMessage(1, "for the scanner\r\n"))

	dir := t.TempDir()
	const localPassword = "scanner-local-pw"
	hash, err := passhash.Argon2id(localPassword)
	if err != nil {
		t.Fatal(err)
	}
	oauth2Section := fmt.Sprintf(`oauth2:
  token_store: {dir: %s}
  providers:
    idp: {preset: generic, client_id: %s, token_url: "%s/token", device_auth_url: "%s/device",
          scopes: [imap, offline_access], grant: device, upstream: default}
  accounts:
    - {user: scanner, password_hash: '%s', provider: idp, upstream_user: alice}
`, dir, oauthtest.DefaultClientID, s.URL, s.URL, hash)
	pop3, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
	b := startBridge(t, bridgeConfig(d.IMAPAddr, pop3, metrics, oauth2Section), metrics)

	// Not authorised yet: a permanent error the device cannot fix, and
	// a log line that tells the operator what to run.
	c := pop3test.Dial(t, pop3)
	c.OK("USER scanner")
	if got := c.Cmd("PASS " + localPassword); !strings.HasPrefix(got, "-ERR [SYS/PERM]") {
		t.Fatalf("login before oauth login: %q, want -ERR [SYS/PERM]", got)
	}
	c.Quit()
	b.waitLog(t, "run popbridge oauth login scanner")

	p := startLoginBinary(t, "-config", b.config, "scanner")
	if err := s.ApproveDevice(p.await(t, userCodeRE), "alice"); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != exitOK {
		t.Fatalf("oauth login: exit %d\n%s", code, p.out.String())
	}

	c = pop3test.Dial(t, pop3)
	c.Login("scanner", localPassword)
	if n, _ := c.Stat(); n != 1 {
		t.Fatalf("STAT after oauth login: %d messages, want 1", n)
	}
	c.Quit()
	if st := s.Stats(); st.ActiveIntrospections == 0 {
		t.Errorf("Dovecot never checked a token: %+v", st)
	}

	// Neither process wrote a token or the local password anywhere.
	data, err := os.ReadFile(filepath.Join(dir, "scanner"))
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"popbridge's log": b.stderr.String(), "oauth login's output": p.out.String()} {
		for _, secret := range []string{localPassword, jsonField(t, data, "access_token"), jsonField(t, data, "refresh_token")} {
			if strings.Contains(out, secret) {
				t.Errorf("%s contains a secret (%.6s...)", name, secret)
			}
		}
	}
}

// jsonField returns a string field of a JSON object.
func jsonField(t *testing.T, data []byte, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[name].(string)
	if s == "" {
		t.Fatalf("no %s in %d octets of JSON", name, len(data))
	}
	return s
}
