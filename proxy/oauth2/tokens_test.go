package oauth2

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// tokenFixture is a token cache for one account ("scanner", mailbox
// "scanner@example.org") against a real oauthtest server, with a sealed
// file store, logs at debug level, and a clock the test can move.
type tokenFixture struct {
	srv   *oauthtest.Server
	cfg   *config.Config
	store Store
	cache *TokenCache
	logs  *testkit.LockedBuffer
	key   string

	mu      sync.Mutex
	offset  time.Duration
	results []string // what the TokenObserver saw: result, and "+" when a request was made
}

func (f *tokenFixture) TokenRequest(provider, result string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if provider != "idp" {
		result = "provider " + provider
	}
	if d > 0 {
		result += "+"
	}
	f.results = append(f.results, result)
}

// expectObserved checks the token requests the observer saw so far,
// space-separated (see results).
func (f *tokenFixture) expectObserved(t *testing.T, want string) {
	t.Helper()
	f.mu.Lock()
	got := strings.Join(f.results, " ")
	f.mu.Unlock()
	if got != want {
		t.Errorf("observed %q, want %q", got, want)
	}
}

func newTokenFixture(t *testing.T, opts oauthtest.Options, grant config.Grant) *tokenFixture {
	t.Helper()
	if grant == config.GrantClientCredentials {
		opts.Clients = map[string]string{oauthtest.AppClientID: oauthtest.AppSecret}
		opts.ClientCredentialsUser = map[string]string{oauthtest.AppClientID: oauthtest.FixtureMailbox}
	}
	srv := oauthtest.Start(t, opts)
	cfg, err := config.ParseConfig([]byte("upstream: {address: 127.0.0.1:143}\n" + oauthtest.ConfigSection(t, srv, string(grant), "")))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	f := &tokenFixture{srv: srv, cfg: cfg, logs: &testkit.LockedBuffer{}}
	f.cache = f.newCache(t)
	f.store = f.cache.store
	a, _ := cfg.OAuth2.Account(oauthtest.FixtureAccount)
	f.key = f.cache.KeyFor(a)
	return f
}

// newCache is a cache over the fixture's config and store, as after a
// restart or reload.
func (f *tokenFixture) newCache(t *testing.T) *TokenCache {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(f.logs, testkit.LogWriter{T: t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := NewTokenCache(&f.cfg.OAuth2, log, f)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time {
		f.mu.Lock()
		defer f.mu.Unlock()
		return time.Now().Add(f.offset)
	}
	return c
}

// advance moves the cache's clock forward.
func (f *tokenFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.offset += d
	f.mu.Unlock()
}

// seed stores a refresh token for the account, as `popbridge oauth
// login` would, and returns it.
func (f *tokenFixture) seed(t *testing.T) string {
	t.Helper()
	return f.srv.SeedFixture(t, f.store.Save)
}

func (f *tokenFixture) token(t *testing.T) (string, bool, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.cache.Token(ctx, f.key)
}

func (f *tokenFixture) mustToken(t *testing.T) string {
	t.Helper()
	tok, _, err := f.token(t)
	if err != nil {
		t.Fatal(err)
	}
	if !f.srv.AccessTokenValid(tok) {
		t.Fatalf("token %q is not valid at the server", tok)
	}
	return tok
}

func TestExpiryMarginIsAMinuteOrATenthOfTheLifetime(t *testing.T) {
	for _, tc := range []struct{ lifetime, want time.Duration }{
		{time.Hour, time.Minute},
		{10 * time.Minute, time.Minute},
		{5 * time.Minute, 30 * time.Second},
		{2 * time.Second, 200 * time.Millisecond},
		{0, 0},
		{-time.Second, 0},
	} {
		if got := expiryMargin(tc.lifetime); got != tc.want {
			t.Errorf("expiryMargin(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
}

func TestAccessTokenIsCachedUntilShortlyBeforeExpiry(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{AccessTTL: time.Hour}, config.GrantCode)
	f.seed(t)
	first := f.mustToken(t)
	if got := f.srv.Stats().RefreshGrants; got != 1 {
		t.Fatalf("first login: %d refresh grants, want 1", got)
	}
	// 58 minutes later the token has more than its minute of margin left.
	f.advance(58 * time.Minute)
	if tok, fresh, err := f.token(t); err != nil || tok != first || fresh {
		t.Fatalf("after 58 min: token %q fresh %v err %v, want the cached one", tok, fresh, err)
	}
	if got := f.srv.Stats().RefreshGrants; got != 1 {
		t.Fatalf("cached token: %d refresh grants, want 1", got)
	}
	// Within the last minute it is replaced.
	f.advance(time.Minute + time.Second)
	second, fresh, err := f.token(t)
	if err != nil || second == first || !fresh {
		t.Fatalf("inside the margin: token %q (first %q) fresh %v err %v, want a new one", second, first, fresh, err)
	}
	if got := f.srv.Stats().RefreshGrants; got != 2 {
		t.Fatalf("inside the margin: %d refresh grants, want 2", got)
	}
}

func TestConcurrentLoginsShareOneRefresh(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{RotateRefresh: true}, config.GrantCode)
	f.seed(t)
	// The refresh takes long enough for every login to arrive meanwhile.
	f.srv.SetTokenDelay(300 * time.Millisecond)
	const n = 16
	toks := make([]string, n)
	errs := make([]error, n)
	testkit.AtOnce(n, func(i int) { toks[i], _, errs[i] = f.token(t) })
	for i := range n {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Errorf("login %d: token %q err %v, want %q", i, toks[i], errs[i], toks[0])
		}
	}
	if got := f.srv.Stats().RefreshGrants; got != 1 {
		t.Errorf("%d concurrent logins made %d refresh grants, want 1", n, got)
	}
}

func TestRotatedRefreshTokenIsSavedAndUsedAfterRestart(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{RotateRefresh: true}, config.GrantCode)
	rt0 := f.seed(t)
	f.mustToken(t)
	stored, err := f.store.Load(oauthtest.FixtureAccount)
	if err != nil {
		t.Fatal(err)
	}
	if stored.RefreshToken == rt0 || !f.srv.RefreshTokenValid(stored.RefreshToken) || f.srv.RefreshTokenValid(rt0) {
		t.Fatalf("after rotation the store holds %q (valid %v); the old one valid: %v",
			stored.RefreshToken, f.srv.RefreshTokenValid(stored.RefreshToken), f.srv.RefreshTokenValid(rt0))
	}
	// A restarted daemon refreshes with the saved token.
	f.cache = f.newCache(t)
	f.advance(2 * time.Hour) // the stored access token has expired
	f.mustToken(t)
	if st := f.srv.Stats(); st.RefreshGrants != 2 || st.RefreshFailures != 0 {
		t.Errorf("stats %+v, want 2 refresh grants without failures", st)
	}
	f.expectObserved(t, "rotated+ rotated+")
	if !strings.Contains(f.logs.String(), "oauth2 refresh token rotated and saved") {
		t.Errorf("no log line for the rotation:\n%s", f.logs.String())
	}
}

func TestStoredAccessTokenIsUsedWithoutRefresh(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)
	rt := f.srv.IssueRefreshToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID)
	at := f.srv.IssueAccessToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID, time.Hour)
	// As `oauth login` leaves it: the whole token response.
	if err := f.store.Save(oauthtest.FixtureAccount, &oauth2.Token{AccessToken: at, RefreshToken: rt, Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if tok := f.mustToken(t); tok != at {
		t.Errorf("token %q, want the stored %q", tok, at)
	}
	if got := f.srv.Stats().RefreshGrants; got != 0 {
		t.Errorf("%d refresh grants, want 0", got)
	}
}

// readOnlyStore is a real store whose Save fails, as a read-only Secret
// mount does.
type readOnlyStore struct {
	Store
	mu    sync.Mutex
	saves int
}

func (s *readOnlyStore) Save(string, *oauth2.Token) error {
	s.mu.Lock()
	s.saves++
	s.mu.Unlock()
	return errors.New("read-only file system")
}

func TestRotatedTokenKeptInMemoryWhenTheStoreIsReadOnly(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{RotateRefresh: true, AccessTTL: time.Hour}, config.GrantCode)
	rt0 := f.seed(t)
	ro := &readOnlyStore{Store: f.store}
	f.cache.store = ro
	for i := range 3 {
		f.mustToken(t)
		f.advance(time.Hour)
		if i == 0 && f.srv.RefreshTokenValid(rt0) {
			t.Fatal("the server did not rotate the refresh token")
		}
	}
	// Each refresh used the rotated token from memory: the store's is
	// invalid since the first.
	if st := f.srv.Stats(); st.RefreshGrants != 3 || st.RefreshFailures != 0 {
		t.Errorf("stats %+v, want 3 refresh grants without failures", st)
	}
	if ro.saves != 3 {
		t.Errorf("%d saves tried, want 3", ro.saves)
	}
	if n := strings.Count(f.logs.String(), "level=WARN msg=\"oauth2 refresh token rotated but the token store refused it"); n != 1 {
		t.Errorf("%d warnings about the read-only store, want 1:\n%s", n, f.logs.String())
	}
	// The operator authorises again: the new token in the store wins
	// over the one in memory.
	ro.Store.Save(oauthtest.FixtureAccount, &oauth2.Token{RefreshToken: f.srv.IssueRefreshToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID)})
	f.mustToken(t)
	if got := f.srv.Stats().RefreshGrants; got != 4 {
		t.Errorf("%d refresh grants, want 4", got)
	}
}

func TestRevokedRefreshTokenIsPermanentUntilTheStoreHasANewOne(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)
	f.seed(t)
	f.mustToken(t)
	f.srv.RevokeUser(oauthtest.FixtureMailbox)
	f.advance(2 * time.Hour)
	for i := range 3 {
		_, _, err := f.token(t)
		var te *TokenError
		if !errors.As(err, &te) || !te.Perm {
			t.Fatalf("attempt %d after revocation: %v, want a permanent TokenError", i, err)
		}
	}
	// One request found out; the others did not ask again.
	if st := f.srv.Stats(); st.RefreshGrants != 2 || st.RefreshFailures != 1 {
		t.Errorf("stats %+v, want 2 refresh grants, 1 failure", st)
	}
	want := "level=ERROR msg=\"oauth2 account needs authorising: run popbridge oauth login scanner\" account=scanner provider=idp"
	if n := strings.Count(f.logs.String(), want); n != 1 {
		t.Errorf("%d error lines %q, want 1:\n%s", n, want, f.logs.String())
	}
	// `popbridge oauth login scanner`, while the daemon runs.
	f.seed(t)
	f.mustToken(t)
	f.expectObserved(t, "ok+ revoked+ revoked revoked ok+")
}

func TestNoStoredTokenIsPermanent(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)
	_, _, err := f.token(t)
	var te *TokenError
	if !errors.As(err, &te) || !te.Perm || !strings.Contains(te.text, "no refresh token stored") {
		t.Fatalf("empty store: %v, want a permanent TokenError", err)
	}
	if st := f.srv.Stats(); st.RefreshGrants != 0 {
		t.Errorf("a refresh without a refresh token: %+v", st)
	}
	if !strings.Contains(f.logs.String(), "level=ERROR msg=\"oauth2 account needs authorising: run popbridge oauth login scanner\"") {
		t.Errorf("no error line:\n%s", f.logs.String())
	}
	f.seed(t)
	f.mustToken(t)
	f.expectObserved(t, "missing ok+")
}

func TestTokenEndpointDownOrFailingIsTemporary(t *testing.T) {
	t.Parallel()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html>upstream proxy error</html>")
	}))
	t.Cleanup(failing.Close)
	for name, url := range map[string]string{"down": oauthtest.ClosedURL(t), "502 html": failing.URL, "503 temporarily_unavailable": ""} {
		t.Run(name, func(t *testing.T) {
			f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)
			rt := f.seed(t)
			e := f.cache.entries[f.key]
			if url == "" {
				url = f.srv.URL
				f.srv.FailTokenRequests(http.StatusServiceUnavailable)
			}
			e.conf.Endpoint.TokenURL = url + "/token"
			_, _, err := f.token(t)
			var te *TokenError
			if !errors.As(err, &te) || te.Perm {
				t.Fatalf("endpoint %s: %v, want a temporary TokenError", name, err)
			}
			if strings.Contains(te.Error(), "<html>") || strings.Contains(f.logs.String(), rt) {
				t.Errorf("response body or refresh token in the error or logs: %q\n%s", te.Error(), f.logs.String())
			}
			if !strings.Contains(f.logs.String(), "level=WARN msg=\"oauth2 token endpoint") {
				t.Errorf("no warning:\n%s", f.logs.String())
			}
			f.expectObserved(t, "failed+")
			// Back up: the next login works with the same refresh token.
			e.conf.Endpoint.TokenURL = f.srv.URL + "/token"
			f.srv.FailTokenRequests(0)
			f.mustToken(t)
		})
	}
}

func TestWaitingLoginGivesUpWithItsContextWhileTheRefreshGoesOn(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{RotateRefresh: true}, config.GrantCode)
	rt0 := f.seed(t)
	f.srv.SetTokenDelay(time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := f.cache.Token(ctx, f.key)
	var te *TokenError
	if !errors.As(err, &te) || te.Perm || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past the deadline: %v, want a temporary TokenError wrapping DeadlineExceeded", err)
	}
	// The refresh finished without the login that started it, and its
	// token is cached for the next.
	for deadline := time.Now().Add(10 * time.Second); ; {
		f.cache.mu.Lock()
		done := f.cache.entries[f.key].flight == nil
		f.cache.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refresh did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tok, fresh, err := f.token(t); err != nil || fresh || !f.srv.AccessTokenValid(tok) {
		t.Errorf("after the refresh: token %q fresh %v err %v, want a valid cached one", tok, fresh, err)
	}
	if got := f.srv.Stats().RefreshGrants; got != 1 {
		t.Errorf("%d refresh grants, want 1", got)
	}
	// Its rotated refresh token was saved, not lost with the login.
	if tok, err := f.store.Load(oauthtest.FixtureAccount); err != nil || tok.RefreshToken == rt0 || !f.srv.RefreshTokenValid(tok.RefreshToken) {
		t.Errorf("store after the abandoned refresh: %v", err)
	}
}

func TestInvalidateDropsOnlyTheRefusedToken(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)
	f.seed(t)
	a := f.mustToken(t)
	f.cache.Invalidate(f.key, a)
	b, fresh, err := f.token(t)
	if err != nil || b == a || !fresh {
		t.Fatalf("after invalidate: %q fresh %v err %v, want a new token", b, fresh, err)
	}
	// A second login that was refused the old token must not throw away
	// the new one.
	f.cache.Invalidate(f.key, a)
	if c, fresh, err := f.token(t); err != nil || c != b || fresh {
		t.Errorf("stale invalidate: %q fresh %v err %v, want the cached %q", c, fresh, err, b)
	}
	if got := f.srv.Stats().RefreshGrants; got != 2 {
		t.Errorf("%d refresh grants, want 2", got)
	}
}

func TestClientCredentialsTokenIsCachedPerProvider(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{AccessTTL: time.Hour}, config.GrantClientCredentials)
	a := f.mustToken(t)
	if b := f.mustToken(t); b != a {
		t.Errorf("second call: %q, want the cached %q", b, a)
	}
	// Another account of the same app-only provider shares the token.
	other := config.AccountConfig{User: "printer", Provider: "idp"}
	if b, fresh, err := f.cache.Token(context.Background(), f.cache.KeyFor(&other)); err != nil || b != a || fresh {
		t.Errorf("another account: %q fresh %v err %v, want the cached %q", b, fresh, err, a)
	}
	f.advance(59*time.Minute + time.Second)
	if b := f.mustToken(t); b == a {
		t.Error("the app-only token was not renewed inside its margin")
	}
	if st := f.srv.Stats(); st.ClientCredentialsGrants != 2 || st.RefreshGrants != 0 {
		t.Errorf("stats %+v, want 2 client_credentials grants", st)
	}
	if strings.Contains(f.logs.String(), "app-s3cret-77") {
		t.Errorf("client secret in the logs:\n%s", f.logs.String())
	}
}

func TestClientCredentialsWithAWrongSecretIsPermanent(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantClientCredentials)
	f.cache.entries[f.key].app.ClientSecret = "wrong-secret-31"
	_, _, err := f.token(t)
	var te *TokenError
	if !errors.As(err, &te) || !te.Perm {
		t.Fatalf("wrong client secret: %v, want a permanent TokenError", err)
	}
	f.expectObserved(t, "rejected+")
	if !strings.Contains(f.logs.String(), "level=ERROR msg=\"oauth2 token request refused: check the provider's client_id") ||
		strings.Contains(f.logs.String(), "wrong-secret-31") {
		t.Errorf("want one error line without the secret:\n%s", f.logs.String())
	}
}
