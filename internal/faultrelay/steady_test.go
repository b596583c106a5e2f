package faultrelay

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

func TestLatencyDelaysBothDirectionsAndChangesNothing(t *testing.T) {
	const latency = 100 * time.Millisecond
	greeting := pattern(300 << 10)
	tg := startTarget(t, greeting)
	r := New(t, tg.addr)
	r.SetLatency(latency)
	start := time.Now()
	c := dial(t, r.Addr)
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < latency {
		t.Errorf("first octet down after %v, want at least %v", d, latency)
	}
	sent := pattern(200 << 10)
	start = time.Now()
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite()
	}()
	if up := tg.received(t); !bytes.Equal(up, sent) {
		t.Errorf("up: target got %d octets, want %d unchanged", len(up), len(sent))
	}
	if d := time.Since(start); d < latency {
		t.Errorf("the target had everything after %v, want at least %v", d, latency)
	}
	if got := append(buf, readAll(t, c)...); !bytes.Equal(got, greeting) {
		t.Errorf("down: got %d octets, want %d unchanged", len(got), len(greeting))
	}
}

func TestCountFindsAPatternSplitAcrossReads(t *testing.T) {
	tg := startTarget(t, []byte("* OK UID FETCH in the greeting\r\n"))
	r := New(t, tg.addr)
	up := r.Count(Up, "UID FETCH")
	down := r.Count(Down, "UID FETCH")
	c := dial(t, r.Addr)
	// The pause lets the relay read the first half on its own.
	c.Write([]byte("a UID FETCH 1 BODY[]\r\nb UID FE"))
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("TCH 2 BODY[]\r\nc UID FETCHUID FETCH\r\n"))
	c.(*net.TCPConn).CloseWrite()
	tg.received(t)
	readAll(t, c)
	if n := up.Load(); n != 4 {
		t.Errorf("counted %d in the client's commands, want 4", n)
	}
	if n := down.Load(); n != 1 {
		t.Errorf("counted %d in the server's greeting, want 1", n)
	}
}

// A client that waits for the greeting, sends two commands at once, a
// third after both answers and a fourth after that one's has waited three
// times: the second of the pipelined pair costs no round trip of its own.
func TestRoundTripsCountsWaitsNotCommands(t *testing.T) {
	srv, err := testkit.ServeConns(10*time.Second, func(c net.Conn) {
		c.Write([]byte("* OK hello\r\n"))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			c.Write([]byte("OK " + line))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r := New(t, srv.Addr)
	r.SetLatency(5 * time.Millisecond)
	c := dial(t, r.Addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(want string) {
		t.Helper()
		if got, err := br.ReadString('\n'); err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	expect("* OK hello\r\n")
	c.Write([]byte("a\r\nb\r\n"))
	expect("OK a\r\n")
	expect("OK b\r\n")
	c.Write([]byte("c\r\n"))
	expect("OK c\r\n")
	if got := r.RoundTrips(); got != 2 {
		t.Errorf("RoundTrips = %d after the second command, want 2", got)
	}
	c.Write([]byte("d\r\n"))
	expect("OK d\r\n")
	if got := r.RoundTrips(); got != 3 {
		t.Errorf("RoundTrips = %d, want 3", got)
	}
}
