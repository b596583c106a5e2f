package pop3front

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	greeting = "+OK popbridge ready\r\n"
	// clientTimeout bounds every test connection, so that a missing
	// response fails the test instead of hanging it.
	clientTimeout = 10 * time.Second
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testServer is a Server serving on 127.0.0.1.
type testServer struct {
	srv      *Server
	addr     string
	serveErr chan error
	err      error
	returned bool
}

// startServer starts a Server with backend b on 127.0.0.1:0. The cleanup
// closes it and checks that Serve returned ErrServerClosed; once all the
// test's servers are closed, it checks that no server goroutine is left.
func startServer(t *testing.T, b Backend, configure ...func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServerOn(t, ln, b, configure...)
}

// startServerOn is startServer on a given listener.
func startServerOn(t *testing.T, ln net.Listener, b Backend, configure ...func(*Server)) *testServer {
	t.Helper()
	if _, seen := leakChecked.LoadOrStore(t, true); !seen {
		// Registered before the first server's cleanup, so it runs after
		// all of this test's servers are closed.
		t.Cleanup(func() {
			leakChecked.Delete(t)
			checkNoServerGoroutines(t)
		})
	}
	srv := &Server{Backend: b, Logger: discardLogger()}
	for _, f := range configure {
		f(srv)
	}
	ts := &testServer{srv: srv, addr: ln.Addr().String(), serveErr: make(chan error, 1)}
	go func() { ts.serveErr <- srv.Serve(ln) }()
	t.Cleanup(func() {
		closed := make(chan struct{})
		go func() {
			srv.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(clientTimeout):
			t.Errorf("Close did not return:\n%s", strings.Join(serverGoroutines(), "\n\n"))
			return
		}
		if err := ts.serveResult(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// leakChecked holds the tests that have a goroutine check registered.
var leakChecked sync.Map

// serveResult waits (bounded) for Serve to return and gives its error.
func (ts *testServer) serveResult(t *testing.T) error {
	t.Helper()
	if ts.returned {
		return ts.err
	}
	select {
	case ts.err = <-ts.serveErr:
		ts.returned = true
		return ts.err
	case <-time.After(clientTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// waitSessions waits for all sessions to end by themselves (Shutdown with
// a deadline), so that the backend's records are complete.
func (ts *testServer) waitSessions(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (a session did not end)", err)
	}
}

// client is a raw POP3 client connection.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dial connects to ts without reading anything.
func dialRaw(t *testing.T, ts *testServer) *client {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(clientTimeout))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// dial connects to ts and checks the greeting.
func dial(t *testing.T, ts *testServer) *client {
	t.Helper()
	c := dialRaw(t, ts)
	if got := c.readLines(1); got != greeting {
		t.Fatalf("greeting = %q, want %q", got, greeting)
	}
	return c
}

// expectSlotFreed checks that a connection refused with refusal is served
// again as soon as a client has seen its connection end: its place was
// given back before its last answer.
func (ts *testServer) expectSlotFreed(t *testing.T, refusal string) {
	t.Helper()
	c := dialRaw(t, ts)
	if got := c.readLines(1); got != greeting {
		t.Fatalf("after a QUIT, new connection got %q (the refusal is %q)", got, refusal)
	}
}

// dialLogin connects and logs in as alice with USER/PASS.
func dialLogin(t *testing.T, ts *testServer, nmsgs string) *client {
	t.Helper()
	c := dial(t, ts)
	c.expect("USER alice\r\nPASS secret\r\n",
		"+OK Send your password\r\n+OK Logged in, "+nmsgs+" messages\r\n")
	return c
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// readLines reads n lines (each up to and including LF) and returns them
// as they came. It stops early, returning what it has, when the
// connection is closed or the deadline passes.
func (c *client) readLines(n int) string {
	c.t.Helper()
	var sb strings.Builder
	for range n {
		line, err := c.br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			c.t.Errorf("after %q: %v", sb.String(), err)
			break
		}
	}
	return sb.String()
}

// readAll reads until the server closes the connection.
func (c *client) readAll() string {
	c.t.Helper()
	b, err := io.ReadAll(c.br)
	if err != nil {
		c.t.Errorf("reading until close, after %q: %v", b, err)
	}
	return string(b)
}

// expect sends raw bytes and checks that the answer is exactly want. It
// reads as many lines as want has, but stops at the first line that
// differs, and then ends the test: the rest of the conversation would be
// out of step.
func (c *client) expect(send, want string) {
	c.t.Helper()
	c.write(send)
	var sb strings.Builder
	for range strings.Count(want, "\n") {
		line, err := c.br.ReadString('\n')
		sb.WriteString(line)
		if err != nil || !strings.HasPrefix(want, sb.String()) {
			c.t.Fatalf("sent %q\n got %q (%v)\nwant %q", send, sb.String(), err, want)
		}
	}
}

// expectClosed sends raw bytes and checks that the server answers exactly
// want and then closes the connection.
func (c *client) expectClosed(send, want string) {
	c.t.Helper()
	c.write(send)
	if got := c.readAll(); got != want {
		c.t.Errorf("sent %q\n got %q (then closed)\nwant %q", send, got, want)
	}
}

// plain encodes a SASL PLAIN response.
func plain(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

// serverGoroutines lists the stacks of goroutines running server code.
func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "pop3front.(*conn)") || strings.Contains(g, "pop3front.(*Server)") {
			found = append(found, g)
		}
	}
	return found
}

// checkNoServerGoroutines fails if goroutines running server code remain
// after a bounded wait (a goroutine may still be on its way out after
// signalling that it is done).
func checkNoServerGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for range 200 {
		if left = serverGoroutines(); len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d server goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
}
