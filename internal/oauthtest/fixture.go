package oauthtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// A popbridge oauth2 config section around a Server, for the tests of the
// token cache, of `popbridge oauth login` and of the proxy end to end.

// The account of ConfigSection.
const (
	FixtureAccount = "scanner"             // the local POP3 login
	FixtureMailbox = "scanner@example.org" // its upstream_user
	// LocalPassword is the account's local password; LocalHash is it as
	// argon2id with tiny parameters: the default ones cost a second per
	// hash under the race detector.
	LocalPassword = "local-pw"
	LocalHash     = "$argon2id$v=19$m=64,t=1,p=1$cG9wYnJpZGdlLXRlc3RzIQ$l87zel6s/iVWDc2hHpvF6eQNHG38HRwxlULbhz+lQ7g"
	// AppClientID and AppSecret are the client of the client_credentials
	// grant; register them in Options.Clients.
	AppClientID = "app"
	AppSecret   = "app-s3cret-77"
)

// ConfigSection is the oauth2 section of a popbridge config: a generic
// provider "idp" at srv with grant, a sealed token file in a new
// directory, and FixtureAccount; extraAccounts is appended to the
// accounts list as it is.
func ConfigSection(t testing.TB, srv *Server, grant, extraAccounts string) string {
	t.Helper()
	dir := filepath.Dir(ExpandSection(t, "DIR/key"))
	key := filepath.Join(dir, "key")
	client, secret := DefaultClientID, ""
	if grant == "client_credentials" {
		client = AppClientID
		path := filepath.Join(dir, "secret")
		if err := os.WriteFile(path, []byte(AppSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		secret = "client_secret_file: " + path + ", "
	}
	return fmt.Sprintf(`oauth2:
  token_store: {file: %s, key_file: %s}
  providers:
    idp: {preset: generic, client_id: %s, %sgrant: %s, token_url: "%s/token", auth_url: "%s/authorize", scopes: [imap], upstream: default}
  accounts:
    - {user: %s, password_hash: '%s', provider: idp, upstream_user: %s}
%s`, filepath.Join(dir, "tokens"), key, client, secret, grant, srv.URL, srv.URL,
		FixtureAccount, LocalHash, FixtureMailbox, extraAccounts)
}

// ClosedURL returns a URL on 127.0.0.1 where nothing listens.
func ClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// ExpandSection replaces KEY, SECRET, HASH and DIR in a config section by
// a new store key file, a client secret file holding "s3cret", LocalHash
// and a new directory, for tests that write their own sections.
func ExpandSection(t testing.TB, section string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	raw := make([]byte, 32) // a store key may be 32 raw octets
	rand.Read(raw)
	secret := filepath.Join(dir, "secret")
	if err := errors.Join(os.WriteFile(key, raw, 0o600), os.WriteFile(secret, []byte("s3cret\n"), 0o600)); err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("KEY", key, "SECRET", secret, "HASH", LocalHash, "DIR", dir).Replace(section)
}

// SeedFixture issues a refresh token for FixtureMailbox and saves it for
// FixtureAccount with save (a token store's Save), as `popbridge oauth
// login` would; it returns the token.
func (s *Server) SeedFixture(t testing.TB, save func(account string, tok *oauth2.Token) error) string {
	t.Helper()
	rt := s.IssueRefreshToken(FixtureMailbox, DefaultClientID)
	if err := save(FixtureAccount, &oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	return rt
}
