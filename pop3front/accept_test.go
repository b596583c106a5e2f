package pop3front

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// scriptedListener returns its errors from Accept in turn, then a
// connection.
type scriptedListener struct {
	errs  []error
	calls int
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.calls++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}
func (l *scriptedListener) Close() error { return nil }
func (l *scriptedListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110}
}

// timeoutError is a net.Error that times out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestAcceptRetriesTransientErrors(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}
	enfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.ENFILE}
	ln := &scriptedListener{errs: []error{emfile, enfile, timeoutError{}}}
	var logs testkit.LockedBuffer
	start := time.Now()
	nc, err := Accept(ln, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil || nc == nil {
		t.Fatalf("Accept = %v, %v; want a connection", nc, err)
	}
	nc.Close()
	if ln.calls != 4 {
		t.Errorf("ln.Accept called %d times, want 4", ln.calls)
	}
	// Pauses of 5, 10 and 20 ms.
	if d := time.Since(start); d < 35*time.Millisecond {
		t.Errorf("Accept returned after %v, without backing off", d)
	}
	out := logs.String()
	if n := strings.Count(out, "accept failed, retrying"); n != 3 {
		t.Errorf("%d retries logged, want 3:\n%s", n, out)
	}
	for _, want := range []string{"too many open files", "backoff=5ms", "backoff=20ms", "addr=127.0.0.1:110"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

func TestAcceptReturnsOtherErrors(t *testing.T) {
	for _, want := range []error{net.ErrClosed, errors.New("accept: invalid argument")} {
		ln := &scriptedListener{errs: []error{want}}
		if nc, err := Accept(ln, discardLogger(), nil); nc != nil || err != want {
			t.Errorf("Accept = %v, %v; want %v at once", nc, err, want)
		}
		if ln.calls != 1 {
			t.Errorf("ln.Accept called %d times after %v, want 1", ln.calls, want)
		}
	}
}

func TestAcceptStopsDuringABackoff(t *testing.T) {
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = syscall.EMFILE
	}
	ln := &scriptedListener{errs: errs} // 100 pauses: far longer than the test
	stop := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { close(stop) })
	done := make(chan error, 1)
	go func() {
		_, err := Accept(ln, discardLogger(), stop)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after stop = %v, want net.ErrClosed", err)
		}
	case <-time.After(clientTimeout):
		t.Fatal("Accept did not return after stop")
	}
}

func TestAcceptBackoffIsCapped(t *testing.T) {
	var b time.Duration
	var got []time.Duration
	for range 10 {
		b = nextAcceptBackoff(b)
		got = append(got, b)
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoffs = %v, want %v ms", got, want)
		}
	}
}
