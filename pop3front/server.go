// server.go holds the Server: its settings, listeners, connection limits
// and life cycle.

package pop3front

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Defaults for the zero values of Server's fields.
const (
	DefaultIdleTimeout    = 10 * time.Minute // RFC 1939 section 3: at least 10 minutes
	DefaultWriteTimeout   = 2 * time.Minute
	DefaultCommandTimeout = 2 * time.Minute
	DefaultImplementation = "popbridge"
	// DefaultHandshakeTimeout bounds what happens before the greeting: a
	// PROXY protocol header and an implicit TLS handshake. STLS's
	// handshake has the same bound.
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultAuthTimeout bounds the AUTHORIZATION state. A real client
	// logs in within seconds of the greeting; only a client that holds
	// connections open to exhaust the server takes longer, and
	// IdleTimeout's 10 minutes, which RFC 1939 requires, would let it hold
	// each one ten times as long. nginx's mail proxy allows the same
	// minute before it proxies (its timeout directive); Dovecot's login
	// process allows three.
	DefaultAuthTimeout = time.Minute
)

// maxRefusing bounds the connections over MaxConnections that are being
// answered "too many connections" at once; beyond it, new connections are
// closed without an answer (an answer may need a TLS handshake).
const maxRefusing = 64

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pop3front: server closed")

var errTooManyConns = errors.New("pop3front: too many connections")

// Server accepts POP3 connections and serves each in its own goroutine.
// Set the fields before calling Serve and do not change them afterwards.
type Server struct {
	// Backend opens maildrops. Required.
	Backend Backend
	// Logger receives connection and error logs. Default: slog.Default().
	Logger *slog.Logger

	// IdleTimeout is how long the server waits for the next command line,
	// RFC 1939's autologout timer.
	IdleTimeout time.Duration
	// WriteTimeout is how long the client may take for 16 KiB of what is
	// written to it, so that a client that stops reading in the middle of
	// a RETR releases the session (after at most twice WriteTimeout) and
	// one on a slow link that keeps reading does not.
	WriteTimeout time.Duration
	// CommandTimeout bounds the backend work of login, NOOP and the
	// UPDATE state. A message transfer has no overall bound (a large
	// message to a slow client takes its time): WriteTimeout bounds the
	// client's progress, and the backend each of its upstream reads.
	CommandTimeout time.Duration
	// AuthFailureDelay is the pause before answering a failed login, which
	// slows down password guessing.
	AuthFailureDelay time.Duration
	// MaxConnections limits concurrent connections; 0 means no limit.
	MaxConnections int
	// MaxConnectionsPerIP limits concurrent connections from one client
	// address (the real one behind a PROXY protocol header); 0 means no
	// limit. An IPv6 client counts by its address, not by its prefix. A
	// connection's place is free again before the client reads the last
	// answer (QUIT's, or the -ERR before a close), so a client that
	// reconnects at once is not refused. No limit is the zero value here
	// because what is right depends on what is in front (one NAT address
	// for a whole office, or a load balancer without PROXY headers):
	// whoever configures the server chooses the default.
	MaxConnectionsPerIP int
	// ConnectionSlot, when set, replaces MaxConnectionsPerIP's count
	// with the caller's own (one shared by several servers or
	// processes): it takes one of ip's connection slots, or refuses the
	// connection (ok false). release, not nil when ok, is called once,
	// before the client sees the connection end. It is called in the
	// connection's goroutine and must return within a bounded time.
	ConnectionSlot func(ctx context.Context, ip netip.Addr) (release func(), ok bool)
	// AuthTimeout bounds the whole AUTHORIZATION state, from the greeting
	// to a successful login, however active the client is meanwhile; the
	// connection is then answered -ERR and closed. Default
	// DefaultAuthTimeout.
	AuthTimeout time.Duration
	// HandshakeTimeout bounds reading a PROXY protocol header and the TLS
	// handshake, implicit or after STLS. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// TLSConfig, when set, offers STLS (RFC 2595) on connections that are
	// not already TLS. For implicit TLS (POP3S, RFC 8314), serve a
	// listener from tls.NewListener instead: the handshake then runs in
	// the connection's goroutine, bounded by HandshakeTimeout.
	TLSConfig *tls.Config
	// PlaintextAllowed decides whether USER/PASS and AUTH PLAIN may be
	// used on a connection without TLS (info.TLS is false); on TLS they
	// always may. When it returns false, both are answered
	// ErrPlaintextRefused and CAPA lists neither USER nor SASL. Nil allows
	// plaintext authentication everywhere.
	PlaintextAllowed func(info ConnInfo) bool
	// Implementation is the text of the IMPLEMENTATION capability.
	Implementation string
	// Expire is the EXPIRE capability before login; the zero value lists
	// none.
	Expire Expire
	// Observer receives connection, login and command events, for
	// metrics. Nil observes nothing.
	Observer Observer

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	admitted  int                // conns within MaxConnections, until they give their place back
	refusing  int                // conns being refused (overLimit), until they end
	perIP     map[netip.Addr]int // admitted conns by client address
	closed    bool
	wg        sync.WaitGroup
}

// Serve accepts connections on ln until Shutdown or Close is called. It
// always returns a non-nil error; after Shutdown or Close, ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	return s.ServeSTLS(ln, s.TLSConfig)
}

// ServeSTLS is Serve with STLS offered with config (nil: not offered) on
// ln's connections, whatever TLSConfig says: one Server, with one set of
// limits, can serve listeners with different TLS settings.
func (s *Server) ServeSTLS(ln net.Listener, config *tls.Config) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)

	for {
		nc, err := Accept(ln, s.logger(), nil)
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			return err
		}
		c := newConn(s, nc)
		c.stls = config
		c.listener = ln.Addr().String()
		if err := s.addConn(c); err != nil {
			// Accepted while Shutdown or Close ran (they did not see this
			// connection, so it must not be served), or far over the
			// limit: close without a word.
			c.raw.Close()
			c.stop()
			if err == ErrServerClosed {
				return ErrServerClosed
			}
			s.logger().Warn("connection dropped: too many connections")
			if s.Observer != nil {
				s.Observer.ConnRefused(c.event())
			}
			continue
		}
		// Everything that may block (a PROXY header, the TLS handshake,
		// even RemoteAddr) happens in the connection's goroutine.
		go func() {
			defer s.wg.Done()
			defer s.removeConn(c)
			c.serve()
		}()
	}
}

// Shutdown stops accepting connections and waits for open sessions to end
// by themselves. When ctx is done first, it closes the remaining
// connections (their sessions end without the UPDATE state, so nothing is
// deleted) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close closes all listeners and connections at once and waits for their
// goroutines to end.
func (s *Server) Close() error {
	s.closeListeners()
	s.closeConns()
	s.wg.Wait()
	return nil
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
}

func (s *Server) closeConns() {
	for _, c := range s.allConns() {
		c.closeBy(endShutdown)
	}
}

// allConns lists the registered connections, so that they can be closed
// or read without holding s.mu.
func (s *Server) allConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.conns))
}

// addConn registers c and counts it in s.wg, under s.mu so that a
// Shutdown or Close that has begun sees every connection it must wait for.
// It returns ErrServerClosed once they have begun, errTooManyConns when
// the server is so far over MaxConnections that c is not even answered.
// A connection over the limit but within maxRefusing is registered with
// c.overLimit set: its goroutine answers -ERR and closes it.
func (s *Server) addConn(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.MaxConnections > 0 && s.admitted >= s.MaxConnections {
		// Counted apart from len(s.conns)-admitted: a session that gave
		// its place back may still be logging out upstream.
		if s.refusing >= maxRefusing {
			return errTooManyConns
		}
		c.overLimit = true
		s.refusing++
	} else {
		s.admitted++
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return nil
}

// addIP counts c against MaxConnectionsPerIP once its real client address
// is known, and reports whether it is within the limit. A connection over
// the limit gives its place under MaxConnections back at once, before it is
// answered, so that a client refused for its address never makes another
// client's connection look like one too many.
func (s *Server) addIP(c *conn, ip netip.Addr) bool {
	if !ip.IsValid() || s.ConnectionSlot == nil && s.MaxConnectionsPerIP <= 0 {
		return true
	}
	if s.ConnectionSlot != nil {
		release, ok := s.ConnectionSlot(c.ctx, ip)
		s.mu.Lock()
		defer s.mu.Unlock()
		if !ok {
			s.refuseLocked(c)
			return false
		}
		c.slotRelease = release
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip] >= s.MaxConnectionsPerIP {
		s.refuseLocked(c)
		return false
	}
	if s.perIP == nil {
		s.perIP = make(map[netip.Addr]int)
	}
	s.perIP[ip]++
	c.ip = ip
	return true
}

// refuseLocked moves c from the admitted connections to the refused ones.
func (s *Server) refuseLocked(c *conn) {
	if !c.overLimit {
		c.overLimit = true
		s.refusing++
		s.admitted--
	}
}

// releaseSlot gives c's place under MaxConnections and
// MaxConnectionsPerIP back, once: before the client sees the connection
// end, while the goroutine may still be logging out upstream.
func (s *Server) releaseSlot(c *conn) {
	s.mu.Lock()
	release := c.slotRelease
	c.slotRelease = nil
	s.releaseLocked(c)
	s.mu.Unlock()
	if release != nil {
		// Outside s.mu: a shared count may take a round trip, and every
		// accept waits for s.mu.
		release()
	}
}

func (s *Server) releaseLocked(c *conn) {
	if c.released {
		return
	}
	c.released = true
	if !c.overLimit {
		s.admitted--
	}
	if c.ip.IsValid() {
		if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
			delete(s.perIP, c.ip)
		}
	}
}

func (s *Server) removeConn(c *conn) {
	s.releaseSlot(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if c.overLimit {
		s.refusing--
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
