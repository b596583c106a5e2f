package imapback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Observer receives the timing and outcome of upstream work, for metrics.
// Its methods are called concurrently from session goroutines and must
// return quickly. Set it in Options.Observer; nil observes nothing.
type Observer interface {
	// Connected reports one connection attempt: dial, TLS and greeting.
	Connected(d time.Duration, err error)
	// CommandDone reports one upstream command by its IMAP name (LOGIN,
	// AUTHENTICATE, SELECT, UID FETCH, UID STORE, UID EXPUNGE, UID MOVE,
	// UID COPY, LIST, NOOP, LOGOUT). err is nil on OK; ConnectionError tells a broken
	// connection from a NO or BAD answer.
	CommandDone(name string, d time.Duration, err error)
	// SnapshotCache reports, for each login of a Backend with a snapshot
	// cache, what its snapshot took from the cache, and the bytes the
	// whole cache (shared by Backends) takes once the login stored its
	// own snapshot.
	SnapshotCache(outcome CacheOutcome, cacheBytes int64)
}

// ConnectionError reports whether err, from a failed upstream command,
// means that the connection broke (timeout, reset, closed) rather than
// that the server answered NO or BAD.
func ConnectionError(err error) bool {
	var ie *imap.Error
	return err != nil && !errors.As(err, &ie)
}

// observe reports a command that started at start.
func (s *Session) observe(name string, start time.Time, err error) {
	if o := s.b.opts.Observer; o != nil {
		o.CommandDone(name, time.Since(start), err)
	}
}

// Probe checks that the upstream answers: it connects (TCP, TLS, greeting)
// and logs out, without logging in. ctx bounds the whole exchange.
func (b *Backend) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.DialTimeout+b.opts.CommandTimeout)
	defer cancel()
	s := &Session{b: b}
	if err := s.connect(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer s.c.Close()
	stop := context.AfterFunc(ctx, func() { s.nc.Close() })
	defer stop()
	start := time.Now()
	err := s.c.Logout().Wait()
	s.observe("LOGOUT", start, err)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: LOGOUT: %v", ErrUnavailable, err)
	}
	return ctx.Err()
}
