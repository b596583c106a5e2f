// Package state holds what popbridge's sessions share with each other:
// failed-login reservations, connection counts per address, maildrop
// locks and retention's stamps, kept in process (Memory) or, for replicas
// that must share them, in Redis or Valkey (Redis).
//
// Every operation that can refuse answers (…, ok bool, err error) by one
// rule: ok says whether the caller may go on; err, when not nil, says the
// store could not be asked (it wraps ErrUnavailable), and ok then follows
// the feature's fail mode (Config.OnFailure): limits fail open by default,
// so a store outage lets logins through with an error to log and count,
// and locks fail closed, so it refuses sessions instead of letting two
// into one maildrop. ok false with a nil err is a plain refusal: over the
// limit, or the lock held elsewhere. No operation blocks past the
// configured command timeout.
package state

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrUnavailable wraps every error of a store that could not be asked:
// unreachable, timed out, refusing the password.
var ErrUnavailable = errors.New("shared state store unavailable")

// Limiter keeps the failed-login limits. A limit of N per window means at
// most N password checks per key in any span of that length, however many
// logins arrive at once and on however many replicas: an attempt is
// reserved before the password is tried and counts while in flight.
type Limiter interface {
	// Reserve takes one of key's limit attempts per window, or refuses
	// when limit attempts in flight or failed within the last window hold
	// them all. The caller tries the password only when ok, and then calls
	// release (only the first call counts): release(false) after a
	// success gives the attempt back, release(true) after a failure keeps
	// it counted for a window from then on. An attempt still in flight a
	// window after its reservation stops counting, so that a caller that
	// never releases cannot hold a key forever. release is not nil
	// whenever ok; it never blocks past the command timeout and may be
	// called after ctx has ended. A key must always be used with the same
	// limit and window (a millisecond or more); a limit below 1 is no
	// limit (ok, with a release that does nothing).
	Reserve(ctx context.Context, key string, limit int, window time.Duration) (release func(failed bool), ok bool, err error)

	// Remember notes key for ttl, e.g. a user and an address that logged
	// in, so that a limit on the user need not lock out devices that know
	// the password. Remembered reports whether key is noted; on a store
	// error it reports false with the error.
	Remember(ctx context.Context, key string, ttl time.Duration) error
	Remembered(ctx context.Context, key string) (bool, error)
}

// Counter counts connections per key (a client address) against a limit.
// In Redis a replica's slots are leases that it renews while the
// connections live, so the slots of a replica that crashed are free again
// within Config.LeaseTTL.
type Counter interface {
	// Acquire takes one of key's limit slots, or refuses when all are
	// taken. release, not nil whenever ok, gives the slot back; it may be
	// called more than once and never blocks past the command timeout.
	// A limit below 1 is no limit.
	Acquire(ctx context.Context, key string, limit int) (release func(), ok bool, err error)
}

// Locker hands out exclusive leases on keys (a maildrop, for
// limits.lock_session).
type Locker interface {
	// Lock takes the lease on key, or refuses (ok false, err nil) while
	// another session holds it. In Redis the lease lasts Config.LeaseTTL
	// and is renewed while held, so a crashed replica's leases expire
	// within that time. lease is not nil whenever ok.
	Lock(ctx context.Context, key string) (lease *Lease, ok bool, err error)
}

// Store is the whole of the shared state. Close ends the renewals and
// gives up the leases still held.
type Store interface {
	Limiter
	Counter
	Locker
	Stamper
	Close() error
}

// Lease is a held lock.
type Lease struct {
	lost    chan struct{}
	release func()
	once    sync.Once
}

func newLease(release func()) *Lease {
	return &Lease{lost: make(chan struct{}), release: release}
}

// Lost is closed when the lease can no longer be vouched for: the store
// says another session holds the key, or renewals have failed for so long
// that the key may have expired before the next one. It is closed ahead of
// the expiry, so that a session that stops on it (and changes nothing
// upstream) is not overlapped by the next holder. An in-process lease is
// never lost.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up. Only the first call acts; it never blocks
// past the command timeout.
func (l *Lease) Release() { l.once.Do(l.release) }

// Open returns the store that cfg describes: Redis when cfg.Address is
// set, Memory otherwise.
func Open(cfg Config, opts Options) (Store, error) {
	if cfg.Address == "" {
		return NewMemory(), nil
	}
	return NewRedis(cfg, opts)
}

// Options carries what is not configuration: hooks for observers.
type Options struct {
	// OnError, when set, is told of store errors that no caller sees:
	// failed renewals and releases. feature is one of "logins",
	// "connections", "locks". It must not block.
	OnError func(feature string, err error)
}
