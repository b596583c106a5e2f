package oauth2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/proxy/state"
)

// The requests to the token endpoint behind the token cache: one flight
// per entry, run in its own goroutine (fly), and what their failures tell
// the logs and the metrics.

// fly runs one flight and hands its result to every waiting login.
func (c *TokenCache) fly(e *tokenEntry, f *tokenFlight) {
	ctx, cancel := context.WithTimeout(context.Background(), tokenFlightTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.client)
	start := c.now()
	var tok *oauth2.Token
	var err error
	if e.app != nil {
		tok, err = c.appToken(ctx, e)
	} else {
		tok, err = c.refresh(ctx, e)
	}
	c.mu.Lock()
	if err == nil {
		e.access = tok
		e.margin = 0
		if !tok.Expiry.IsZero() {
			e.margin = expiryMargin(tok.Expiry.Sub(start))
		}
	}
	e.flight = nil
	c.mu.Unlock()
	f.tok, f.err = tok, err
	close(f.done)
}

// appToken gets an app-only token with the client_credentials grant.
func (c *TokenCache) appToken(ctx context.Context, e *tokenEntry) (*oauth2.Token, error) {
	start := c.now()
	tok, err := e.app.Token(ctx)
	if err != nil {
		return nil, c.requestFailed(e, grantAppOnly, start, err, "")
	}
	c.observe(e, RefreshOK, start)
	c.log.Debug("oauth2 app-only access token obtained", "provider", e.provider, "expires", tok.Expiry)
	return tok, nil
}

// refresh gets an access token for a delegated account from its refresh
// token, reading the store first.
//
// With a shared store (Redis) the whole of it runs under the account's
// lock there: a replica that waited for it finds the token that the
// holder saved and uses it without a request of its own. Without the
// store, or without the lock, there is no refresh: a refresh token held
// in memory may be one that another replica has already spent.
func (c *TokenCache) refresh(ctx context.Context, e *tokenEntry) (*oauth2.Token, error) {
	shared, _ := c.store.(sharedStore)
	if shared != nil {
		unlock, err := shared.lockRefresh(ctx, e.account)
		if err != nil {
			return nil, c.storeUnavailable(e, err)
		}
		defer unlock()
	}
	stored, loadErr := c.store.Load(e.account)
	now := c.now()
	if shared != nil && errors.Is(loadErr, state.ErrUnavailable) {
		return nil, c.storeUnavailable(e, loadErr)
	}

	c.mu.Lock()
	switch {
	case loadErr == nil && stored.RefreshToken != "" && (stored.RefreshToken != e.storedRT || shared != nil):
		// New in the store since we last looked: the first use, an
		// `oauth login`, or another process's rotation. It wins over
		// what we hold. A shared store may also hold a newer access
		// token under the same refresh token: another replica's.
		if stored.RefreshToken != e.storedRT {
			e.storedRT, e.memRT = stored.RefreshToken, stored.RefreshToken
		}
		if stored.AccessToken != "" && stored.AccessToken != e.refusedAT && !stored.Expiry.IsZero() &&
			now.Before(stored.Expiry.Add(-expiryMargin(stored.Expiry.Sub(now)))) {
			c.mu.Unlock()
			c.log.Debug("oauth2 access token taken from the token store", "account", e.account, "expires", stored.Expiry)
			return stored, nil
		}
	case loadErr != nil && e.memRT != "":
		// Keep serving with the token we hold; say so once in a while.
		c.mu.Unlock()
		msg := "oauth2 token store unreadable; using the refresh token held in memory"
		if errors.Is(loadErr, errNoToken) {
			msg = "oauth2 token store has lost the account's token; using the refresh token held in memory"
		}
		c.warn(e, "load", slog.LevelWarn, msg, "account", e.account, "err", loadErr)
		c.mu.Lock()
	}
	rt, dead := e.memRT, e.deadRT
	c.mu.Unlock()

	switch {
	case loadErr != nil && rt == "" && !errors.Is(loadErr, errNoToken):
		c.warn(e, "perm", slog.LevelError, "oauth2 token store unreadable: logins of this account fail until it can be read",
			"account", e.account, "err", loadErr)
		return nil, &TokenError{Perm: true, text: "token store unreadable: " + loadErr.Error()}
	case rt == "":
		c.observe(e, RefreshMissing, time.Time{})
		c.needLogin(e, "no refresh token stored")
		return nil, &TokenError{Perm: true, text: "account not authorised: no refresh token stored"}
	case rt == dead:
		// Refused before and nothing new in the store: asking again
		// would only load the endpoint.
		c.observe(e, RefreshRevoked, time.Time{})
		c.needLogin(e, "refresh token revoked or expired")
		return nil, &TokenError{Perm: true, text: "account not authorised: refresh token revoked or expired"}
	}

	start := c.now()
	tok, err := e.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		return nil, c.requestFailed(e, grantRefresh, start, err, rt)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == rt {
		c.observe(e, RefreshOK, start)
		c.log.Debug("oauth2 access token refreshed", "account", e.account, "expires", tok.Expiry)
		if shared != nil {
			// For the other replicas; they can refresh themselves if
			// this fails, so it is no reason to fail the login.
			saved := *tok
			saved.RefreshToken = rt
			if err := c.store.Save(e.account, &saved); err != nil {
				c.warn(e, "share", slog.LevelWarn, "oauth2 access token not shared: the token store refused it",
					"account", e.account, "err", err)
			}
		}
		return tok, nil
	}
	c.observe(e, RefreshRotated, start)
	c.mu.Lock()
	// A refresh that raced with nothing: only this flight writes these.
	e.memRT = tok.RefreshToken
	c.mu.Unlock()
	if err := c.store.Save(e.account, tok); err != nil {
		level := slog.LevelWarn
		c.mu.Lock()
		if e.saveWarned {
			level = slog.LevelDebug // once is enough: it will not fix itself
		}
		e.saveWarned = true
		c.mu.Unlock()
		c.log.Log(context.Background(), level, "oauth2 refresh token rotated but the token store refused it: "+
			"keeping it in memory only (it is lost at a restart; then run popbridge oauth login "+e.account+")",
			"account", e.account, "err", err)
	} else {
		c.mu.Lock()
		e.storedRT = tok.RefreshToken
		e.saveWarned = false
		c.mu.Unlock()
		c.log.Info("oauth2 refresh token rotated and saved", "account", e.account)
	}
	return tok, nil
}

// storeUnavailable logs that a shared store could not be asked and
// returns the temporary TokenError for the logins.
func (c *TokenCache) storeUnavailable(e *tokenEntry, err error) error {
	c.warn(e, "store", slog.LevelWarn, "oauth2 token store unavailable: no refresh until it answers",
		"account", e.account, "err", err)
	return &TokenError{text: "token store unavailable: " + err.Error(), err: err}
}

// requestFailed classifies a failed token request, logs it and returns
// the TokenError for the logins. secrets are redacted from the texts
// that come from the endpoint.
func (c *TokenCache) requestFailed(e *tokenEntry, grant string, start time.Time, err error, rt string) error {
	secrets := []string{rt, e.secret}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// Transport: refused, reset, timeout, DNS; or an unparsable
		// answer. None of these texts carries a response body.
		c.observe(e, RefreshFailed, start)
		text := redact(err.Error(), secrets)
		c.warn(e, "temp", slog.LevelWarn, "oauth2 token endpoint unreachable", "account", e.account,
			"provider", e.provider, "grant", grant, "err", text)
		return &TokenError{text: "token endpoint unreachable: " + text, err: err}
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	// Only the RFC 6749 fields: the body may hold anything.
	detail := fmt.Sprintf("HTTP %d", status)
	if re.ErrorCode != "" {
		detail += " " + redact(re.ErrorCode, secrets)
	}
	if re.ErrorDescription != "" {
		detail += ": " + clip(redact(re.ErrorDescription, secrets), 200)
	}
	switch {
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout ||
		re.ErrorCode == "temporarily_unavailable" || re.ErrorCode == "server_error":
		c.observe(e, RefreshFailed, start)
		c.warn(e, "temp", slog.LevelWarn, "oauth2 token endpoint failed", "account", e.account,
			"provider", e.provider, "grant", grant, "err", detail)
		return &TokenError{text: "token endpoint failed: " + detail}
	case re.ErrorCode == "invalid_grant" && grant == grantRefresh:
		c.observe(e, RefreshRevoked, start)
		c.mu.Lock()
		e.deadRT = rt
		c.mu.Unlock()
		c.needLogin(e, "refresh token refused: "+detail)
		return &TokenError{Perm: true, text: "account not authorised: refresh token refused: " + detail}
	}
	c.observe(e, RefreshRejected, start)
	what := "check the provider's client_id, client_secret_file, scopes and the app's permissions"
	c.warn(e, "perm", slog.LevelError, "oauth2 token request refused: "+what, "account", e.account,
		"provider", e.provider, "grant", grant, "err", detail)
	return &TokenError{Perm: true, text: "token request refused: " + detail}
}

// needLogin logs, at most every tokenLogEvery per account, that an
// operator must authorise the account again.
func (c *TokenCache) needLogin(e *tokenEntry, why string) {
	c.warn(e, "perm", slog.LevelError, "oauth2 account needs authorising: run popbridge oauth login "+e.account,
		"account", e.account, "provider", e.provider, "reason", why)
}

// warn logs msg at level, or at debug if a line of the same kind was
// logged for e within tokenLogEvery: a device that retries every minute
// must not flood the log.
func (c *TokenCache) warn(e *tokenEntry, kind string, level slog.Level, msg string, args ...any) {
	now := c.now()
	c.mu.Lock()
	last, ok := e.warned[kind]
	if !ok || now.Sub(last) >= tokenLogEvery {
		e.warned[kind] = now
	} else {
		level = slog.LevelDebug
	}
	c.mu.Unlock()
	if e.account == "" {
		args = append([]any(nil), args...)
		for i := 0; i+1 < len(args); i += 2 {
			if args[i] == "account" {
				args[i+1] = "(app-only)"
			}
		}
	}
	c.log.Log(context.Background(), level, msg, args...)
}

// observe reports an attempt whose request started at start, or which
// made none (zero start).
func (c *TokenCache) observe(e *tokenEntry, result string, start time.Time) {
	c.noteResult(e, result)
	if c.obs == nil {
		return
	}
	var d time.Duration
	if !start.IsZero() {
		d = max(c.now().Sub(start), time.Nanosecond)
	}
	c.obs.TokenRequest(e.provider, result, d)
}

const redacted = "<redacted>"

// redact replaces every non-empty secret in s.
func redact(s string, secrets []string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, redacted)
		}
	}
	return s
}

// clip shortens s to n octets and replaces control characters: endpoint
// texts are not trusted to be short or printable.
func clip(s string, n int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > n {
		b = append(b[:n], "..."...)
	}
	return string(b)
}
