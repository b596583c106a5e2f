// Package sockets keeps listening sockets open across reloads: one
// goroutine accepts on each and hands every connection to whichever view
// of it a server is serving.
package sockets

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbridge/popbridge/pop3front"
)

// A reload swaps the servers that serve a socket without closing it: a
// client never sees "connection refused" in between.

// Shared is a bound socket that several servers serve one after the
// other through views. One goroutine accepts; each connection goes to
// whichever view asks for it, so a view can close (its Server stops
// accepting) while the socket stays open for the next one.
type Shared struct {
	ln    net.Listener
	log   *slog.Logger
	conns chan net.Conn
	done  chan struct{} // closed once the socket is closed
	// exited is closed when the accept goroutine has returned: only then
	// is the socket really closed (the kernel refuses connections).
	exited chan struct{}
	once   sync.Once
	err    error // why accepting ended, set before done closes
}

// New starts accepting on ln, which Close closes.
func New(ln net.Listener, log *slog.Logger) *Shared {
	s := &Shared{ln: ln, log: log, conns: make(chan net.Conn), done: make(chan struct{}), exited: make(chan struct{})}
	go s.accept()
	return s
}

func (s *Shared) accept() {
	defer close(s.exited)
	for {
		nc, err := pop3front.Accept(s.ln, s.log, s.done)
		if err != nil {
			// A stop closed done first; the once keeps its error.
			s.once.Do(func() {
				s.err = err
				close(s.done)
			})
			return
		}
		select {
		case s.conns <- nc:
		case <-s.done:
			nc.Close()
			return
		}
	}
}

// Close closes the socket for good, and returns once the kernel refuses
// new connections.
func (s *Shared) Close() {
	s.once.Do(func() {
		s.err = net.ErrClosed
		close(s.done)
	})
	s.ln.Close()
	<-s.exited
}

// View is a listener on s for one server: closing it stops that server
// accepting, not the socket.
func (s *Shared) View() net.Listener {
	return &listenerView{s: s, closed: make(chan struct{})}
}

// listenerView is the listener View returns.
type listenerView struct {
	s      *Shared
	closed chan struct{}
	once   sync.Once
}

func (v *listenerView) Accept() (net.Conn, error) {
	select {
	case <-v.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case nc := <-v.s.conns:
		return &handoffConn{Conn: nc, v: v}, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.done:
		if errors.Is(v.s.err, net.ErrClosed) {
			// Closed on purpose (drain, reload): the Server is being
			// shut down too and closes this view. An error now would
			// look like a failed listener to it.
			<-v.closed
			return nil, net.ErrClosed
		}
		return nil, v.s.err
	}
}

func (v *listenerView) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

func (v *listenerView) Addr() net.Addr { return v.s.ln.Addr() }

func (v *listenerView) isClosed() bool {
	select {
	case <-v.closed:
		return true
	default:
		return false
	}
}

// requeue hands a connection that a closing Server never used to the
// next view.
func (s *Shared) requeue(nc net.Conn) {
	go func() {
		select {
		case s.conns <- nc:
		case <-s.done:
			nc.Close()
		}
	}()
}

// handoffConn is a connection as a view hands it out. A Server that is
// shut down between accepting a connection and serving it closes it
// unused (pop3front must not serve a connection its Shutdown did not
// see): during a reload the connection then goes to the new Server
// instead, so that no client is dropped. Any I/O or deadline marks the
// connection used; a Close after that, or on a view still open (a
// connection over the server's limit), is a real close.
type handoffConn struct {
	net.Conn
	v        *listenerView
	used     atomic.Bool
	requeued atomic.Bool
	once     sync.Once
}

// PassThrough returns the connection beneath: handoffConn holds no
// input, so the POP3 server may look at the socket's (pop3front's
// PassThroughConn). A look marks nothing used: it follows a Read.
func (c *handoffConn) PassThrough() net.Conn { return c.Conn }

var _ pop3front.PassThroughConn = (*handoffConn)(nil)

func (c *handoffConn) Read(p []byte) (int, error) {
	c.used.Store(true)
	return c.Conn.Read(p)
}

func (c *handoffConn) Write(p []byte) (int, error) {
	c.used.Store(true)
	return c.Conn.Write(p)
}

func (c *handoffConn) SetDeadline(t time.Time) error {
	c.used.Store(true)
	return c.Conn.SetDeadline(t)
}

func (c *handoffConn) SetReadDeadline(t time.Time) error {
	c.used.Store(true)
	return c.Conn.SetReadDeadline(t)
}

func (c *handoffConn) SetWriteDeadline(t time.Time) error {
	c.used.Store(true)
	return c.Conn.SetWriteDeadline(t)
}

func (c *handoffConn) Close() error {
	c.once.Do(func() {
		if !c.used.Load() && c.v.isClosed() {
			c.v.s.requeue(c.Conn)
			c.requeued.Store(true)
		}
	})
	if c.requeued.Load() {
		return nil // the connection belongs to another Server now
	}
	return c.Conn.Close()
}
