package proxy

// The failed-login limits, per client address and per upstream user, kept
// in the state store (in process, or shared by replicas), and the global
// connection limit's default.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// loginLimits bounds the password checks per client address and per
// upstream user: a limit of N failures per window means at most N
// passwords tried in any window, however many logins arrive at once,
// because an attempt is reserved before its password is tried and counts
// while in flight. A user is not blocked for an address it logged in from
// within the window, so that someone guessing a user's password does not
// lock that user out of the devices that know it.
type loginLimits struct {
	store   state.Limiter
	perIP   int
	perUser int
	window  time.Duration
	errs    storeErrors
}

func newLoginLimits(st state.Limiter, l config.LimitsConfig, errs storeErrors) *loginLimits {
	return &loginLimits{store: st, perIP: *l.AuthFailuresPerIP, perUser: *l.AuthFailuresPerUser,
		window: l.AuthFailureWindow, errs: errs}
}

// reserve takes one attempt from the client address's budget and one
// from the user's, before a password is tried. The user's budget is
// keyed on the upstream and the user the upstream sees, after routes and
// with the device suffix gone, case-folded as IMAP servers commonly fold
// (Dovecot's default auth_username_format is %Lu): every login that
// reaches one maildrop shares it. On success it returns
// done, which the caller must call with the login's outcome; otherwise
// the error to answer: ErrRateLimited over a limit, ErrUnavailable when
// the store cannot be asked and logins fail closed.
func (l *loginLimits) reserve(ctx context.Context, log *slog.Logger, ip netip.Addr, upstream, upUser string) (done func(error), err error) {
	user := upstream + "\x00" + strings.ToLower(upUser)
	ipKey := ""
	if ip.IsValid() {
		ipKey = ip.Unmap().String()
	}
	releaseIP, err := l.take(ctx, "addr:"+ipKey, l.perIP, ipKey != "")
	if err != nil {
		if errors.Is(err, pop3front.ErrRateLimited) {
			log.Warn("login refused: too many failed logins from this address", "upstream", upstream, "upstream_user", upUser)
		}
		return nil, err
	}
	pairKey := "known:" + user + "\x00" + ipKey
	releaseUser, err := l.take(ctx, "user:"+user, l.perUser, true)
	if errors.Is(err, pop3front.ErrRateLimited) {
		known, serr := l.store.Remembered(ctx, pairKey)
		if serr != nil {
			l.errs.failed("logins", serr)
		}
		if known {
			// A device that knows the password, while someone else
			// guesses it: let it in, uncounted against the user.
			releaseUser, err = func(bool) {}, nil
		} else {
			log.Warn("login refused: too many failed logins for this user", "upstream", upstream, "upstream_user", upUser)
		}
	}
	if err != nil {
		releaseIP(false)
		return nil, err
	}
	return func(outcome error) {
		failed := errors.Is(outcome, pop3front.ErrAuthFailed)
		releaseIP(failed)
		releaseUser(failed)
		if outcome == nil {
			if err := l.store.Remember(context.WithoutCancel(ctx), pairKey, l.window); err != nil {
				l.errs.failed("logins", err)
			}
		}
	}, nil
}

// take reserves one attempt of key, or answers why not.
func (l *loginLimits) take(ctx context.Context, key string, limit int, apply bool) (func(failed bool), error) {
	if !apply || limit <= 0 {
		return func(bool) {}, nil
	}
	release, ok, err := l.store.Reserve(ctx, key, limit, l.window)
	if err != nil {
		l.errs.failed("logins", err)
	}
	switch {
	case ok:
		return release, nil
	case err != nil:
		return nil, pop3front.ErrUnavailable // logins fail closed
	}
	return nil, pop3front.ErrRateLimited
}

// fdHeadroom is kept back from the descriptor limit for what is not a
// session: listeners, the metrics server, the state store, log files,
// probes.
const fdHeadroom = 64

// maxConnections is the global connection limit: the configured one
// (-1: none), else derived from the descriptor limit nofile. Each POP3
// session holds two descriptors, its client's and its upstream's, so half
// of what is left after the headroom: past that, accept would fail with
// EMFILE and every client, not only the newest, would be refused.
func maxConnections(configured, nofile int) int {
	switch {
	case configured == config.NoLimit:
		return 0
	case configured > 0:
		return configured
	case nofile <= 0:
		return 0 // unknown or unlimited
	}
	return max((nofile-fdHeadroom)/2, 1)
}
