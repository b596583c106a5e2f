package oauth2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// Tests of `popbridge oauth login`'s grants against a real OAuth2 server
// on 127.0.0.1 (internal/oauthtest).

const loginUser = "scanner@example.com" // the mailbox that signs in

// loginConfig is a checked config with one account, scanner, whose
// generic provider is the test server. store is the token_store section.
func loginTestConfig(t *testing.T, serverURL, store, provider string) *config.Config {
	t.Helper()
	cfg, err := oauth2TestConfig(t, fmt.Sprintf(`
  token_store: %s
  providers:
    idp: {preset: generic, client_id: %s, token_url: "%s/token", auth_url: "%s/authorize", device_auth_url: "%s/device",
          scopes: [imap, offline_access], upstream: default, %s}
  accounts:
    - {user: scanner, password_hash: "HASH", provider: idp, upstream_user: %s}
`, store, oauthtest.DefaultClientID, serverURL, serverURL, serverURL, provider, loginUser))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// login runs Login in the background; its output is out.
type login struct {
	out  testkit.LockedBuffer
	done chan error
}

func startLogin(ctx context.Context, cfg *config.Config, opts LoginOptions) *login {
	l := &login{done: make(chan error, 1)}
	opts.Out = &l.out
	go func() { l.done <- Login(ctx, cfg, "scanner", opts) }()
	return l
}

// await returns the first submatch of re in the output, once it appears.
func (l *login) await(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(l.out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-l.done:
			t.Fatalf("login ended (%v) before printing %s:\n%s", err, re, l.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %s within 20s in:\n%s", re, l.out.String())
	return ""
}

func (l *login) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-l.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("login did not end within 30s:\n%s", l.out.String())
		return nil
	}
}

var (
	userCodeRE = regexp.MustCompile(`enter this code:\s+(\S+)`)
	authURLRE  = regexp.MustCompile(`Open this address in a browser on this computer:\s+(\S+)`)
)

// storedToken loads scanner's token and proves it works: the test server
// knows its refresh token and refreshes it for the mailbox's user.
func storedToken(t *testing.T, s *oauthtest.Server, cfg *config.Config) *oauth2.Token {
	t.Helper()
	store, err := OpenStore(cfg.OAuth2.TokenStore)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := store.Load("scanner")
	if err != nil {
		t.Fatalf("the token store has no token for scanner: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || !s.RefreshTokenValid(tok.RefreshToken) {
		t.Fatalf("stored token: access %v, refresh %v (valid %v)", tok.AccessToken != "", tok.RefreshToken != "", s.RefreshTokenValid(tok.RefreshToken))
	}
	p := cfg.OAuth2.Providers["idp"]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fresh, err := p.Client().TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || !s.AccessTokenValid(fresh.AccessToken) || fresh.AccessToken == tok.AccessToken {
		t.Fatalf("refreshing the stored token: %v", err)
	}
	return tok
}

// noneStored checks that the store holds no token for scanner.
func noneStored(t *testing.T, cfg *config.Config) {
	t.Helper()
	if dir := cfg.OAuth2.TokenStore.Dir; dir != "" {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "key" && e.Name() != "secret" { // oauth2TestConfig's
				t.Errorf("%s left in the token store directory", e.Name())
			}
		}
	}
	store, err := OpenStore(cfg.OAuth2.TokenStore)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load("scanner"); !errors.Is(err, errNoToken) {
		t.Fatalf("after a failed login the store has a token for scanner (or fails: %v)", err)
	}
}

// noSecrets fails if any of secrets shows in the output.
func noSecrets(t *testing.T, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("the output shows a secret (%.6s...):\n%s", s, out)
		}
	}
}

func TestOAuthLoginDeviceGrantPollsUntilApprovedAndStoresARefreshableToken(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"{dir: DIR}", "{dir: DIR, key_file: KEY}", "{file: DIR/tokens, key_file: KEY}"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			// The device code lives 15 s and the interval is 1 s. Approval
			// comes after three polls (about 3 s): a client that polled
			// twice per interval (x/oauth2's auth-style probing repeats
			// each authorization_pending answer) is told to slow down to
			// 6 s, then 11 s, and sees the code expire first. The margin
			// allows one slow_down of a loaded machine's late ticks.
			s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second, DeviceTTL: 15 * time.Second, RotateRefresh: true})
			cfg := loginTestConfig(t, s.URL, store, "grant: device")
			l := startLogin(context.Background(), cfg, LoginOptions{Timeout: time.Minute})
			code := l.await(t, userCodeRE)
			for s.Stats().DeviceCodeGrants < 3 {
				select {
				case err := <-l.done:
					t.Fatalf("login ended before approval: %v\n%s", err, l.out.String())
				case <-time.After(50 * time.Millisecond):
				}
			}
			if err := s.ApproveDevice(code, loginUser); err != nil {
				t.Fatal(err)
			}
			if err := l.result(t); err != nil {
				t.Fatalf("login: %v\n%s", err, l.out.String())
			}
			out := l.out.String()
			for _, want := range []string{s.URL + "/verify\n", s.URL + "/verify?user_code=" + code, "sign in as the mailbox " + loginUser,
				"Done: account scanner is authorised (provider idp, device grant)", "no restart needed"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			tok := storedToken(t, s, cfg)
			noSecrets(t, out, tok.AccessToken, tok.RefreshToken)
			if strings.Contains(out, "dc-") {
				t.Errorf("the output shows the device code:\n%s", out)
			}
		})
	}
}

func TestOAuthLoginDeviceGrantThatEndsWithoutApprovalStoresNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		timeout time.Duration
		act     func(s *oauthtest.Server, code string, cancel context.CancelFunc) error
		want    string
	}{
		{name: "denied", act: func(s *oauthtest.Server, code string, _ context.CancelFunc) error { return s.DenyDevice(code) },
			want: "the sign-in was declined (access_denied); nothing stored"},
		{name: "code expired", ttl: 2 * time.Second, want: "the code expired before the sign-in was completed; nothing stored: run oauth login again"},
		{name: "timeout", timeout: 1500 * time.Millisecond, want: "no sign-in within 1.5s (-timeout); nothing stored"},
		{name: "interrupted", act: func(_ *oauthtest.Server, _ string, cancel context.CancelFunc) error { cancel(); return nil },
			want: "interrupted; nothing stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second, DeviceTTL: tc.ttl})
			cfg := loginTestConfig(t, s.URL, "{dir: DIR}", "grant: device")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l := startLogin(ctx, cfg, LoginOptions{Timeout: tc.timeout})
			code := l.await(t, userCodeRE)
			if tc.act != nil {
				if err := tc.act(s, code, cancel); err != nil {
					t.Fatal(err)
				}
			}
			err := l.result(t)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("login: %v\nwant %q", err, tc.want)
			}
			noneStored(t, cfg)
		})
	}
}

// follow requests u without following redirects and returns the
// response's Location, or the response itself when there is none.
func follow(t *testing.T, u string) (*url.URL, *http.Response, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return nil, resp, string(body)
	}
	return loc, resp, string(body)
}

func TestOAuthLoginCodeGrantTakesTheRedirectAndStoresARefreshableToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		host  string // -redirect-host
		fixed bool   // -redirect-port
	}{
		{"127.0.0.1, any port", "", false},
		{"localhost, fixed port", "localhost", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := 0
			if tc.fixed {
				port = freePort(t)
			}
			testCodeGrant(t, tc.host, port)
		})
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func testCodeGrant(t *testing.T, host string, port int) {
	s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: loginUser})
	cfg := loginTestConfig(t, s.URL, "{file: DIR/tokens, key_file: KEY}", "grant: code")
	l := startLogin(context.Background(), cfg, LoginOptions{Timeout: time.Minute, RedirectHost: host, RedirectPort: port})
	authURL := l.await(t, authURLRE)
	wantHost := host
	if wantHost == "" {
		wantHost = "127.0.0.1"
	}

	// The browser: the authorisation server approves and redirects to
	// the command's loopback listener.
	redirect, resp, body := follow(t, authURL)
	if redirect == nil {
		t.Fatalf("authorize: %s %s", resp.Status, body)
	}
	code := redirect.Query().Get("code")
	if redirect.Scheme != "http" || redirect.Hostname() != wantHost || redirect.Port() == "" || redirect.Path != "/" || code == "" ||
		(port != 0 && redirect.Port() != fmt.Sprint(port)) {
		t.Fatalf("redirect to %s: want a code for http://%s:%d/ (0: any port)", redirect, wantHost, port)
	}
	_, resp, body = follow(t, redirect.String())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "signed in") || !strings.Contains(body, "You can close this window") {
		t.Errorf("the redirect's page: %s\n%s", resp.Status, body)
	}
	if err := l.result(t); err != nil {
		t.Fatalf("login: %v\n%s", err, l.out.String())
	}
	// oauthtest checks the PKCE verifier against the challenge and the
	// redirect_uri against the authorisation request's: the exchange
	// succeeded, so both were right.
	if st := s.Stats(); st.AuthorizationCodeGrants != 1 {
		t.Errorf("%d code exchanges, want 1", st.AuthorizationCodeGrants)
	}
	tok := storedToken(t, s, cfg)
	out := l.out.String()
	if !strings.Contains(out, "Done: account scanner is authorised (provider idp, code grant)") {
		t.Errorf("output:\n%s", out)
	}
	noSecrets(t, out, tok.AccessToken, tok.RefreshToken, code)

	// The listener is gone with the command.
	if _, err := http.Get(redirect.String()); err == nil {
		t.Error("the loopback listener still answers after the login")
	}
}

func TestOAuthLoginCodeGrantRefusesAWrongStateAndADenial(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, user string
		tamper     func(u *url.URL)
		want       string
	}{
		{name: "wrong state", user: loginUser, tamper: func(u *url.URL) {
			q := u.Query()
			q.Set("state", "forged")
			u.RawQuery = q.Encode()
		}, want: "the redirect carried a wrong state (a stale or forged sign-in); the code was not used; nothing stored"},
		{name: "no state", user: loginUser, tamper: func(u *url.URL) {
			q := u.Query()
			q.Del("state")
			u.RawQuery = q.Encode()
		}, want: "wrong state"},
		{name: "access denied", user: "", want: "the sign-in was declined (access_denied); nothing stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: tc.user})
			cfg := loginTestConfig(t, s.URL, "{dir: DIR}", "grant: code")
			l := startLogin(context.Background(), cfg, LoginOptions{Timeout: time.Minute})
			u, err := url.Parse(l.await(t, authURLRE))
			if err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(u)
			}
			redirect, resp, body := follow(t, u.String())
			if redirect == nil {
				t.Fatalf("authorize: %s %s", resp.Status, body)
			}
			_, resp, body = follow(t, redirect.String())
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "sign-in failed") {
				t.Errorf("the redirect's page: %s\n%s", resp.Status, body)
			}
			if err := l.result(t); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("login: %v\nwant %q", err, tc.want)
			}
			if n := s.Stats().AuthorizationCodeGrants; n != 0 {
				t.Errorf("the code was exchanged %d times", n)
			}
			noneStored(t, cfg)
		})
	}
}

func TestOAuthLoginCodeGrantIgnoresStrayRequestsToTheListener(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: loginUser})
	cfg := loginTestConfig(t, s.URL, "{dir: DIR}", "grant: code")
	l := startLogin(context.Background(), cfg, LoginOptions{Timeout: time.Minute})
	u, _ := url.Parse(l.await(t, authURLRE))
	base := u.Query().Get("redirect_uri")
	for _, path := range []string{"favicon.ico", "", "?foo=bar"} {
		_, resp, _ := follow(t, base+path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s%s: %s, want 404", base, path, resp.Status)
		}
	}
	redirect, _, _ := follow(t, u.String())
	follow(t, redirect.String())
	if err := l.result(t); err != nil {
		t.Fatalf("login after stray requests: %v", err)
	}
	storedToken(t, s, cfg)
}

func TestOAuthLoginClientCredentialsChecksTheClientAndStoresNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, secret string // the client's secret at the server; the config's is "s3cret"
		want         string
	}{
		{"right secret", "s3cret", ""},
		{"wrong secret", "other", "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := oauthtest.Start(t, oauthtest.Options{
				Clients:               map[string]string{oauthtest.DefaultClientID: tc.secret},
				ClientCredentialsUser: map[string]string{oauthtest.DefaultClientID: loginUser},
			})
			cfg := loginTestConfig(t, s.URL, "{dir: DIR}", "grant: client_credentials, client_secret_file: SECRET")
			var out testkit.LockedBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := Login(ctx, cfg, "scanner", LoginOptions{Out: &out})
			if tc.want == "" {
				if err != nil || !strings.Contains(out.String(), "Checked: "+s.URL+"/token issued an app-only access token") ||
					!strings.Contains(out.String(), "nothing to store") {
					t.Fatalf("login: %v\n%s", err, out.String())
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("login: %v, want an error with %q", err, tc.want)
			}
			if n := s.Stats().ClientCredentialsGrants; n != 1 {
				t.Errorf("%d client_credentials requests, want 1", n)
			}
			noneStored(t, cfg)
			noSecrets(t, out.String()+fmt.Sprint(err), "s3cret")
		})
	}
}

func TestOAuthLoginRefusesATokenWithoutRefreshToken(t *testing.T) {
	t.Parallel()
	// A server that answers every token request with an access token
	// only, as a provider does without offline access.
	mux := http.NewServeMux()
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://idp.example/verify","expires_in":60,"interval":1}`)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at-only","token_type":"Bearer","expires_in":3600}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg := loginTestConfig(t, srv.URL, "{dir: DIR}", "grant: device")
	var out testkit.LockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := Login(ctx, cfg, "scanner", LoginOptions{Out: &out})
	if err == nil || !strings.Contains(err.Error(), "provider idp issued no refresh token") {
		t.Fatalf("login: %v", err)
	}
	noneStored(t, cfg)
	noSecrets(t, out.String()+err.Error(), "at-only")
}

// oauth2TestConfig checks a config whose oauth2 section is section, with
// KEY, SECRET, HASH ("local-pw") and DIR filled in.
func oauth2TestConfig(t *testing.T, section string) (*config.Config, error) {
	t.Helper()
	cfg, err := config.ParseConfig([]byte("upstream: {address: 127.0.0.1:143}\noauth2:\n" + oauthtest.ExpandSection(t, section)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cfg.Check()
}
