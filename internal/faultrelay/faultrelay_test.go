package faultrelay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is a TCP server that sends greeting to each connection and
// records everything it receives until the connection closes.
type target struct {
	addr     string
	greeting []byte
	got      chan []byte // one entry per closed connection
}

func startTarget(t *testing.T, greeting []byte) *target {
	t.Helper()
	tg := &target{greeting: greeting, got: make(chan []byte, 16)}
	srv, err := testkit.ServeConns(time.Minute, tg.serve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tg.addr = srv.Addr
	return tg
}

func (tg *target) serve(c net.Conn) {
	if len(tg.greeting) > 0 {
		if _, err := c.Write(tg.greeting); err != nil {
			tg.got <- nil
			return
		}
	}
	data, _ := io.ReadAll(c)
	tg.got <- data
}

// received waits for what the target got on its next closed connection.
func (tg *target) received(t *testing.T) []byte {
	t.Helper()
	select {
	case data := <-tg.got:
		return data
	case <-time.After(10 * time.Second):
		t.Fatal("the target's connection did not end")
		return nil
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads until EOF or error, bounded in time.
func readAll(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 10s, got %d octets", len(data))
	}
	return data
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func TestRelayForwardsBothDirectionsUnchanged(t *testing.T) {
	greeting := pattern(300 << 10)
	tg := startTarget(t, greeting)
	r := New(t, tg.addr)
	c := dial(t, r.Addr)
	sent := pattern(200 << 10)
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite()
	}()
	got := readAll(t, c)
	if !bytes.Equal(got, greeting) {
		t.Errorf("down: got %d octets, want %d unchanged", len(got), len(greeting))
	}
	if up := tg.received(t); !bytes.Equal(up, sent) {
		t.Errorf("up: target got %d octets, want %d unchanged", len(up), len(sent))
	}
}

func TestCutDownAtOffsetDeliversExactlyThatMuch(t *testing.T) {
	greeting := pattern(100 << 10)
	tg := startTarget(t, greeting)
	r := New(t, tg.addr)
	f := r.Arm(Fault{Dir: Down, Offset: 12345, Action: Cut})
	c := dial(t, r.Addr)
	got := readAll(t, c)
	if !bytes.Equal(got, greeting[:12345]) {
		t.Fatalf("got %d octets before the cut, want the first 12345", len(got))
	}
	// Fired closes once the fault has acted, which the client may see
	// a moment before.
	select {
	case <-f.Fired():
	case <-time.After(10 * time.Second):
		t.Error("Fired not closed after the cut")
	}
	tg.received(t)
}

func TestCutUpBeforeAndAfterMatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset int64
		want   string
	}{
		{"before", 0, "A1 NOOP\r\nA2 "},
		{"after", int64(len("UID EXPUNGE")), "A1 NOOP\r\nA2 UID EXPUNGE"},
		{"inside", 4, "A1 NOOP\r\nA2 UID "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := startTarget(t, nil)
			r := New(t, tg.addr)
			r.Arm(Fault{Dir: Up, Match: "UID EXPUNGE", Offset: tc.offset, Action: Cut})
			c := dial(t, r.Addr)
			c.Write([]byte("A1 NOOP\r\nA2 UID EXPUNGE 1:3\r\nA3 LOGOUT\r\n"))
			readAll(t, c) // the relay closes the client side too
			if got := tg.received(t); string(got) != tc.want {
				t.Errorf("target got %q, want %q", got, tc.want)
			}
		})
	}
}

// A pattern split over two writes is still found, and the fault acts at
// the earliest point still in the relay's hands.
func TestMatchAcrossReads(t *testing.T) {
	tg := startTarget(t, nil)
	r := New(t, tg.addr)
	f := r.Arm(Fault{Dir: Up, Match: "LOGOUT", Offset: 6, Action: Cut})
	c := dial(t, r.Addr)
	c.Write([]byte("A1 LOG"))
	time.Sleep(50 * time.Millisecond) // let the relay forward the first part alone
	c.Write([]byte("OUT\r\nrest"))
	<-f.Fired()
	if got := tg.received(t); string(got) != "A1 LOGOUT" {
		t.Errorf("target got %q, want %q", got, "A1 LOGOUT")
	}
}

// A tap sees what passed in its direction, including what a fault then
// held back.
func TestTapCopiesOneDirection(t *testing.T) {
	tg := startTarget(t, []byte("* OK ready\r\n"))
	r := New(t, tg.addr)
	var up, down testkit.LockedBuffer
	r.Tap(Up, &up)
	r.Tap(Down, &down)
	f := r.Arm(Fault{Dir: Up, Match: "A2", Action: Stall})
	c := dial(t, r.Addr)
	buf := make([]byte, len("* OK ready\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("A1 NOOP\r\nA2 LOGOUT\r\n"))
	<-f.Fired()
	for deadline := time.Now().Add(10 * time.Second); up.String() != "A1 NOOP\r\nA2 LOGOUT\r\n"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("up tap has %q", up.String())
		}
	}
	c.Close()
	if got := tg.received(t); string(got) != "A1 NOOP\r\n" {
		t.Errorf("target got %q past the stall", got)
	}
	if got := down.String(); got != "* OK ready\r\n" {
		t.Errorf("down tap has %q", got)
	}
}

func TestStallHoldsOneDirectionAndKeepsTheConnectionOpen(t *testing.T) {
	greeting := []byte("* OK hello\r\n")
	tg := startTarget(t, greeting)
	r := New(t, tg.addr)
	f := r.Arm(Fault{Dir: Down, Match: "hello", Action: Stall})
	c := dial(t, r.Addr)
	<-f.Fired()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	got, err := io.ReadAll(c)
	var ne net.Error
	if string(got) != "* OK " || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("stalled read: %q, %v; want %q and a timeout", got, err, "* OK ")
	}
	// Up still flows.
	c.Write([]byte("still here"))
	c.Close()
	if got := tg.received(t); string(got) != "still here" {
		t.Errorf("target got %q after the stall of the other direction", got)
	}
}

func TestHoldWaitsForUntilThenForwardsEverything(t *testing.T) {
	greeting := pattern(64 << 10)
	tg := startTarget(t, greeting)
	r := New(t, tg.addr)
	until := make(chan struct{})
	f := r.Arm(Fault{Dir: Down, Offset: 1000, Action: Hold, Until: until})
	c := dial(t, r.Addr)
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, got[:1000]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(got[1000:]); n != 0 || err == nil {
		t.Fatalf("read %d octets past the hold: %v", n, err)
	}
	close(until)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got[1000:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, greeting) {
		t.Error("held data changed")
	}
	<-f.Fired() // closed once the hold has ended
}

func TestSlowPacesTheDirection(t *testing.T) {
	greeting := pattern(3000)
	tg := startTarget(t, greeting)
	r := New(t, tg.addr)
	r.Arm(Fault{Dir: Down, Offset: 1000, Action: Slow, Rate: 5000})
	c := dial(t, r.Addr)
	start := time.Now()
	got := make([]byte, len(greeting))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	// 2000 octets at 5000 octets/s cannot arrive in less than 400 ms.
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("2000 slowed octets took %v, want at least 400ms", d)
	}
	if !bytes.Equal(got, greeting) {
		t.Error("slowed data changed")
	}
}

func TestCutInjectsDataFirst(t *testing.T) {
	tg := startTarget(t, []byte("* OK ready\r\n"))
	r := New(t, tg.addr)
	r.Arm(Fault{Dir: Down, Match: "* OK", Offset: 12, Action: Cut, Inject: []byte("* BYE idle\r\n")})
	c := dial(t, r.Addr)
	if got := readAll(t, c); string(got) != "* OK ready\r\n* BYE idle\r\n" {
		t.Errorf("got %q", got)
	}
}

func TestFaultFiresOnceAndCutAllKeepsAccepting(t *testing.T) {
	tg := startTarget(t, []byte("hi\r\n"))
	r := New(t, tg.addr)
	r.Arm(Fault{Dir: Down, Offset: 1, Action: Cut})
	if got := readAll(t, dial(t, r.Addr)); string(got) != "h" {
		t.Fatalf("first connection got %q, want %q", got, "h")
	}
	tg.received(t)
	c := dial(t, r.Addr)
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi\r\n" {
		t.Fatalf("second connection: %q %v", buf, err)
	}
	if r.Open() != 1 {
		t.Errorf("Open = %d, want 1", r.Open())
	}
	r.CutAll()
	if got := readAll(t, c); len(got) != 0 {
		t.Errorf("after CutAll: %q", got)
	}
	tg.received(t)
	c3 := dial(t, r.Addr)
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c3, buf); err != nil {
		t.Fatalf("after CutAll the relay no longer serves: %v", err)
	}
	if r.Accepted() != 3 {
		t.Errorf("Accepted = %d, want 3", r.Accepted())
	}
}

func TestUnreachableTargetClosesTheClient(t *testing.T) {
	r := New(t, testkit.FreeAddr(t))
	if got := readAll(t, dial(t, r.Addr)); len(got) != 0 {
		t.Errorf("got %q from a relay without target", got)
	}
}

// Close ends every connection, even stalled ones with a peer that is
// still connected, and leaves no file descriptor behind (goroutines are
// checked by TestMain).
func TestCloseReleasesEverything(t *testing.T) {
	tg := startTarget(t, pattern(1<<20))
	before := openFDs(t)
	r, err := Start(tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.Arm(Fault{Dir: Down, Offset: 10, Action: Stall})
	var clients []net.Conn
	for range 5 {
		c := dial(t, r.Addr)
		clients = append(clients, c)
	}
	for r.Open() < 5 {
		time.Sleep(5 * time.Millisecond)
	}
	r.Close()
	for _, c := range clients {
		readAll(t, c)
		c.Close()
	}
	for range 5 {
		tg.received(t)
	}
	if after := openFDs(t); after != before {
		t.Errorf("open file descriptors: %d before, %d after Close", before, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(ents)
}

func TestHangupSaysGoodbyeAndCloses(t *testing.T) {
	tg := startTarget(t, []byte("* OK ready\r\n"))
	r := New(t, tg.addr)
	c := dial(t, r.Addr)
	buf := make([]byte, 12)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	r.Hangup([]byte("* BYE idle\r\n"))
	if got := readAll(t, c); string(got) != "* BYE idle\r\n" {
		t.Errorf("after Hangup: %q", got)
	}
	tg.received(t)
	if r.Open() != 0 {
		t.Errorf("Open = %d after Hangup", r.Open())
	}
}
