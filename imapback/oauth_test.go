package imapback

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

func oauthBackend(t *testing.T, addr string, mech AuthMechanism) *Backend {
	t.Helper()
	b, err := New(Options{
		Address: addr, TLS: TLSNone, Auth: mech,
		DialTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
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

// loginMethods returns the SASL methods of Dovecot's successful logins,
// from its log.
func loginMethods(d *dovecottest.Server) []string {
	var m []string
	for _, line := range strings.Split(d.Log(), "\n") {
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
		before := len(loginMethods(d))
		var calls atomic.Int32
		tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
		s, err := oauthBackend(t, d.IMAPAddr, c.auth).Login(context.Background(),
			Credentials{User: "alice", Token: fixedToken(tok, &calls)}, Policy{Delete: DeleteKeep, Seen: SeenNever})
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
		if got := loginMethods(d); len(got) != before+1 || got[before] != c.want {
			t.Errorf("auth %q: Dovecot logged logins %v, want a new one with method %s", c.auth, got, c.want)
		}
	}
	// Password logins still work on the same server.
	if _, err := oauthBackend(t, d.IMAPAddr, AuthAuto).Login(context.Background(), Credentials{User: "alice", Password: "secret"}, oauthBackend(t, d.IMAPAddr, AuthAuto).DefaultPolicy()); err != nil {
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
	s, err := oauthBackend(t, d.IMAPAddr, AuthAuto).Login(context.Background(),
		Credentials{User: "alice", Token: fixedToken(tok, nil)}, Policy{Delete: DeleteKeep, Seen: SeenNever})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := loginMethods(d); len(got) != 1 || got[0] != "XOAUTH2" {
		t.Errorf("login methods %v, want [XOAUTH2]", got)
	}
}

func TestTokenLoginFailsWhenServerOffersNoTokenMechanism(t *testing.T) {
	t.Parallel()
	srv := startMem(t, message(100))
	_, err := oauthBackend(t, srv.Addr, AuthAuto).Login(context.Background(),
		Credentials{User: "alice", Token: fixedToken("at-x", nil)}, Policy{Delete: DeleteKeep, Seen: SeenNever})
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
			_, err := oauthBackend(t, d.IMAPAddr, c.auth).Login(context.Background(),
				Credentials{User: "alice", Token: fixedToken(tok, nil)}, Policy{Delete: DeleteKeep, Seen: SeenNever})
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
	_, err := oauthBackend(t, relay.Addr, AuthXOAuth2).Login(context.Background(),
		Credentials{User: "alice", Token: func(context.Context) (string, error) { return "", boom }}, Policy{Delete: DeleteKeep, Seen: SeenNever})
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
		_, err := oauthBackend(t, relay.Addr, mech).Login(context.Background(), Credentials{User: "alice", Password: "secret"}, oauthBackend(t, relay.Addr, mech).DefaultPolicy())
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
	s, err := b.Login(context.Background(),
		Credentials{User: "alice", Token: token}, Policy{Delete: DeleteKeep, Seen: SeenNever})
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

// scriptedAuthServer accepts one connection, greets with caps and then
// plays steps: each reads one client line and checks it (a command's tag
// replaced by "TAG") before sending reply (where TAG stands for the tag
// of the last command). done receives the first mismatch, or nil.
// After the reply to "TAG STARTTLS" the server switches to TLS with
// serverTLS.
type scriptStep struct{ want, reply string }

// The steps are made from the server's port, which OAUTHBEARER sends.
func scriptedAuthServer(t *testing.T, greeting string, script func(port string) []scriptStep, serverTLS *tls.Config) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	steps := script(fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	result := make(chan error, 1)
	go func() {
		result <- func() error {
			var nc net.Conn
			nc, err := ln.Accept()
			if err != nil {
				return err
			}
			defer func() { nc.Close() }()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(nc)
			fmt.Fprint(nc, greeting)
			tag := ""
			for i, st := range steps {
				line, err := r.ReadString('\n')
				if err != nil {
					return fmt.Errorf("step %d: reading: %v", i, err)
				}
				if strings.HasPrefix(st.want, "TAG ") {
					tag, _, _ = strings.Cut(line, " ")
				}
				if got := strings.Replace(line, tag+" ", "TAG ", 1); got != st.want {
					return fmt.Errorf("step %d: client sent %q, want %q", i, got, st.want)
				}
				fmt.Fprint(nc, strings.ReplaceAll(st.reply, "TAG", tag))
				if st.want == "TAG STARTTLS\r\n" && serverTLS != nil {
					if r.Buffered() > 0 {
						return fmt.Errorf("step %d: client sent data after STARTTLS before the handshake", i)
					}
					tc := tls.Server(nc, serverTLS)
					if err := tc.Handshake(); err != nil {
						return fmt.Errorf("step %d: TLS handshake: %v", i, err)
					}
					nc = tc
					r = bufio.NewReader(tc)
				}
			}
			// The client closes the connection after a failed login.
			if line, err := r.ReadString('\n'); err == nil {
				return fmt.Errorf("client sent %q after the script", line)
			}
			return nil
		}()
	}()
	return ln.Addr().String(), result
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestXOAuth2ExchangeOnTheWire(t *testing.T) {
	t.Parallel()
	const tok = "at-secret-token"
	challenge := b64(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`)
	ir := b64("user=alice@example.com\x01auth=Bearer " + tok + "\x01\x01")
	cases := []struct {
		name     string
		greeting string
		auth     AuthMechanism
		steps    func(port string) []scriptStep
		wantErr  error
		wantText string
	}{
		{
			name:     "xoauth2 refused with SASL-IR",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2 " + ir + "\r\n", "+ " + challenge + "\r\n"},
					// The empty response is an empty line, not "=".
					{"\r\n", "TAG NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: `XOAUTH2 error status "401", scope "https://mail.google.com/"`,
		},
		{
			name:     "xoauth2 refused without SASL-IR",
			greeting: "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2\r\n", "+ \r\n"},
					{ir + "\r\n", "+ " + challenge + "\r\n"},
					{"\r\n", "TAG NO Invalid credentials\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: `status "401"`,
		},
		{
			// A server may say NO at once, without a challenge (Microsoft 365
			// is reported to answer "NO AUTHENTICATE failed.").
			name:     "xoauth2 refused without a challenge",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2 " + ir + "\r\n", "TAG NO AUTHENTICATE failed.\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: "AUTHENTICATE failed",
		},
		{
			name:     "xoauth2 accepted",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2 " + ir + "\r\n", "TAG OK [CAPABILITY IMAP4rev1 UIDPLUS] Thats all she wrote!\r\n"},
					// The login is done; the mailbox fails on purpose to end the script.
					{"TAG SELECT INBOX\r\n", "TAG NO [NONEXISTENT] no such mailbox\r\n"},
				}
			},
			wantErr: ErrMailbox,
		},
		{
			name:     "oauthbearer refused",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE OAUTHBEARER " + b64("n,a=alice@example.com,\x01host=127.0.0.1\x01port="+port+"\x01auth=Bearer "+tok+"\x01\x01") + "\r\n",
						"+ " + b64(`{"status":"invalid_token","schemes":"bearer"}`) + "\r\n"},
					// RFC 7628 §3.2.3: the dummy response is 0x01.
					{"AQ==\r\n", "TAG NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: `OAUTHBEARER error status "invalid_token"`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr, done := scriptedAuthServer(t, c.greeting, c.steps, nil)
			_, err := oauthBackend(t, addr, AuthAuto).Login(context.Background(),
				Credentials{User: "alice@example.com", Token: fixedToken(tok, nil)}, Policy{Delete: DeleteKeep, Seen: SeenNever})
			if !errors.Is(err, c.wantErr) {
				t.Errorf("error %v, want %v", err, c.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), c.wantText) || strings.Contains(err.Error(), tok)) {
				t.Errorf("error %q: want it to contain %q and not the token", err, c.wantText)
			}
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}

// Over STARTTLS the error exchange must end with an empty line too, so
// the session does STARTTLS itself instead of leaving it to go-imap.
func TestXOAuth2ErrorExchangeOverSTARTTLS(t *testing.T) {
	t.Parallel()
	const tok = "at-secret-token"
	serverTLS, clientTLS := testkit.SelfSignedTLS(t)
	addr, done := scriptedAuthServer(t, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n", func(string) []scriptStep {
		return []scriptStep{
			{want: "TAG STARTTLS\r\n", reply: "TAG OK Begin TLS negotiation now\r\n"},
			// The capabilities before STARTTLS are void (RFC 9051 §6.2.1).
			{want: "TAG CAPABILITY\r\n", reply: "* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\nTAG OK done\r\n"},
			{want: "TAG AUTHENTICATE XOAUTH2 " + b64("user=alice\x01auth=Bearer "+tok+"\x01\x01") + "\r\n",
				reply: "+ " + b64(`{"status":"400","schemes":"Bearer"}`) + "\r\n"},
			{want: "\r\n", reply: "TAG NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"},
		}
	}, serverTLS)
	b, err := New(Options{Address: addr, TLS: TLSStartTLS, TLSConfig: clientTLS, DialTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Login(context.Background(), Credentials{User: "alice", Token: fixedToken(tok, nil)}, Policy{Delete: DeleteKeep, Seen: SeenNever})
	if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), `status "400"`) || strings.Contains(err.Error(), tok) {
		t.Errorf("error %v, want ErrAuthFailed with the status and without the token", err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// The error challenge comes from the server: whatever it holds, the
// status and scope that reach error texts are short and printable.
func FuzzParseFailure(f *testing.F) {
	f.Add([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	f.Add([]byte(`{"status":"invalid_token"}`))
	f.Add([]byte(`{"status":"` + strings.Repeat("x", 300) + "\r\n\x00\"}"))
	f.Add([]byte(`not json`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, challenge []byte) {
		fail := parseFailure(challenge)
		for _, s := range []string{fail.Status, fail.Scope} {
			if len(s) > 103 {
				t.Errorf("%d bytes kept from the challenge", len(s))
			}
			for _, c := range []byte(s) {
				if c < 0x20 || c > 0x7e {
					t.Errorf("unprintable byte %#x kept in %q", c, s)
				}
			}
		}
		if fail.Status == "" {
			t.Error("empty status")
		}
	})
}

func TestTokenClientsEncodeTheUserName(t *testing.T) {
	s := &Session{b: &Backend{opts: Options{Address: "imap.example.com:993"}}}
	for _, c := range []struct {
		mech, user, want string
	}{
		{mechXOAuth2, "a=b,c@example.com", "user=a=b,c@example.com\x01auth=Bearer T\x01\x01"},
		{mechOAuthBearer, "a=b,c@example.com", "n,a=a=3Db=2Cc@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer T\x01\x01"},
	} {
		sc, err := s.tokenClient(c.mech, c.user, "T")
		if err != nil {
			t.Fatal(err)
		}
		mech, ir, err := sc.Start()
		if err != nil || mech != c.mech || string(ir) != c.want {
			t.Errorf("%s: %s %q %v, want %q", c.mech, mech, ir, err, c.want)
		}
	}
	for _, mech := range []string{mechXOAuth2, mechOAuthBearer} {
		for _, user := range []string{"alice\x01auth=Bearer x", "alice\r\n"} {
			if _, err := s.tokenClient(mech, user, "T"); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("%s with user %q: %v, want ErrAuthFailed", mech, user, err)
			}
		}
	}
}
