package imapback

// OAuth2 logins through the Backend: each mechanism and refused tokens
// against Dovecot with a token server, token sources that fail, and
// reconnects that ask for a fresh token.

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
	fr "github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// startOAuthDovecot starts a token server and a Dovecot that checks
// tokens against it, with one message for alice. Dovecot delays every
// login from an address after failed ones (its auth penalty, 2 s and
// growing), so tests that expect a refused token start their own pair.
func startOAuthDovecot(t *testing.T, opts oauthtest.Options, extra string) (*oauthtest.Server, *dovecottest.Server) {
	t.Helper()
	as := oauthtest.Start(t, opts)
	d := dovecottest.Start(t, dovecottest.Options{OAuth2IntrospectionURL: as.IntrospectionURL(), ExtraConfig: extra})
	d.Deliver(t, "alice", message(300))
	return as, d
}

// oauthBackend returns a Backend with mech and time for the token
// server's introspection.
func oauthBackend(t *testing.T, addr string, mech AuthMechanism) *Backend {
	t.Helper()
	return newBackend(t, Options{Address: addr, Auth: mech, DialTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second})
}

// loginToken logs user in with token and a policy that changes nothing.
func loginToken(b *Backend, user string, token func(context.Context) (string, error)) (*Session, error) {
	return b.Login(context.Background(), Credentials{User: user, Token: token}, Policy{Delete: DeleteKeep, Seen: SeenNever})
}

// fixedToken returns a token source that hands out tok and counts calls.
func fixedToken(tok string, calls *atomic.Int32) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		if calls != nil {
			calls.Add(1)
		}
		return tok, nil
	}
}

// loginMethods returns the SASL methods of the successful logins that
// Dovecot's log tells of.
func loginMethods(log string) []string {
	var m []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "imap-login: Info: Login: ") {
			continue
		}
		_, rest, _ := strings.Cut(line, "method=")
		method, _, _ := strings.Cut(rest, ",")
		m = append(m, method)
	}
	return m
}

func TestTokenLoginWithEachMechanism(t *testing.T) {
	t.Parallel()
	as, d := startOAuthDovecot(t, oauthtest.Options{}, "")
	for _, c := range []struct {
		auth AuthMechanism
		want string
	}{
		{AuthXOAuth2, "XOAUTH2"},
		{AuthOAuthBearer, "OAUTHBEARER"},
		// Dovecot offers both: the standard one wins.
		{AuthAuto, "OAUTHBEARER"},
		// A password mechanism means nothing with a token.
		{AuthPlain, "OAUTHBEARER"},
		{AuthLogin, "OAUTHBEARER"},
	} {
		before := len(loginMethods(d.Log()))
		var calls atomic.Int32
		tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
		s, err := loginToken(oauthBackend(t, d.IMAPAddr, c.auth), "alice", fixedToken(tok, &calls))
		if err != nil {
			t.Fatalf("auth %q: %v", c.auth, err)
		}
		if n := len(s.Messages()); n != 1 {
			t.Errorf("auth %q: %d messages, want 1", c.auth, n)
		}
		s.Close()
		if calls.Load() != 1 {
			t.Errorf("auth %q: token source called %d times, want 1", c.auth, calls.Load())
		}
		got := loginMethods(d.WaitLog(func(log string) bool { return len(loginMethods(log)) > before }))
		if len(got) != before+1 || got[before] != c.want {
			t.Errorf("auth %q: Dovecot logged logins %v, want a new one with method %s", c.auth, got, c.want)
		}
	}
	// Password logins still work on the same server.
	if _, err := loginAs(oauthBackend(t, d.IMAPAddr, AuthAuto), "alice", "secret"); err != nil {
		t.Errorf("password login next to OAuth2: %v", err)
	}
	if st := as.Stats(); st.ActiveIntrospections != 5 {
		t.Errorf("token server stats %+v, want 5 active introspections", st)
	}
}

func TestAutoChoosesXOAuth2WhenOnlyItIsOffered(t *testing.T) {
	t.Parallel()
	// A later setting overrides the generated one.
	as, d := startOAuthDovecot(t, oauthtest.Options{}, "auth_mechanisms = plain login xoauth2\n")
	tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
	s, err := loginToken(oauthBackend(t, d.IMAPAddr, AuthAuto), "alice", fixedToken(tok, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := loginMethods(d.WaitLog(func(log string) bool { return len(loginMethods(log)) > 0 })); len(got) != 1 || got[0] != "XOAUTH2" {
		t.Errorf("login methods %v, want [XOAUTH2]", got)
	}
}

func TestTokenLoginFailsWhenServerOffersNoTokenMechanism(t *testing.T) {
	t.Parallel()
	srv := startMem(t, message(100))
	_, err := loginToken(oauthBackend(t, srv.Addr, AuthAuto), "alice", fixedToken("at-x", nil))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2") {
		t.Errorf("error %v, want ErrUnavailable naming both mechanisms", err)
	}
}

// A refused token makes Dovecot send its error challenge; the session
// answers it (empty line, or 0x01) so that the server ends the command
// with NO, not BAD, and maps it to ErrAuthFailed with the status.
func TestRefusedTokenIsAuthFailed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		auth   AuthMechanism
		status string
		token  func(as *oauthtest.Server) string
	}{
		{"xoauth2 revoked", AuthXOAuth2, `"401"`, func(as *oauthtest.Server) string {
			tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
			as.RevokeUser("alice")
			return tok
		}},
		{"oauthbearer expired", AuthOAuthBearer, `"invalid_token"`, func(as *oauthtest.Server) string {
			return as.IssueAccessToken("alice", oauthtest.DefaultClientID, time.Nanosecond)
		}},
		{"xoauth2 token of another user", AuthXOAuth2, `"401"`, func(as *oauthtest.Server) string {
			return as.IssueAccessToken("bob", oauthtest.DefaultClientID, 0)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			as, d := startOAuthDovecot(t, oauthtest.Options{}, "")
			tok := c.token(as)
			_, err := loginToken(oauthBackend(t, d.IMAPAddr, c.auth), "alice", fixedToken(tok, nil))
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("error %v, want ErrAuthFailed", err)
			}
			if !strings.Contains(err.Error(), "status "+c.status) {
				t.Errorf("error %q lacks the challenge's status %s", err, c.status)
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error %q contains the token", err)
			}
			if !strings.Contains(err.Error(), "imap: NO") {
				t.Errorf("error %q: the server did not end the exchange with NO", err)
			}
			if log := d.Log(); strings.Contains(log, "Invalid base64") {
				t.Errorf("Dovecot did not take the answer to its error challenge:\n%s", log)
			}
			if as.Stats().Introspections != 1 {
				t.Errorf("stats %+v, want one introspection", as.Stats())
			}
		})
	}
}

func TestTokenSourceErrorIsErrTokenWithoutConnecting(t *testing.T) {
	t.Parallel()
	srv := startMem(t, message(100))
	relay := fr.New(t, srv.Addr)
	boom := errors.New("refresh token revoked")
	_, err := loginToken(oauthBackend(t, relay.Addr, AuthXOAuth2), "alice", func(context.Context) (string, error) { return "", boom })
	if !errors.Is(err, ErrToken) || !errors.Is(err, boom) {
		t.Errorf("error %v, want ErrToken wrapping the source's error", err)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrAuthFailed) {
		t.Errorf("error %v is also an upstream error", err)
	}
	if n := relay.Accepted(); n != 0 {
		t.Errorf("%d upstream connections for a login without a token", n)
	}
}

func TestTokenMechanismWithoutTokenIsAClearError(t *testing.T) {
	t.Parallel()
	srv := startMem(t, message(100))
	relay := fr.New(t, srv.Addr)
	for _, mech := range []AuthMechanism{AuthXOAuth2, AuthOAuthBearer} {
		_, err := loginAs(oauthBackend(t, relay.Addr, mech), "alice", "secret")
		if err == nil || !strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "secret") {
			t.Errorf("auth %s with a password: %v, want an error about the missing token", mech, err)
		}
	}
	if n := relay.Accepted(); n != 0 {
		t.Errorf("%d upstream connections", n)
	}
}

// A reconnect logs in with a fresh token: the first one has expired by
// then, so reusing it would fail.
func TestReconnectAsksForANewToken(t *testing.T) {
	t.Parallel()
	as, d := startOAuthDovecot(t, oauthtest.Options{}, "")
	relay := fr.New(t, d.IMAPAddr)
	var issued []string
	refreshFailed := errors.New("refresh token revoked")
	var broken bool
	token := func(context.Context) (string, error) {
		if broken {
			return "", refreshFailed
		}
		tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, time.Second)
		issued = append(issued, tok)
		return tok, nil
	}
	b := oauthBackend(t, relay.Addr, AuthOAuthBearer)
	var logs testkit.LockedBuffer
	b.opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := loginToken(b, "alice", token)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer func() {
		if !strings.Contains(logs.String(), "reconnecting") {
			t.Errorf("the reconnects were not logged:\n%s", logs.String())
		}
		for _, tok := range issued {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("a token is in the log:\n%s", logs.String())
			}
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); as.AccessTokenValid(issued[0]); {
		if time.Now().After(deadline) {
			t.Fatal("first token did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
	relay.Hangup([]byte("* BYE idle\r\n"))
	waitClosed(t, s)
	if err := s.Noop(context.Background()); err != nil {
		t.Fatalf("NOOP after the hangup: %v", err)
	}
	if len(issued) != 2 || relay.Accepted() != 2 {
		t.Errorf("%d tokens for %d connections, want 2 for 2", len(issued), relay.Accepted())
	}

	// No token for the next reconnect: an upstream failure of the
	// session that still says why, and no connection without a token.
	broken = true
	relay.Hangup([]byte("* BYE idle\r\n"))
	waitClosed(t, s)
	err = s.Noop(context.Background())
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrToken) || !errors.Is(err, refreshFailed) {
		t.Errorf("NOOP when the token source fails: %v, want ErrUnavailable wrapping ErrToken and its cause", err)
	}
	if relay.Accepted() != 2 {
		t.Errorf("%d connections, want no third one without a token", relay.Accepted())
	}
}
