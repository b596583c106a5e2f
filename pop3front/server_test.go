package pop3front

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"
)

func TestShutdownWaitsForTheSessionToQuit(t *testing.T) {
	fb := newFakeBackend()
	ts := startServer(t, fb)
	c := dialLogin(t, ts, "3")
	c.expect("DELE 1\r\n", "+OK Message 1 deleted\r\n")

	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	// Serve returns as soon as the listener is closed...
	if err := ts.serveResult(t); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	if nc, err := net.Dial("tcp", ts.addr); err == nil {
		nc.Close()
		t.Error("a new connection was accepted during Shutdown")
	}
	// ...but the session goes on, and Shutdown waits for it.
	c.expect("STAT\r\nRETR 2\r\n", "+OK 2 45\r\n+OK 22 octets\r\nSubject: two\r\n\r\n..dot\r\n.\r\n")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v before the session ended", err)
	default:
	}
	c.expectClosed("QUIT\r\n", "+OK Logging out, 1 messages deleted\r\n")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown returned %v, want nil", err)
		}
	case <-time.After(clientTimeout):
		t.Fatal("Shutdown did not return after the session ended")
	}
	ts.expectBackend(t, fakeState{Logins: alice, Retrieves: []retrieveCall{{1, -1}}, Retrieved: []int{1},
		Commits: [][]int{{0}}, Closes: 1})
}

func TestShutdownWithExpiredContextClosesSessionsWithoutCommit(t *testing.T) {
	fb := newFakeBackend()
	ts := startServer(t, fb)
	c := dialLogin(t, ts, "3")
	c.expect("DELE 1\r\n", "+OK Message 1 deleted\r\n")
	idle := dial(t, ts) // not logged in

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown returned %v, want context.DeadlineExceeded", err)
	}
	// Shutdown has waited for the connection goroutines: the backend's
	// records are final.
	fb.expectState(t, fakeState{Logins: alice, Closes: 1})
	if got := c.readAll(); got != "" {
		t.Errorf("logged-in client got %q, want the connection closed", got)
	}
	if got := idle.readAll(); got != "" {
		t.Errorf("idle client got %q, want the connection closed", got)
	}
	if err := ts.serveResult(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
}

func TestShutdownWithoutSessionsReturnsAtOnce(t *testing.T) {
	ts := startServer(t, newFakeBackend())
	c := dial(t, ts)
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown returned %v", err)
	}
}

func TestCloseEndsEverythingAndServeReturnsErrServerClosed(t *testing.T) {
	fb := newFakeBackend()
	// Two listeners on one server.
	ts := startServer(t, fb)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve2 := make(chan error, 1)
	go func() { serve2 <- ts.srv.Serve(ln2) }()
	ts2 := &testServer{srv: ts.srv, addr: ln2.Addr().String(), serveErr: serve2}

	c1 := dialLogin(t, ts, "3")
	c1.expect("DELE 2\r\n", "+OK Message 2 deleted\r\n")
	c2 := dial(t, ts2)
	c3 := dial(t, ts2)
	c3.write("AUTH PLAIN\r\n") // waiting for the continuation line
	if got := c3.readLines(1); got != "+ \r\n" {
		t.Fatalf("got %q", got)
	}

	if err := ts.srv.Close(); err != nil {
		t.Errorf("Close returned %v", err)
	}
	for i, c := range []*client{c1, c2, c3} {
		if got := c.readAll(); got != "" {
			t.Errorf("client %d got %q, want the connection closed", i+1, got)
		}
	}
	for i, s := range []*testServer{ts, ts2} {
		if err := s.serveResult(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve %d returned %v, want ErrServerClosed", i+1, err)
		}
	}
	ts.expectBackend(t, fakeState{Logins: alice, Closes: 1})
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Error("the listener still accepts connections")
	}
	if err := ts.srv.Close(); err != nil {
		t.Errorf("second Close returned %v", err)
	}
}

func TestServeAfterCloseReturnsErrServerClosed(t *testing.T) {
	srv := &Server{Backend: newFakeBackend(), Logger: discardLogger()}
	srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	// Serve closed the listener.
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the listener after Serve returned %v, want net.ErrClosed", err)
	}
}

// gateListener holds each accepted connection until the gate opens.
type gateListener struct {
	net.Listener
	accepted chan struct{}
	gate     chan struct{}
}

func (l *gateListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted <- struct{}{}
	<-l.gate
	return nc, nil
}

func TestConnectionAcceptedDuringCloseIsNotServed(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &gateListener{Listener: inner, accepted: make(chan struct{}, 1), gate: make(chan struct{})}
	fb := newFakeBackend()
	srv := &Server{Backend: fb, Logger: discardLogger()}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	ts := &testServer{srv: srv, addr: inner.Addr().String(), serveErr: serveErr}

	c := dialRaw(t, ts)
	<-ln.accepted
	// Close finds no connection to close: the accepted one is not
	// registered yet.
	srv.Close()
	close(ln.gate)
	if err := ts.serveResult(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if got := c.readAll(); got != "" {
		t.Errorf("a connection accepted during Close got %q, want it closed unanswered", got)
	}
	checkNoServerGoroutines(t)
}

func TestNoGoroutinesLeftAfterClose(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		fb := newFakeBackend()
		fb.failAfter = map[int]int{2: 5}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{Backend: fb, Logger: discardLogger(), AuthFailureDelay: time.Hour}
		serveErr := make(chan error, 1)
		go func() { serveErr <- srv.Serve(ln) }()
		ts := &testServer{srv: srv, addr: ln.Addr().String(), serveErr: serveErr}

		// Sessions in various states.
		dial(t, ts)
		dialLogin(t, ts, "3").expect("DELE 1\r\n", "+OK Message 1 deleted\r\n")
		dial(t, ts).expect("AUTH PLAIN\r\n", "+ \r\n")
		dialLogin(t, ts, "3").expectClosed("RETR 3\r\n", "+OK 23 octets\r\nSubje")
		dialLogin(t, ts, "3").expectClosed("QUIT\r\n", "+OK Logging out\r\n")
		dial(t, ts).write("USER alice\r\nPASS wrong\r\n") // in the failure delay
		dial(t, ts).write("RETR")                         // half a line

		srv.Close()
		if err := ts.serveResult(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	}()
	var now int
	for range 200 {
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines before, %d after Close:\n%s", before, now, serverGoroutines())
}

// TestSessionsLoggingOutDoNotCountAsRefusals: a session that gave its
// place back is still registered while it logs out upstream; many of them
// must not make the server close new connections without an answer.
func TestSessionsLoggingOutDoNotCountAsRefusals(t *testing.T) {
	s := &Server{MaxConnections: 1, Logger: discardLogger()}
	add := func() *conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		c := newConn(s, a)
		if err := s.addConn(c); err != nil {
			t.Fatalf("addConn: %v", err)
		}
		return c
	}
	for range maxRefusing + 1 {
		c := add()
		if c.overLimit {
			t.Fatal("a connection was over the limit although every earlier one gave its place back")
		}
		s.releaseSlot(c) // ended; its goroutine is logging out
	}
	add()
	if c := add(); !c.overLimit {
		t.Error("the second live connection was admitted over MaxConnections 1")
	}
}
