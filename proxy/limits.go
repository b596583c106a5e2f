package proxy

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

// maxLimiterKeys bounds the memory of one failure table: beyond it, the
// entries idle longest are dropped first (an attacker who cycles through
// addresses or names only makes the table forget, not grow).
const maxLimiterKeys = 100_000

// failureTable counts failed logins per key in token buckets: each key may
// fail burst times, and regains one try every window/burst.
type failureTable struct {
	burst int
	every rate.Limit
	idle  time.Duration // after this long untouched, a bucket is full again

	mu        sync.Mutex
	m         map[string]*failureEntry
	lastPrune time.Time
}

type failureEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newFailureTable(burst int, window time.Duration) *failureTable {
	if burst <= 0 {
		return nil
	}
	return &failureTable{
		burst: burst,
		every: rate.Limit(float64(burst) / window.Seconds()),
		idle:  window,
		m:     make(map[string]*failureEntry),
	}
}

// blocked reports whether key has no tries left.
func (t *failureTable) blocked(key string, now time.Time) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[key]
	return e != nil && e.lim.TokensAt(now) < 1
}

// fail takes one try from key.
func (t *failureTable) fail(key string, now time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(now)
	e := t.m[key]
	if e == nil {
		e = &failureEntry{lim: rate.NewLimiter(t.every, t.burst)}
		t.m[key] = e
	}
	e.last = now
	e.lim.AllowN(now, 1)
}

// prune drops entries whose buckets are full again, at most once a
// second, and the oldest entries when the table is too large.
func (t *failureTable) prune(now time.Time) {
	if len(t.m) < maxLimiterKeys && now.Sub(t.lastPrune) < time.Second {
		return
	}
	t.lastPrune = now
	for k, e := range t.m {
		if now.Sub(e.last) >= t.idle {
			delete(t.m, k)
		}
	}
	for k := range t.m {
		if len(t.m) < maxLimiterKeys {
			break
		}
		delete(t.m, k) // map order: arbitrary victims
	}
}

// rateLimited wraps a Backend with per-address and per-user limits on
// failed logins. A client over a limit is answered ErrRateLimited without
// its password being tried upstream. A user name is not blocked for an
// address it logged in from successfully within the window, so that
// someone guessing a user's password does not lock that user out of the
// devices that know it.
type rateLimited struct {
	next   pop3front.Backend
	byIP   *failureTable
	byUser *failureTable
	known  *failureTable // user+address pairs that logged in: burst 1, used as a set
	log    *slog.Logger
	now    func() time.Time
}

func newRateLimited(next pop3front.Backend, l config.LimitsConfig, log *slog.Logger) pop3front.Backend {
	ip := newFailureTable(*l.AuthFailuresPerIP, l.AuthFailureWindow)
	user := newFailureTable(*l.AuthFailuresPerUser, l.AuthFailureWindow)
	if ip == nil && user == nil {
		return next
	}
	return &rateLimited{
		next:   next,
		byIP:   ip,
		byUser: user,
		known:  newFailureTable(1, l.AuthFailureWindow),
		log:    log,
		now:    time.Now,
	}
}

func (r *rateLimited) Login(ctx context.Context, user, pass string, info pop3front.ConnInfo) (pop3front.Session, error) {
	now := r.now()
	ip := pop3front.AddrIP(info.RemoteAddr)
	ipKey := ""
	if ip.IsValid() {
		ipKey = ip.String()
	}
	userKey := strings.ToLower(user)
	pairKey := userKey + "\x00" + ipKey
	if r.byIP.blocked(ipKey, now) {
		r.log.Warn("login refused: too many failed logins from this address", "user", user, "remote", ipKey)
		return nil, pop3front.ErrRateLimited
	}
	if r.byUser.blocked(userKey, now) && !r.known.blocked(pairKey, now) {
		r.log.Warn("login refused: too many failed logins for this user", "user", user, "remote", ipKey)
		return nil, pop3front.ErrRateLimited
	}
	s, err := r.next.Login(ctx, user, pass, info)
	switch {
	case err == nil:
		// "blocked" in the known table means: seen within the window.
		r.known.fail(pairKey, now)
	case errors.Is(err, pop3front.ErrAuthFailed):
		r.byIP.fail(ipKey, now)
		r.byUser.fail(userKey, now)
	}
	return s, err
}
