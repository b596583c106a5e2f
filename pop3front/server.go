// Package pop3front is a POP3 server (RFC 1939, RFC 2449 CAPA and response
// codes, RFC 5034 SASL PLAIN) that serves maildrops from a Backend. It knows
// the wire protocol and nothing of where the mail lives.
package pop3front

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Defaults for the zero values of Server's fields.
const (
	DefaultIdleTimeout    = 10 * time.Minute // RFC 1939 section 3: at least 10 minutes
	DefaultWriteTimeout   = 2 * time.Minute
	DefaultCommandTimeout = 2 * time.Minute
	DefaultImplementation = "popbridge"
)

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
	// WriteTimeout bounds each write to the client, so that a client that
	// stops reading in the middle of a RETR releases the session.
	WriteTimeout time.Duration
	// CommandTimeout bounds the backend work of login, NOOP and the
	// UPDATE state. A message transfer has no overall bound (a large
	// message to a slow client takes its time): WriteTimeout bounds each
	// write to the client, and the backend each of its upstream reads.
	CommandTimeout time.Duration
	// AuthFailureDelay is the pause before answering a failed login, which
	// slows down password guessing.
	AuthFailureDelay time.Duration
	// MaxConnections limits concurrent connections; 0 means no limit.
	MaxConnections int
	// Implementation is the text of the IMPLEMENTATION capability.
	Implementation string

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// Serve accepts connections on ln until Shutdown or Close is called. It
// always returns a non-nil error; after Shutdown or Close, ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of descriptors or a transient error: back off
				// instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed, retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		if err := s.addConn(c); err != nil {
			if err == ErrServerClosed {
				// Accepted while Shutdown or Close ran: they did not
				// see this connection, so it must not be served.
				c.nc.Close()
				c.cancel()
				return ErrServerClosed
			}
			c.refuse()
			continue
		}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
		c.cancel()
	}
}

// addConn registers c and counts it in s.wg, under s.mu so that a
// Shutdown or Close that has begun sees every connection it must wait for.
// It returns ErrServerClosed once they have begun, errTooManyConns when
// the server is full.
func (s *Server) addConn(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.MaxConnections > 0 && len(s.conns) >= s.MaxConnections {
		return errTooManyConns
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return nil
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
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

func isTLS(nc net.Conn) bool {
	_, ok := nc.(*tls.Conn)
	return ok
}
