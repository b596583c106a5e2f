// Package oauth2 gets and keeps the upstream access tokens of local
// OAuth2 accounts: the token cache, the token stores and the operator's
// `popbridge oauth` login flows.
package oauth2

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/popbridge/popbridge/proxy/config"
)

// The token cache hands out upstream access tokens for OAuth2 accounts.
//
// Per account (delegated grants) or per provider (client_credentials) it
// keeps the current access token until shortly before it expires, then
// gets a new one from the token endpoint with x/oauth2. Only one request
// per entry runs at a time: logins that need a token meanwhile wait for
// its result (each as long as its own ctx allows). The request itself is
// not bound to the login that started it, so that a client hanging up
// cannot cut a refresh whose rotated refresh token the endpoint has
// already issued: it would be lost, and the old one is invalid.
//
// Refresh tokens live in the token store. The store is read before every
// refresh, so a token that `popbridge oauth login` wrote while the daemon
// runs is used from the next refresh on, without a restart. A rotated
// refresh token is saved; if that fails (a read-only Secret mount), it is
// kept in memory and used until the store gets a different one.

// Timeouts of token requests.
const (
	// tokenRequestTimeout bounds one HTTP request to a token endpoint.
	tokenRequestTimeout = 30 * time.Second
	// tokenFlightTimeout bounds one refresh: x/oauth2 may try a second
	// request while it detects how the endpoint wants the client
	// credentials.
	tokenFlightTimeout = 2*tokenRequestTimeout + 5*time.Second
	// maxExpiryMargin is how long before its expiry an access token is
	// replaced at the latest; shorter-lived tokens are replaced after 90%
	// of their lifetime.
	maxExpiryMargin = time.Minute
	// tokenLogEvery rate-limits the repeated error lines of one entry.
	tokenLogEvery = 5 * time.Minute
)

// Results of attempts to get a new access token, for metrics
// (TokenObserver).
const (
	RefreshOK       = "ok"       // a new access token
	RefreshRotated  = "rotated"  // a new access token and a new refresh token
	RefreshRevoked  = "revoked"  // the refresh token was refused (invalid_grant), now or before
	RefreshMissing  = "missing"  // no refresh token stored: never authorised
	RefreshRejected = "rejected" // the client or the request was refused (configuration)
	RefreshFailed   = "failed"   // endpoint unreachable, timeout, 5xx
)

// Grants as logs name them.
const (
	grantAppOnly = "client_credentials"
	grantRefresh = "refresh_token"
)

// TokenObserver receives the outcome of each attempt to get a new access
// token, for metrics. Its method is called from the refresh goroutine and
// must return quickly.
type TokenObserver interface {
	// TokenRequest reports one attempt for provider: result is one of
	// RefreshOK, RefreshRotated, RefreshRevoked, RefreshMissing,
	// RefreshRejected, RefreshFailed. d is the duration of the request
	// to the token endpoint, or 0 if none was made because the answer was
	// known (no refresh token stored, or one refused before): such
	// attempts are reported too, so that a count of failures keeps
	// growing while devices keep trying.
	TokenRequest(provider, result string, d time.Duration)
}

// TokenError is why no access token could be had. Its text is safe to log:
// it never holds a token, a secret or a response body.
type TokenError struct {
	// Perm: an operator must act (authorise again, fix the client); a
	// retry will not help.
	Perm bool
	text string
	err  error // the cause, for errors.Is (context errors); may be nil
}

func (e *TokenError) Error() string { return e.text }
func (e *TokenError) Unwrap() error { return e.err }

// TokenCache is the access tokens of one Proxy's accounts.
type TokenCache struct {
	store  Store // nil if no provider needs refresh tokens
	client *http.Client
	log    *slog.Logger
	obs    TokenObserver
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*tokenEntry
}

// tokenEntry is one account's (or one app-only provider's) token state.
// All fields after the configuration are guarded by TokenCache.mu.
type tokenEntry struct {
	key      string // the entries key
	account  string // the store key and the name in logs; "" for app-only
	provider string
	conf     *oauth2.Config            // delegated grants: refresh
	app      *clientcredentials.Config // client_credentials
	secret   string                    // the client secret, to redact from error texts

	access *oauth2.Token // nil: none cached
	margin time.Duration // access is replaced this long before its expiry
	flight *tokenFlight  // the request under way, if any

	// refusedAT is the access token the upstream last refused: a shared
	// store may still hold it, but it is not taken from there again.
	refusedAT string
	memRT     string // the newest refresh token known, saved or not
	storedRT  string // the store's refresh token when last read or written
	deadRT    string // a refresh token the endpoint refused: never sent again
	// saveWarned: a failed Save was logged; until one succeeds, later
	// failures are logged at debug level only.
	saveWarned bool
	warned     map[string]time.Time
	// The last attempt's result and, while attempts fail, when the
	// first of them did (status.go).
	lastResult   string
	failingSince time.Time
}

// tokenFlight is one request for an access token that several logins may
// wait for.
type tokenFlight struct {
	done chan struct{}
	tok  *oauth2.Token
	err  error
}

// NewTokenCache builds the entries of a checked oauth2 section.
func NewTokenCache(o *config.OAuth2Config, log *slog.Logger, obs TokenObserver) (*TokenCache, error) {
	store, err := OpenStore(o.TokenStore)
	if err != nil {
		return nil, fmt.Errorf("oauth2.token_store: %w", err)
	}
	c := &TokenCache{
		store:   store,
		client:  newTokenHTTPClient(),
		log:     log,
		obs:     obs,
		now:     time.Now,
		entries: make(map[string]*tokenEntry),
	}
	// One x/oauth2 config per provider: it remembers how its endpoint
	// wants the client credentials once it has found out.
	confs := make(map[string]*oauth2.Config)
	apps := make(map[string]*clientcredentials.Config)
	for name, p := range o.Providers {
		if p.Grant == config.GrantClientCredentials {
			apps[name] = p.AppClient()
		} else {
			confs[name] = p.Client()
		}
	}
	for _, a := range o.Accounts {
		p := o.Providers[a.Provider]
		key := tokenKey(a)
		if p.Grant == config.GrantClientCredentials {
			key = appKey(a.Provider)
		}
		if c.entries[key] != nil {
			continue // app-only: one entry per provider
		}
		e := &tokenEntry{key: key, provider: a.Provider, secret: p.ClientSecret, warned: make(map[string]time.Time)}
		if p.Grant == config.GrantClientCredentials {
			e.app = apps[a.Provider]
		} else {
			e.account, e.conf = a.User, confs[a.Provider]
			if store == nil {
				return nil, fmt.Errorf("oauth2.accounts %s: no token store for its refresh token", a.User)
			}
		}
		c.entries[key] = e
	}
	return c, nil
}

// Close closes the token store's connections (a Redis store's); a
// refresh still running then fails. A reload closes the cache it
// replaces once that Proxy has ended.
func (c *TokenCache) Close() error {
	if cl, ok := c.store.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// tokenKey names the cache entry of an account: the account for
// delegated grants, the provider for app-only tokens, which serve every
// mailbox the app may open.
func tokenKey(a config.AccountConfig) string { return a.Provider + "\x00" + a.User }

// appKey is tokenKey for app-only providers.
func appKey(provider string) string { return provider + "\x00" }

// KeyFor returns the entry key of an account.
func (c *TokenCache) KeyFor(a *config.AccountConfig) string {
	if e := c.entries[appKey(a.Provider)]; e != nil {
		return e.key
	}
	return tokenKey(*a)
}

// newTokenHTTPClient is the client for token requests: bounded in time,
// without keep-alive (a request per account and hour needs none, and no
// idle connection outlives a reload), through the environment's proxy.
func newTokenHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	t.ResponseHeaderTimeout = tokenRequestTimeout
	return &http.Client{Transport: t, Timeout: tokenRequestTimeout}
}

// Token returns an access token for the entry key: the cached one while
// it is valid, else a new one. fresh reports that it was obtained for
// this call (or a concurrent one) rather than taken from the cache.
func (c *TokenCache) Token(ctx context.Context, key string) (tok string, fresh bool, err error) {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		c.mu.Unlock()
		return "", false, &TokenError{Perm: true, text: "no OAuth2 account configured"}
	}
	if e.validLocked(c.now()) {
		tok := e.access.AccessToken
		c.mu.Unlock()
		return tok, false, nil
	}
	f := e.flight
	if f == nil {
		f = &tokenFlight{done: make(chan struct{})}
		e.flight = f
		go c.fly(e, f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return "", true, f.err
		}
		return f.tok.AccessToken, true, nil
	case <-ctx.Done():
		return "", false, &TokenError{text: "gave up waiting for an access token: " + ctx.Err().Error(), err: ctx.Err()}
	}
}

// Invalidate drops the cached access token if it is still tok (the
// upstream refused it), so that the next Token call gets a new one. A
// token some other login has replaced meanwhile stays.
func (c *TokenCache) Invalidate(key, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil && e.access != nil && e.access.AccessToken == tok {
		e.access = nil
		e.refusedAT = tok
	}
}

// validLocked reports whether the cached access token may still be used.
func (e *tokenEntry) validLocked(now time.Time) bool {
	if e.access == nil || e.access.AccessToken == "" {
		return false
	}
	// Without expires_in a token is used until the upstream refuses it.
	return e.access.Expiry.IsZero() || now.Before(e.access.Expiry.Add(-e.margin))
}

// expiryMargin is how long before its expiry a token that lives for
// lifetime is replaced.
func expiryMargin(lifetime time.Duration) time.Duration {
	return max(min(maxExpiryMargin, lifetime/10), 0)
}

// Adopt takes over the token state of the cache that a reload replaces,
// before c serves: cached access tokens (no burst of refreshes after
// every SIGHUP) and, above all, a rotated refresh token that the store
// refused and only memory holds. Only entries whose account, provider,
// token endpoint and client are unchanged are taken.
func (c *TokenCache) Adopt(old *TokenCache) {
	if c == nil || old == nil {
		return
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, ne := range c.entries {
		oe := old.entries[key]
		if oe == nil || oe.endpoint() != ne.endpoint() {
			continue
		}
		ne.access, ne.margin = oe.access, oe.margin
		ne.memRT, ne.storedRT, ne.deadRT, ne.saveWarned = oe.memRT, oe.storedRT, oe.deadRT, oe.saveWarned
		ne.lastResult, ne.failingSince = oe.lastResult, oe.failingSince
	}
}

// endpoint identifies where and as whom the entry gets its tokens.
func (e *tokenEntry) endpoint() string {
	if e.app != nil {
		return "app\x00" + e.app.TokenURL + "\x00" + e.app.ClientID + "\x00" + e.app.ClientSecret + "\x00" + strings.Join(e.app.Scopes, " ")
	}
	return "user\x00" + e.conf.Endpoint.TokenURL + "\x00" + e.conf.ClientID + "\x00" + e.conf.ClientSecret + "\x00" + strings.Join(e.conf.Scopes, " ")
}
