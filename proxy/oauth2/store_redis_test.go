package oauth2

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/redistest"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// Tests of the token store in Redis: token caches standing for replicas
// share a real redis-server on 127.0.0.1 (internal/redistest) in front of
// a real OAuth2 server that rotates refresh tokens (internal/oauthtest).

// redisState is the state section of the tests: short timeouts, so that
// an unreachable store shows quickly.
const redisState = "state: {address: %s, command_timeout: 300ms, dial_timeout: 300ms, lease_ttl: 3s}\n"

// redisConfig is a checked config with the fixture's account whose token
// store is the redis-server at addr.
func redisConfig(t *testing.T, srv *oauthtest.Server, addr string) *config.Config {
	t.Helper()
	section := oauthtest.ConfigSection(t, srv, string(config.GrantCode), "")
	section = regexp.MustCompile(`token_store: \{file: [^,]+,`).ReplaceAllString(section, "token_store: {type: redis,")
	text := "upstream: {address: 127.0.0.1:143}\n" + strings.Replace(redisState, "%s", addr, 1) + section
	cfg, err := config.ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// replicas are n token caches over one config, as n popbridge processes
// would have, each with its own connections to the store.
func replicas(t *testing.T, cfg *config.Config, n int) []*TokenCache {
	t.Helper()
	var cs []*TokenCache
	for range n {
		log := slog.New(slog.NewTextHandler(io.MultiWriter(testkit.LogWriter{T: t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
		c, err := NewTokenCache(&cfg.OAuth2, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// cacheToken asks c for the fixture account's token, as a login would.
func cacheToken(c *TokenCache, cfg *config.Config) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _ := cfg.OAuth2.Account(oauthtest.FixtureAccount)
	tok, _, err := c.Token(ctx, c.KeyFor(a))
	return tok, err
}

// seededReplicas starts a redis-server and a provider that rotates
// refresh tokens, and returns n replicas over them whose store holds a
// refresh token for the fixture account, as after `oauth login`.
func seededReplicas(t *testing.T, n int) (*redistest.Server, *oauthtest.Server, *config.Config, []*TokenCache, string) {
	t.Helper()
	rds := redistest.Start(t, redistest.Options{})
	srv := oauthtest.Start(t, oauthtest.Options{RotateRefresh: true})
	cfg := redisConfig(t, srv, rds.Addr)
	cs := replicas(t, cfg, n)
	rt := srv.IssueRefreshToken(oauthtest.FixtureMailbox, oauthtest.DefaultClientID)
	if err := cs[0].store.Save(oauthtest.FixtureAccount, &oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	return rds, srv, cfg, cs, rt
}

func TestRedisStoreThreeReplicasRefreshOnceAndShareTheRotatedToken(t *testing.T) {
	_, srv, cfg, cs, rt := seededReplicas(t, 3)
	// A slow endpoint: every replica asks while the first refresh runs.
	srv.SetTokenDelay(300 * time.Millisecond)
	var wg sync.WaitGroup
	toks, errs := make([]string, len(cs)), make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() { toks[i], errs[i] = cacheToken(c, cfg) })
	}
	wg.Wait()
	for i := range cs {
		if errs[i] != nil || !srv.AccessTokenValid(toks[i]) {
			t.Fatalf("replica %d: token valid %v, err %v", i, srv.AccessTokenValid(toks[i]), errs[i])
		}
		if toks[i] != toks[0] {
			t.Errorf("replica %d has an access token of its own", i)
		}
	}
	if n := srv.Stats().RefreshGrants; n != 1 {
		t.Errorf("%d refresh requests reached the provider, want 1", n)
	}
	stored, err := cs[2].store.Load(oauthtest.FixtureAccount)
	if err != nil {
		t.Fatal(err)
	}
	if stored.RefreshToken == rt || !srv.RefreshTokenValid(stored.RefreshToken) || srv.RefreshTokenValid(rt) {
		t.Errorf("the store does not hold the rotated refresh token (rotated %v, valid %v)",
			stored.RefreshToken != rt, srv.RefreshTokenValid(stored.RefreshToken))
	}
	if stored.AccessToken != toks[0] {
		t.Error("the store does not hold the shared access token")
	}
	// Sealed: the server sees neither token.
	raw, err := cs[0].store.(*redisStore).st.Get(context.Background(), tokenValue(oauthtest.FixtureAccount))
	if err != nil || !strings.Contains(string(raw), `"popbridge_token_store":1`) ||
		strings.Contains(string(raw), stored.RefreshToken) || strings.Contains(string(raw), toks[0]) {
		t.Errorf("the value in Redis is not sealed (err %v): %.80s", err, raw)
	}

	// An access token the upstream refuses is replaced by one refresh,
	// which the other replicas then take from the store.
	cs[1].Invalidate(cs[1].KeyFor(&cfg.OAuth2.Accounts[0]), toks[0])
	tok, err := cacheToken(cs[1], cfg)
	if err != nil || tok == toks[0] || !srv.AccessTokenValid(tok) || srv.Stats().RefreshGrants != 2 {
		t.Fatalf("after Invalidate: new %v, valid %v, refreshes %d, err %v", tok != toks[0], srv.AccessTokenValid(tok), srv.Stats().RefreshGrants, err)
	}
	cs[2].Invalidate(cs[2].KeyFor(&cfg.OAuth2.Accounts[0]), toks[0])
	if tok2, err := cacheToken(cs[2], cfg); err != nil || tok2 != tok || srv.Stats().RefreshGrants != 2 {
		t.Errorf("replica 2 did not take replica 1's token from the store (same %v, refreshes %d, err %v)", tok2 == tok, srv.Stats().RefreshGrants, err)
	}
}

// wantTemporary checks that err is a TokenError that a retry may cure,
// which logins answer with -ERR [SYS/TEMP].
func wantTemporary(t *testing.T, err error, took time.Duration) {
	t.Helper()
	var te *TokenError
	if !errors.As(err, &te) || te.Perm {
		t.Fatalf("got %v, want a temporary TokenError", err)
	}
	if took > 3*time.Second {
		t.Errorf("the failure took %v: longer than a few command timeouts", took)
	}
}

func TestRedisStoreUnavailableFailsTemporarilyAndRecovers(t *testing.T) {
	rds, srv, cfg, cs, _ := seededReplicas(t, 2)
	tok, err := cacheToken(cs[0], cfg)
	if err != nil {
		t.Fatal(err)
	}
	key := cs[0].KeyFor(&cfg.OAuth2.Accounts[0])

	// A store that does not answer (stopped with SIGSTOP) is bounded by
	// the command timeout; one that refuses connections fails at once.
	for _, tc := range []struct {
		name       string
		down, back func()
	}{{"paused", rds.Pause, rds.Resume}, {"stopped", rds.Stop, rds.Restart}} {
		tc.down()
		cs[0].Invalidate(key, tok)
		start := time.Now()
		_, err := cacheToken(cs[0], cfg)
		wantTemporary(t, err, time.Since(start))
		if n := srv.Stats().RefreshGrants; n != 1 {
			t.Fatalf("%s store: %d refresh requests, want none without the lock", tc.name, n-1)
		}
		tc.back()
	}

	// The restarted server keeps nothing (no persistence): the replica
	// refreshes with the rotated token it holds and saves the next one.
	tok, err = cacheToken(cs[0], cfg)
	if err != nil || !srv.AccessTokenValid(tok) {
		t.Fatalf("after the restart: valid %v, err %v", srv.AccessTokenValid(tok), err)
	}
	stored, err := cs[1].store.Load(oauthtest.FixtureAccount)
	if err != nil || !srv.RefreshTokenValid(stored.RefreshToken) {
		t.Fatalf("after the restart the store has no valid refresh token (err %v)", err)
	}
	if tok2, err := cacheToken(cs[1], cfg); err != nil || tok2 != tok {
		t.Errorf("the other replica did not take the token from the store (same %v, err %v)", tok2 == tok, err)
	}
}

func TestOAuthLoginWritesToTheRedisStore(t *testing.T) {
	rds := redistest.Start(t, redistest.Options{})
	s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second, RotateRefresh: true})
	section := oauthtest.ExpandSection(t, `
  token_store: {type: redis, key_file: KEY}
  providers:
    idp: {preset: generic, client_id: `+oauthtest.DefaultClientID+`, token_url: "`+s.URL+`/token", device_auth_url: "`+s.URL+`/device",
          scopes: [imap, offline_access], upstream: default, grant: device}
  accounts:
    - {user: scanner, password_hash: "HASH", provider: idp, upstream_user: `+loginUser+`}
`)
	cfg, err := config.ParseConfig([]byte("upstream: {address: 127.0.0.1:143}\n" +
		strings.Replace(redisState, "%s", rds.Addr, 1) + "oauth2:\n" + section))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	l := startLogin(context.Background(), cfg, LoginOptions{Timeout: time.Minute})
	if err := s.ApproveDevice(l.await(t, userCodeRE), loginUser); err != nil {
		t.Fatal(err)
	}
	if err := l.result(t); err != nil {
		t.Fatalf("login: %v\n%s", err, l.out.String())
	}
	out := l.out.String()
	if want := "saved in the Redis token store (redis " + rds.Addr + " key popbridge:value:oauth2:token:scanner)"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	tok := storedToken(t, s, cfg)
	noSecrets(t, out, tok.AccessToken, tok.RefreshToken)

	// A replica logs in with it without a request of its own.
	c := replicas(t, cfg, 1)[0]
	before := s.Stats().RefreshGrants
	if at, err := cacheToken(c, cfg); err != nil || at != tok.AccessToken || s.Stats().RefreshGrants != before {
		t.Errorf("the replica did not use the stored token (same %v, err %v)", at == tok.AccessToken, err)
	}

	// With the store away, login refuses before anyone signs in.
	rds.Stop()
	err = Login(context.Background(), cfg, "scanner", LoginOptions{Timeout: time.Minute, Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "cannot read the Redis token store") {
		t.Errorf("login with the store stopped: %v", err)
	}
}
