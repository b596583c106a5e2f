package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	xoauth2 "golang.org/x/oauth2"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// oauthRig is popbridge in front of a Dovecot whose oauth2 passdb checks
// tokens at a real OAuth2 server, with one OAuth2 account: POP3 login
// "scanner" with the local password "local-pw", mailbox
// "scanner@example.org". Every upstream connection passes a relay that
// counts them.
type oauthRig struct {
	srv   *oauthtest.Server
	dc    *dovecottest.Server
	relay *faultrelay.Relay
	proxy *Proxy
	addr  string       // POP3
	store oauth2.Store // the proxy's store, opened a second time, as `oauth login` would
	logs  *testkit.LockedBuffer
}

func startOAuthRig(t *testing.T, opts oauthtest.Options, grant config.Grant, configure func(*config.Config)) *oauthRig {
	t.Helper()
	if grant == config.GrantClientCredentials {
		opts.Clients = map[string]string{oauthtest.AppClientID: oauthtest.AppSecret}
		opts.ClientCredentialsUser = map[string]string{oauthtest.AppClientID: oauthtest.FixtureMailbox}
	}
	r := &oauthRig{srv: oauthtest.Start(t, opts), logs: &testkit.LockedBuffer{}}
	r.dc = dovecottest.Start(t, dovecottest.Options{
		Users:                  map[string]string{oauthtest.FixtureMailbox: "mailbox-pw-unused"},
		OAuth2IntrospectionURL: r.srv.IntrospectionURL(),
	})
	r.relay = faultrelay.New(t, r.dc.IMAPAddr)
	section, err := config.ParseConfig([]byte(oauthtest.ConfigSection(t, r.srv, string(grant), "")))
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, r.relay.Addr, proxyOptions{configure: func(c *config.Config) {
		c.OAuth2 = section.OAuth2
		if configure != nil {
			configure(c)
		}
	}, logs: r.logs})
	r.proxy, r.addr = tp.Proxy, tp.addr
	if r.store, err = oauth2.OpenStore(r.proxy.cfg.OAuth2.TokenStore); err != nil {
		t.Fatal(err)
	}
	return r
}

// seed stores a new refresh token for the account, as `popbridge oauth
// login scanner` does, and returns it.
func (r *oauthRig) seed(t *testing.T) string {
	t.Helper()
	return r.srv.SeedFixture(t, r.store.Save)
}

// deliver puts n messages into the mailbox and returns them.
func (r *oauthRig) deliver(t *testing.T, n int) [][]byte {
	var msgs [][]byte
	for i := 1; i <= n; i++ {
		m := testMessage(i, fmt.Sprintf("OAuth2 message %d.\r\n.dot line\r\n", i))
		r.dc.Deliver(t, oauthtest.FixtureMailbox, m)
		msgs = append(msgs, m)
	}
	return msgs
}

// session logs in as the account, checks every message and quits.
func (r *oauthRig) session(t *testing.T, login string, msgs [][]byte) {
	t.Helper()
	c := pop3test.Dial(t, r.addr)
	c.Login(login, "local-pw")
	if n, _ := c.Stat(); n != len(msgs) {
		t.Fatalf("STAT: %d messages, want %d", n, len(msgs))
	}
	for i, m := range msgs {
		if got := c.Multi("RETR " + strconv.Itoa(i+1)); !bytes.Equal(got, m) {
			t.Errorf("RETR %d = %q, want %q", i+1, got, m)
		}
	}
	c.Quit()
}

// loginResult is the answer to a login with pass.
func (r *oauthRig) loginResult(t *testing.T, pass string) string {
	t.Helper()
	c := pop3test.Dial(t, r.addr)
	defer c.Quit()
	c.OK("USER " + oauthtest.FixtureAccount)
	return c.Cmd("PASS " + pass)
}

// waitLog waits until the logs contain s.
func (r *oauthRig) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(r.logs.String(), s) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("logs do not contain %d× %q:\n%s", n, s, r.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mechanisms returns the SASL mechanisms of Dovecot's successful logins,
// once its log tells of one.
func (r *oauthRig) mechanisms() []string {
	var ms []string
	re := regexp.MustCompile(`Login: user=<[^>]*>, method=([A-Z0-9-]+)`)
	log := r.dc.WaitLog(func(log string) bool { return re.MatchString(log) })
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		ms = append(ms, m[1])
	}
	return ms
}

func TestOAuth2LoginRetrievesThroughXOAUTH2AndOAUTHBEARER(t *testing.T) {
	for _, tc := range []struct{ auth, want string }{
		{"xoauth2", "XOAUTH2"},
		{"oauthbearer", "OAUTHBEARER"},
		{"auto", "OAUTHBEARER"}, // the standard one, when offered
	} {
		t.Run(tc.auth, func(t *testing.T) {
			t.Parallel()
			r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, func(c *config.Config) { c.Upstream.Auth = imapback.AuthMechanism(tc.auth) })
			r.seed(t)
			msgs := r.deliver(t, 2)
			c := pop3test.Dial(t, r.addr)
			c.Login(oauthtest.FixtureAccount, "local-pw")
			for i, m := range msgs {
				if got := c.Multi("RETR " + strconv.Itoa(i+1)); !bytes.Equal(got, m) {
					t.Errorf("RETR %d = %q, want %q", i+1, got, m)
				}
			}
			c.OK("DELE 1")
			if got := c.Quit(); got != "+OK Logging out, 1 messages deleted" {
				t.Errorf("QUIT = %q", got)
			}
			r.waitLog(t, "session ended", 1)
			if ms := r.mechanisms(); len(ms) == 0 || ms[0] != tc.want {
				t.Errorf("Dovecot logins used %v, want %s", ms, tc.want)
			}
			// The delete reached the mailbox.
			ic := r.dc.Dial(t, oauthtest.FixtureMailbox)
			st, err := ic.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
			if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
				t.Errorf("INBOX after QUIT: %+v %v, want 1 message", st, err)
			}
			ic.Close()
			if st := r.srv.Stats(); st.RefreshGrants != 1 {
				t.Errorf("oauth stats %+v, want one refresh grant", st)
			}
			if !strings.Contains(r.logs.String(), `msg="session ended" session=`) ||
				!strings.Contains(r.logs.String(), "user="+oauthtest.FixtureAccount) {
				t.Errorf("no session log line for the account:\n%s", r.logs.String())
			}
		})
	}
}

// Access tokens live 2 s here: a session after that needs one refresh,
// whose rotated refresh token lands in the sealed store.
func TestOAuth2TokenRefreshAcrossSessionsRotatesTheStoredToken(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	r := startOAuthRig(t, oauthtest.Options{AccessTTL: ttl, RotateRefresh: true}, config.GrantCode, nil)
	rt0 := r.seed(t)
	msgs := r.deliver(t, 1)
	start := time.Now()
	r.session(t, oauthtest.FixtureAccount, msgs)
	r.session(t, oauthtest.FixtureAccount, msgs)
	if time.Since(start) < ttl*9/10 {
		if st := r.srv.Stats(); st.RefreshGrants != 1 {
			t.Fatalf("two sessions within the token's lifetime: %+v, want one refresh grant", st)
		}
	}
	tok, err := r.store.Load(oauthtest.FixtureAccount)
	if err != nil {
		t.Fatal(err)
	}
	rt1 := tok.RefreshToken
	if rt1 == rt0 || !r.srv.RefreshTokenValid(rt1) || r.srv.RefreshTokenValid(rt0) {
		t.Fatalf("store after the first refresh: rotated %v, new valid %v, old valid %v",
			rt1 != rt0, r.srv.RefreshTokenValid(rt1), r.srv.RefreshTokenValid(rt0))
	}
	time.Sleep(time.Until(start.Add(ttl + 100*time.Millisecond)))
	before := r.srv.Stats().RefreshGrants
	r.session(t, oauthtest.FixtureAccount, msgs)
	if st := r.srv.Stats(); st.RefreshGrants != before+1 || st.RefreshFailures != 0 {
		t.Errorf("session after expiry: %+v, want exactly one more refresh grant (had %d)", st, before)
	}
	if tok, _ := r.store.Load(oauthtest.FixtureAccount); tok == nil || tok.RefreshToken == rt1 || !r.srv.RefreshTokenValid(tok.RefreshToken) {
		t.Errorf("the second rotation was not saved")
	}
}

func TestOAuth2ConcurrentLoginsAfterExpiryShareOneRefresh(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	r := startOAuthRig(t, oauthtest.Options{AccessTTL: ttl, RotateRefresh: true}, config.GrantCode, nil)
	r.seed(t)
	msgs := r.deliver(t, 2)
	start := time.Now()
	r.session(t, oauthtest.FixtureAccount, msgs)
	time.Sleep(time.Until(start.Add(ttl + 100*time.Millisecond)))
	const n = 8
	// The refresh takes long enough for all eight logins to need it.
	r.srv.SetTokenDelay(200 * time.Millisecond)
	// All eight connect and send USER first; then all PASS at once.
	conns := make([]*pop3test.Client, n)
	for i := range conns {
		conns[i] = pop3test.Dial(t, r.addr)
		conns[i].OK("USER " + oauthtest.FixtureAccount)
	}
	var wg sync.WaitGroup
	answers := make([]string, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = c.Cmd("PASS local-pw")
		}()
	}
	wg.Wait()
	for i, c := range conns {
		if !strings.HasPrefix(answers[i], "+OK") {
			t.Errorf("login %d: %q", i, answers[i])
			continue
		}
		if got := c.Multi("RETR 2"); !bytes.Equal(got, msgs[1]) {
			t.Errorf("login %d: RETR 2 = %q", i, got)
		}
		c.Quit()
	}
	if st := r.srv.Stats(); st.RefreshGrants != 2 || st.RefreshFailures != 0 {
		t.Errorf("%d concurrent logins after expiry: %+v, want 2 refresh grants in all (one per lifetime)", n, st)
	}
}

// A refresh token revoked at the provider: -ERR [SYS/PERM], one error line
// that tells the operator what to run, no more token requests while the
// store holds the same token, and the next login after `oauth login`
// works without a restart.
func TestOAuth2RevokedRefreshTokenNeedsOAuthLoginAndNoRestart(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, nil)
	r.seed(t)
	msgs := r.deliver(t, 1)
	r.session(t, oauthtest.FixtureAccount, msgs)
	// The administrator resets the account: refresh and access tokens die.
	r.srv.RevokeUser(oauthtest.FixtureMailbox)
	const perm = "-ERR [SYS/PERM] Upstream authorisation missing or revoked; the administrator must renew it"
	if got := r.loginResult(t, "local-pw"); got != perm {
		t.Fatalf("login after revocation = %q, want %q", got, perm)
	}
	st := r.srv.Stats()
	// The cached access token was refused upstream, the refresh refused.
	if st.RefreshGrants != 2 || st.RefreshFailures != 1 {
		t.Errorf("stats %+v, want 2 refresh grants, 1 refused", st)
	}
	if got := r.loginResult(t, "local-pw"); got != perm {
		t.Fatalf("second login after revocation = %q", got)
	}
	if st2 := r.srv.Stats(); st2.RefreshGrants != st.RefreshGrants {
		t.Errorf("the dead refresh token was sent again: %+v", st2)
	}
	const line = `level=ERROR msg="oauth2 account needs authorising: run popbridge oauth login scanner" account=scanner provider=idp`
	if n := strings.Count(r.logs.String(), line); n != 1 {
		t.Errorf("%d error lines %q, want 1:\n%s", n, line, r.logs.String())
	}
	// `popbridge oauth login scanner` while popbridge runs.
	r.seed(t)
	r.session(t, oauthtest.FixtureAccount, msgs)
}

func TestOAuth2AccountWithoutStoredTokenIsPermanentError(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, nil)
	if got := r.loginResult(t, "local-pw"); !strings.HasPrefix(got, "-ERR [SYS/PERM] ") {
		t.Fatalf("login without a stored token = %q, want SYS/PERM", got)
	}
	if r.relay.Accepted() != 0 {
		t.Errorf("%d upstream connections without a token", r.relay.Accepted())
	}
	r.waitLog(t, "run popbridge oauth login scanner", 1)

	// A device retrying every minute: one WARN, the repeats at DEBUG.
	for range 2 {
		if got := r.loginResult(t, "local-pw"); !strings.HasPrefix(got, "-ERR [SYS/PERM] ") {
			t.Fatalf("retried login = %q, want SYS/PERM", got)
		}
	}
	r.waitLog(t, `level=DEBUG msg="login error"`, 2)
	if n := strings.Count(r.logs.String(), `level=WARN msg="login error"`); n != 1 {
		t.Errorf("%d WARN login error lines for 3 attempts, want 1:\n%s", n, r.logs.String())
	}
}

// A wrong local password is refused by popbridge alone: neither the token
// endpoint nor the IMAP server hears of it, and the rate limiter counts it.
func TestOAuth2WrongLocalPasswordNeverReachesUpstream(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, func(c *config.Config) { c.Limits.AuthFailuresPerUser = intp(2) })
	r.seed(t)
	for i := range 2 {
		if got := r.loginResult(t, "wrong-local-pw"); got != "-ERR [AUTH] Authentication failed" {
			t.Fatalf("wrong password %d: %q", i, got)
		}
	}
	if got := r.loginResult(t, "local-pw"); got != "-ERR [SYS/TEMP] Too many failed logins, try again later" {
		t.Errorf("after 2 failures with a limit of 2: %q", got)
	}
	if st := r.srv.Stats(); st != (oauthtest.Stats{}) {
		t.Errorf("the OAuth2 server was contacted: %+v", st)
	}
	if n := r.relay.Accepted(); n != 0 {
		t.Errorf("%d connections to the upstream", n)
	}
}

// An access token the upstream stops accepting while popbridge still
// holds it (revoked on its own): one new token, one more try, logged in.
func TestOAuth2RefusedCachedAccessTokenIsReplacedOnce(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, nil)
	rt := r.srv.IssueRefreshToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID)
	at := r.srv.IssueAccessToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID, time.Hour)
	if err := r.store.Save(oauthtest.FixtureAccount, &xoauth2.Token{AccessToken: at, RefreshToken: rt, Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	msgs := r.deliver(t, 1)
	r.session(t, oauthtest.FixtureAccount, msgs) // with the stored access token
	if st := r.srv.Stats(); st.RefreshGrants != 0 {
		t.Fatalf("the stored access token was not used: %+v", st)
	}
	// RFC 7009 revocation of that access token only.
	resp, err := http.PostForm(r.srv.RevocationURL(), url.Values{"token": {at}, "client_id": {oauthtest.DefaultClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r.srv.AccessTokenValid(at) || !r.srv.RefreshTokenValid(rt) {
		t.Fatal("revocation did not go as planned")
	}
	conns := r.relay.Accepted()
	r.session(t, oauthtest.FixtureAccount, msgs)
	if st := r.srv.Stats(); st.RefreshGrants != 1 {
		t.Errorf("stats %+v, want one refresh grant", st)
	}
	if n := r.relay.Accepted() - conns; n != 2 {
		t.Errorf("%d upstream connections for the login, want 2 (refused, then accepted)", n)
	}
	if !strings.Contains(r.logs.String(), "upstream refused the cached access token; getting a new one") {
		t.Errorf("no log line for the retry:\n%s", r.logs.String())
	}
}

func TestOAuth2ClientCredentialsProvider(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantClientCredentials, nil)
	msgs := r.deliver(t, 2)
	r.session(t, oauthtest.FixtureAccount, msgs)
	r.session(t, oauthtest.FixtureAccount, msgs)
	if st := r.srv.Stats(); st.ClientCredentialsGrants != 1 || st.RefreshGrants != 0 {
		t.Errorf("two sessions: %+v, want one client_credentials grant", st)
	}
}

func TestOAuth2TokenEndpointDownIsTemporary(t *testing.T) {
	t.Parallel()
	down := oauthtest.ClosedURL(t)
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, func(c *config.Config) {
		p := c.OAuth2.Providers["idp"]
		p.TokenURL = down + "/token"
		c.OAuth2.Providers["idp"] = p
	})
	r.seed(t)
	if got := r.loginResult(t, "local-pw"); got != "-ERR [SYS/TEMP] Upstream authorisation temporarily unavailable, try again later" {
		t.Errorf("token endpoint down: %q", got)
	}
	if n := r.relay.Accepted(); n != 0 {
		t.Errorf("%d upstream connections without a token", n)
	}
}

// A device suffix selects a per-device view as for password logins.
func TestOAuth2LoginWithDeviceSuffixGetsItsView(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, func(c *config.Config) { c.Policy.Devices.Separator = "#" })
	r.seed(t)
	msgs := r.deliver(t, 2)
	c := pop3test.Dial(t, r.addr)
	c.Login(oauthtest.FixtureAccount+"#scanner2", "local-pw")
	c.OK("DELE 1")
	c.Quit()
	// The device no longer sees message 1; the mailbox and other devices do.
	r.session(t, oauthtest.FixtureAccount+"#scanner2", msgs[1:])
	r.session(t, oauthtest.FixtureAccount, msgs)
}

// Beside TestNoPasswordInLogsOverTLSRefusalsAndLimits: whole OAuth2
// sessions at debug level (refreshes with rotation, a wrong local
// password, a revoked refresh token, the retry after a refused access
// token, app-only tokens with a client secret, both SASL mechanisms)
// leave no access token, refresh token, client secret or local password
// in any log line, also not inside base64 SASL responses.
func TestNoTokenSecretOrLocalPasswordInOAuth2Logs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var logs []*oauthRig
	tokenRE := regexp.MustCompile(`(at|rt)-[0-9a-f]{40}`)
	secrets := []string{"local-pw", "wrong-local-pw", "app-s3cret-77"}
	for _, prefix := range []string{"user=" + oauthtest.FixtureMailbox + "\x01auth=Bearer ", "n,a=" + oauthtest.FixtureMailbox + ","} {
		// A prefix whose length is a multiple of 3 encodes the same in
		// every SASL response that starts with it.
		prefix = prefix[:len(prefix)/3*3]
		secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(prefix)))
	}

	t.Run("delegated", func(t *testing.T) {
		t.Parallel()
		for _, auth := range []imapback.AuthMechanism{imapback.AuthXOAuth2, imapback.AuthOAuthBearer} {
			r := startOAuthRig(t, oauthtest.Options{RotateRefresh: true}, config.GrantCode,
				func(c *config.Config) { c.Upstream.Auth = auth })
			mu.Lock()
			logs = append(logs, r)
			mu.Unlock()
			r.seed(t)
			msgs := r.deliver(t, 1)
			r.session(t, oauthtest.FixtureAccount, msgs) // refresh, rotation
			r.loginResult(t, "wrong-local-pw")
			r.session(t, oauthtest.FixtureAccount, msgs) // cached token
			r.srv.RevokeUser(oauthtest.FixtureMailbox)
			r.loginResult(t, "local-pw") // refused access token, refused refresh
			r.loginResult(t, "local-pw") // dead refresh token
			r.seed(t)
			r.session(t, oauthtest.FixtureAccount, msgs)
			r.waitLog(t, "session ended", 3)
			if !strings.Contains(r.logs.String(), "run popbridge oauth login scanner") {
				t.Errorf("the sessions did not go as planned:\n%s", r.logs.String())
			}
		}
	})
	t.Run("app-only", func(t *testing.T) {
		t.Parallel()
		r := startOAuthRig(t, oauthtest.Options{}, config.GrantClientCredentials, nil)
		mu.Lock()
		logs = append(logs, r)
		mu.Unlock()
		msgs := r.deliver(t, 1)
		r.session(t, oauthtest.FixtureAccount, msgs)
		r.loginResult(t, "wrong-local-pw")
		r.waitLog(t, "session ended", 1)
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range logs {
			out := r.logs.String()
			if m := tokenRE.FindString(out); m != "" {
				t.Errorf("logs contain the token %q:\n%s", m, out)
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("logs contain %q:\n%s", s, out)
				}
			}
		}
	})
}

// A SIGHUP reload builds a new token cache, but takes over what only
// memory holds: here a rotated refresh token that the store refused (its
// lock path is a directory, so every Save fails) and the cached access
// token.
func TestOAuth2ReloadKeepsARotatedTokenTheStoreRefused(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	srv := oauthtest.Start(t, oauthtest.Options{AccessTTL: ttl, RotateRefresh: true})
	dc := dovecottest.Start(t, dovecottest.Options{
		Users:                  map[string]string{oauthtest.FixtureMailbox: "mailbox-pw-unused"},
		OAuth2IntrospectionURL: srv.IntrospectionURL(),
	})
	section := oauthtest.ConfigSection(t, srv, string(config.GrantCode), "")
	newConfig := func() *config.Config {
		parsed, err := config.ParseConfig([]byte(section))
		if err != nil {
			t.Fatal(err)
		}
		return runnerConfig(t, dc.IMAPAddr, "127.0.0.1:0", func(c *config.Config) { c.OAuth2 = parsed.OAuth2 })
	}
	cfg := newConfig()
	store, err := oauth2.OpenStore(cfg.OAuth2.TokenStore)
	if err != nil {
		t.Fatal(err)
	}
	rt0 := srv.IssueRefreshToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID)
	if err := store.Save(oauthtest.FixtureAccount, &xoauth2.Token{RefreshToken: rt0}); err != nil {
		t.Fatal(err)
	}
	os.Remove(cfg.OAuth2.TokenStore.File + ".lock")
	if err := os.Mkdir(cfg.OAuth2.TokenStore.File+".lock", 0o700); err != nil {
		t.Fatal(err)
	}
	var logs testkit.LockedBuffer
	run, err := NewRunner(cfg, RunnerOptions{Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testkit.LogWriter{T: t}),
		&slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- run.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		run.Drain(ctx)
		<-served
	})
	dc.Deliver(t, oauthtest.FixtureMailbox, testMessage(1, "body\r\n"))
	login := func(what string) {
		t.Helper()
		c := pop3test.Dial(t, run.Addrs()[0].String())
		c.OK("USER " + oauthtest.FixtureAccount)
		if got := c.Cmd("PASS local-pw"); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("%s: %q", what, got)
		}
		c.Quit()
	}
	start := time.Now()
	login("first login")
	if srv.RefreshTokenValid(rt0) || !strings.Contains(logs.String(), "the token store refused it") {
		t.Fatalf("the refresh token was not rotated, or its save did not fail:\n%s", logs.String())
	}
	if err := run.Reload(newConfig()); err != nil {
		t.Fatal(err)
	}
	login("login after the reload")
	if time.Since(start) < ttl/2 {
		if st := srv.Stats(); st.RefreshGrants != 1 {
			t.Errorf("the cached access token did not survive the reload: %+v", st)
		}
	}
	time.Sleep(time.Until(start.Add(ttl + 100*time.Millisecond)))
	login("login after expiry") // refreshes with the token only memory has
	if st := srv.Stats(); st.RefreshFailures != 0 || st.RefreshGrants < 2 {
		t.Errorf("stats %+v, want a second refresh and no failure", st)
	}
}
