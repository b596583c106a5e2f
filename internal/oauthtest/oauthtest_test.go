package oauthtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/popbridge/popbridge/internal/oauthtest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func publicConfig(s *oauthtest.Server) *oauth2.Config {
	return &oauth2.Config{ClientID: oauthtest.DefaultClientID, Endpoint: s.Endpoint(), Scopes: []string{"mail"}}
}

// introspect asks the server about tok the way Dovecot's post mode does.
func introspect(t *testing.T, s *oauthtest.Server, tok string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(s.IntrospectionURL(), url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func wantActive(t *testing.T, s *oauthtest.Server, tok, user string) {
	t.Helper()
	m := introspect(t, s, tok)
	if m["active"] != true || m["username"] != user {
		t.Fatalf("introspection of the token = %v, want active for %q", m, user)
	}
}

func wantInactive(t *testing.T, s *oauthtest.Server, tok string) {
	t.Helper()
	m := introspect(t, s, tok)
	if m["active"] != false || len(m) != 1 {
		t.Fatalf("introspection of the token = %v, want only active:false", m)
	}
}

func wantOAuthError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != code {
		t.Fatalf("error = %v, want OAuth2 error %q", err, code)
	}
}

func TestRefreshGrantIssuesAccessTokenForTheUser(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{AccessTTL: 2 * time.Second})
	rt := s.IssueRefreshToken("alice", oauthtest.DefaultClientID)
	tok, err := publicConfig(s).TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != rt {
		t.Errorf("refresh token changed to %q without rotation", tok.RefreshToken)
	}
	if d := time.Until(tok.Expiry); d <= 0 || d > 2*time.Second {
		t.Errorf("token expires in %v, want within the 2s AccessTTL", d)
	}
	wantActive(t, s, tok.AccessToken, "alice")
	if !s.AccessTokenValid(tok.AccessToken) || !s.RefreshTokenValid(rt) {
		t.Error("tokens not valid after the grant")
	}
	if st := s.Stats(); st.RefreshGrants != 1 || st.RefreshFailures != 0 || st.Introspections != 1 || st.ActiveIntrospections != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRotatedRefreshTokenInvalidatesTheOldOne(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{RotateRefresh: true})
	old := s.IssueRefreshToken("alice", oauthtest.DefaultClientID)
	cfg := publicConfig(s)
	tok, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: old}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == old {
		t.Fatalf("refresh token not rotated: %q", tok.RefreshToken)
	}
	if s.RefreshTokenValid(old) || !s.RefreshTokenValid(tok.RefreshToken) {
		t.Error("after rotation the old refresh token must be invalid and the new one valid")
	}
	_, err = cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: old}).Token()
	wantOAuthError(t, err, "invalid_grant")
	if _, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Errorf("refresh with the rotated token: %v", err)
	}
	if st := s.Stats(); st.RefreshGrants != 3 || st.RefreshFailures != 1 {
		t.Errorf("stats = %+v, want 3 refresh grants, 1 failed", st)
	}
}

func TestRefreshTokenOfAnotherClientIsRefused(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{Clients: map[string]string{"a": "", "b": ""}})
	rt := s.IssueRefreshToken("alice", "a")
	cfg := &oauth2.Config{ClientID: "b", Endpoint: s.Endpoint()}
	_, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
	wantOAuthError(t, err, "invalid_grant")
}

func TestRevokeUserEndsRefreshAndAccessTokens(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	rt := s.IssueRefreshToken("alice", oauthtest.DefaultClientID)
	other := s.IssueRefreshToken("bob", oauthtest.DefaultClientID)
	cfg := publicConfig(s)
	tok, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	s.RevokeUser("alice")
	wantInactive(t, s, tok.AccessToken)
	if s.RefreshTokenValid(rt) || !s.RefreshTokenValid(other) {
		t.Error("RevokeUser must end alice's refresh token and only hers")
	}
	_, err = cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
	wantOAuthError(t, err, "invalid_grant")
}

func TestRevocationEndpointRevokesRefreshTokenAndItsAccessTokens(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	rt := s.IssueRefreshToken("alice", oauthtest.DefaultClientID)
	tok, err := publicConfig(s).TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{rt, "never-issued"} {
		resp, err := http.PostForm(s.RevocationURL(), url.Values{"token": {token}, "client_id": {oauthtest.DefaultClientID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("revoking %s: status %d, want 200 (RFC 7009 §2.2)", token, resp.StatusCode)
		}
	}
	if s.RefreshTokenValid(rt) {
		t.Error("refresh token still valid after revocation")
	}
	wantInactive(t, s, tok.AccessToken)
}

func TestAccessTokenExpiresAfterItsTTL(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	tok := s.IssueAccessToken("alice", oauthtest.DefaultClientID, 300*time.Millisecond)
	wantActive(t, s, tok, "alice")
	deadline := time.Now().Add(5 * time.Second)
	for s.AccessTokenValid(tok) {
		if time.Now().After(deadline) {
			t.Fatal("access token still valid 5s after a 300ms TTL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantInactive(t, s, tok)
}

func TestIntrospectionAcceptsDovecotsThreeModes(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	tok := s.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
	reqs := map[string]func(tok string) *http.Request{
		"post": func(tok string) *http.Request {
			r, _ := http.NewRequest("POST", s.IntrospectionURL(), strings.NewReader("token="+url.QueryEscape(tok)))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		},
		"get": func(tok string) *http.Request {
			r, _ := http.NewRequest("GET", s.IntrospectionURL()+"?token="+url.QueryEscape(tok), nil)
			return r
		},
		"auth": func(tok string) *http.Request {
			r, _ := http.NewRequest("GET", s.IntrospectionURL(), nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		},
	}
	for mode, mk := range reqs {
		for _, c := range []struct {
			tok    string
			active bool
		}{{tok, true}, {"at-unknown", false}} {
			resp, err := http.DefaultClient.Do(mk(c.tok))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			err = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || m["active"] != c.active {
				t.Errorf("%s mode, active %v: status %d, body %v, %v", mode, c.active, resp.StatusCode, m, err)
			}
			if c.active && (m["username"] != "alice" || m["exp"] == nil) {
				t.Errorf("%s mode: body %v lacks username or exp", mode, m)
			}
		}
	}
}

// authorize follows /authorize like a browser would, up to the redirect.
func authorize(t *testing.T, authURL string) *url.URL {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/authorize: status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestAuthorizationCodeGrantChecksPKCEAndRedirectURI(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: "alice"})
	cfg := publicConfig(s)
	cfg.RedirectURL = "http://127.0.0.1:5555/callback"
	ctx := ctxT(t)

	code := func(verifier string) string {
		loc := authorize(t, cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier)))
		if got := loc.Scheme + "://" + loc.Host + loc.Path; got != cfg.RedirectURL {
			t.Fatalf("redirected to %q, want %q", got, cfg.RedirectURL)
		}
		if loc.Query().Get("state") != "st4te" || loc.Query().Get("code") == "" {
			t.Fatalf("redirect %q lacks state or code", loc)
		}
		return loc.Query().Get("code")
	}

	verifier := oauth2.GenerateVerifier()
	c := code(verifier)
	_, err := cfg.Exchange(ctx, c, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantOAuthError(t, err, "invalid_grant")
	// A code is spent by the failed attempt too.
	_, err = cfg.Exchange(ctx, c, oauth2.VerifierOption(verifier))
	wantOAuthError(t, err, "invalid_grant")

	c = code(verifier)
	other := *cfg
	other.RedirectURL = "http://127.0.0.1:5556/callback"
	_, err = other.Exchange(ctx, c, oauth2.VerifierOption(verifier))
	wantOAuthError(t, err, "invalid_grant")

	c = code(verifier)
	_, err = cfg.Exchange(ctx, c)
	wantOAuthError(t, err, "invalid_request")

	c = code(verifier)
	tok, err := cfg.Exchange(ctx, c, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	wantActive(t, s, tok.AccessToken, "alice")
	if !s.RefreshTokenValid(tok.RefreshToken) {
		t.Error("authorization code grant gave no valid refresh token")
	}
	if st := s.Stats(); st.AuthorizationCodeGrants != 5 || st.Authorizations != 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAuthorizeRefusesNonLoopbackRedirectAndMissingPKCE(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: "alice"})
	cfg := publicConfig(s)
	cfg.RedirectURL = "http://example.com/callback"
	resp, err := http.Get(cfg.AuthCodeURL("x", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("non-loopback redirect_uri: status %d, want 400 without redirect", resp.StatusCode)
	}
	cfg.RedirectURL = "http://[::1]:1234/cb"
	loc := authorize(t, cfg.AuthCodeURL("x"))
	if loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Errorf("authorization without PKCE redirected to %q, want error=invalid_request", loc)
	}
}

func TestDeviceGrantPendsUntilApproved(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	cfg := publicConfig(s)
	ctx := ctxT(t)
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if da.UserCode == "" || da.VerificationURI == "" || da.Interval != 1 || da.Expiry.IsZero() {
		t.Fatalf("device authorisation response %+v", da)
	}
	if got := s.PendingDeviceCodes(); len(got) != 1 || got[0] != da.UserCode {
		t.Fatalf("pending user codes = %v, want [%s]", got, da.UserCode)
	}
	go func() {
		// Approve after the first poll was told to wait.
		for s.Stats().DeviceCodeGrants < 1 && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		s.ApproveDevice(da.UserCode, "alice")
	}()
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatal(err)
	}
	wantActive(t, s, tok.AccessToken, "alice")
	if st := s.Stats(); st.DeviceCodeGrants < 2 || st.DeviceAuthorizations != 1 {
		t.Errorf("stats = %+v, want at least one pending poll before the token", st)
	}
	if err := s.ApproveDevice(da.UserCode, "alice"); err == nil {
		t.Error("a device code that gave its token can be approved again")
	}
}

// pollDevice sends one raw device-code token request and returns its
// OAuth2 error code ("" on success).
func pollDevice(t *testing.T, s *oauthtest.Server, deviceCode string) string {
	t.Helper()
	resp, err := http.PostForm(s.Endpoint().TokenURL, url.Values{
		"grant_type": {oauthtest.GrantDeviceCode}, "device_code": {deviceCode}, "client_id": {oauthtest.DefaultClientID}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	e, _ := m["error"].(string)
	return e
}

func TestDeviceGrantSlowDownDeniedAndExpired(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{DeviceTTL: time.Second})
	cfg := publicConfig(s)
	ctx := ctxT(t)
	slow, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	denied, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := pollDevice(t, s, slow.DeviceCode); got != "authorization_pending" {
		t.Errorf("first poll: %q, want authorization_pending", got)
	}
	if got := pollDevice(t, s, slow.DeviceCode); got != "slow_down" {
		t.Errorf("immediate second poll: %q, want slow_down", got)
	}
	s.DenyDevice(denied.UserCode)
	if got := pollDevice(t, s, denied.DeviceCode); got != "access_denied" {
		t.Errorf("denied: %q, want access_denied", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := pollDevice(t, s, slow.DeviceCode); got != "expired_token" {
		t.Errorf("after DeviceTTL: %q, want expired_token", got)
	}
	if err := s.ApproveDevice(slow.UserCode, "alice"); err == nil {
		t.Error("an expired device code can be approved")
	}
}

func TestClientCredentialsGrantIsAppOnly(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{
		// Characters that RFC 6749 §2.3.1 form-encodes in basic auth.
		Clients:               map[string]string{"app:1": "s3cr&t %x", "public": ""},
		ClientCredentialsUser: map[string]string{"app:1": "printer@example.com"},
	})
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := &clientcredentials.Config{ClientID: "app:1", ClientSecret: "s3cr&t %x", TokenURL: s.Endpoint().TokenURL,
			Scopes: []string{"https://outlook.office365.com/.default"}, AuthStyle: style}
		tok, err := cc.Token(ctxT(t))
		if err != nil {
			t.Fatalf("auth style %v: %v", style, err)
		}
		if tok.RefreshToken != "" {
			t.Error("client_credentials must not issue a refresh token (RFC 6749 §4.4.3)")
		}
		wantActive(t, s, tok.AccessToken, "printer@example.com")

		cc.ClientSecret = "wrong"
		_, err = cc.Token(ctxT(t))
		wantOAuthError(t, err, "invalid_client")
	}
	pub := &clientcredentials.Config{ClientID: "public", TokenURL: s.Endpoint().TokenURL, AuthStyle: oauth2.AuthStyleInParams}
	_, err := pub.Token(ctxT(t))
	wantOAuthError(t, err, "unauthorized_client")
	if st := s.Stats(); st.ClientCredentialsGrants != 5 {
		t.Errorf("stats = %+v, want 5 client_credentials grants", st)
	}
}

func TestUnknownClientAndGrantTypeAreRefused(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	cfg := &oauth2.Config{ClientID: "nobody", Endpoint: s.Endpoint()}
	_, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: "rt-x"}).Token()
	wantOAuthError(t, err, "invalid_client")

	resp, err := http.PostForm(s.Endpoint().TokenURL, url.Values{"grant_type": {"password"}, "client_id": {oauthtest.DefaultClientID}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != 400 || m["error"] != "unsupported_grant_type" {
		t.Errorf("password grant: %d %v, want 400 unsupported_grant_type", resp.StatusCode, m)
	}
}

func TestTokenEndpointOutageAndDelay(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{})
	rt := s.IssueRefreshToken("alice", oauthtest.DefaultClientID)
	cfg := publicConfig(s)
	s.FailTokenRequests(http.StatusServiceUnavailable)
	_, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable || re.ErrorCode != "temporarily_unavailable" {
		t.Fatalf("refresh during an outage: %v, want 503 temporarily_unavailable", err)
	}
	if !s.RefreshTokenValid(rt) {
		t.Error("an outage invalidated the refresh token")
	}
	s.FailTokenRequests(0)
	s.SetTokenDelay(300 * time.Millisecond)
	start := time.Now()
	if _, err := cfg.TokenSource(ctxT(t), &oauth2.Token{RefreshToken: rt}).Token(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("refresh answered after %v, before the 300ms delay", d)
	}
	if st := s.Stats(); st.RefreshGrants != 2 || st.RefreshFailures != 1 {
		t.Errorf("stats = %+v", st)
	}
}
