package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// OAuth2 logins: a device sends USER/PASS with a local password;
// popbridge checks it against the account's hash and logs in upstream
// with an access token from the token cache.

// Answers to the POP3 client when no access token can be had.
var (
	// errNotAuthorised: the account needs `popbridge oauth login` (or a
	// fixed provider config); the device cannot do anything about it.
	errNotAuthorised = &pop3front.Error{Code: "SYS/PERM", Text: "Upstream authorisation missing or revoked; the administrator must renew it"}
	// errTokenUnavailable: the token endpoint cannot be reached now.
	errTokenUnavailable = &pop3front.Error{Code: "SYS/TEMP", Text: "Upstream authorisation temporarily unavailable, try again later"}
)

// oauthLogins logs in the configured OAuth2 accounts.
type oauthLogins struct {
	cfg    *config.OAuth2Config
	tokens *oauth2.TokenCache
	log    *slog.Logger
}

// newOAuthLogins returns nil when no account is configured.
func newOAuthLogins(cfg *config.Config, obs oauth2.TokenObserver, log *slog.Logger) (*oauthLogins, error) {
	if len(cfg.OAuth2.Accounts) == 0 {
		return nil, nil
	}
	tokens, err := oauth2.NewTokenCache(&cfg.OAuth2, log, obs)
	if err != nil {
		return nil, err
	}
	return &oauthLogins{cfg: &cfg.OAuth2, tokens: tokens, log: log}, nil
}

// account returns the OAuth2 account of a login (without its device
// suffix), or nil. It is safe on a nil receiver.
func (o *oauthLogins) account(user string) *config.AccountConfig {
	if o == nil {
		return nil
	}
	a, _ := o.cfg.Account(user)
	return a
}

// target returns the upstream's name and the upstream login of an
// account: what its limits and its lock are keyed on.
func (o *oauthLogins) target(a *config.AccountConfig) (upstream, upUser string) {
	return o.cfg.Providers[a.Provider].Upstream, a.UpstreamUser
}

// login checks the local password and logs in upstream with a token. The
// caller has reserved the attempt against the login limits.
func (o *oauthLogins) login(ctx context.Context, r *router, a *config.AccountConfig, pass string, pol imapback.Policy) (imapback.Maildrop, error) {
	ok, err := oauth2.CheckPassword(ctx, a, pass)
	if err != nil {
		return nil, pop3front.ErrUnavailable
	}
	if !ok {
		// Nothing went upstream or to the token endpoint: a wrong
		// password costs them nothing. The login limits count it.
		o.log.Debug("oauth2 account: wrong local password", "user", a.User)
		return nil, pop3front.ErrAuthFailed
	}
	name, _ := o.target(a)
	b := r.backends[name]
	if b == nil {
		o.log.Error("oauth2 provider's upstream missing", "provider", a.Provider, "upstream", name)
		return nil, pop3front.ErrUnavailable
	}
	key := o.tokens.KeyFor(a)
	var (
		mu    sync.Mutex
		used  string // the last token handed to imapback
		fresh bool
	)
	cr := imapback.Credentials{User: a.UpstreamUser, Token: func(ctx context.Context) (string, error) {
		tok, f, err := o.tokens.Token(ctx, key)
		mu.Lock()
		used, fresh = tok, f
		mu.Unlock()
		return tok, err
	}}
	o.log.Debug("oauth2 login", "user", a.User, "provider", a.Provider, "upstream", name, "upstream_user", a.UpstreamUser)
	s, err := b.Open(ctx, cr, pol)
	mu.Lock()
	tok, wasFresh := used, fresh
	mu.Unlock()
	if errors.Is(err, imapback.ErrAuthFailed) && tok != "" && !wasFresh {
		// A cached token the upstream no longer takes (revoked, or
		// its lifetime shorter than it said): one more try with a new
		// one.
		o.log.Info("upstream refused the cached access token; getting a new one", "user", a.User, "provider", a.Provider)
		o.tokens.Invalidate(key, tok)
		s, err = b.Open(ctx, cr, pol)
	}
	if err != nil {
		return nil, o.loginError(a, err)
	}
	return s, nil
}

// loginError maps the errors of an OAuth2 login to POP3 answers.
func (o *oauthLogins) loginError(a *config.AccountConfig, err error) error {
	var te *oauth2.TokenError
	switch {
	case errors.As(err, &te) && te.Perm:
		return errNotAuthorised // the cache logged why, rate-limited
	case errors.As(err, &te):
		o.log.Debug("oauth2 access token unavailable", "user", a.User, "err", te.Error())
		return errTokenUnavailable
	case errors.Is(err, imapback.ErrToken):
		return errTokenUnavailable
	case errors.Is(err, imapback.ErrAuthFailed):
		o.log.Warn("upstream refused a new access token: check the account's upstream_user, the provider's scopes "+
			"and that IMAP with OAuth2 is allowed for the mailbox", "user", a.User, "provider", a.Provider,
			"upstream_user", a.UpstreamUser, "err", err)
		return pop3front.ErrAuthFailed
	}
	return popError(o.log, err)
}

// adopt hands the OAuth2 token state of the Proxy that a reload replaces
// to o, which is not serving yet (oauth2.TokenCache.Adopt).
func (o *oauthLogins) adopt(old *oauthLogins) {
	if o == nil || old == nil {
		return
	}
	o.tokens.Adopt(old.tokens)
}

// close closes the token cache's store connections once the Proxy has
// ended. It is safe on a nil receiver.
func (o *oauthLogins) close() {
	if o != nil {
		o.tokens.Close()
	}
}
