package pop3front

// A large message goes to the client in writes of the larger buffer, and
// the answers after it, with the usual buffer or the larger one taken
// again, are whole; the write timeout asks a client for 16 KiB within it,
// however large the write.

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLargeMessageGoesOutInLargeWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wc := &countingListener{Listener: ln}
	big := strings.Repeat(strings.Repeat("x", 78)+"\r\n", (1<<20)/80) // 1 MiB
	ts := startServerOn(t, wc, newFakeBackend().withBodies(big, "small\r\n"))
	c := dialLogin(t, ts, "2")
	before := wc.writes.Load()
	c.write("RETR 1\r\n")
	if got := c.readLines(1 + strings.Count(big, "\n") + 1); got != "+OK 1048560 octets\r\n"+big+".\r\n" {
		t.Fatalf("RETR 1: %d octets, not the message", len(got))
	}
	// The usual 16 KiB buffer takes 64 writes; 64 KiB ones would take 16.
	if writes := wc.writes.Load() - before; writes > 18 {
		t.Errorf("1 MiB in %d writes, want at most 18", writes)
	}
	// The next answers, with the buffer back in its pool and taken again.
	c.expect("RETR 2\r\n", "+OK 7 octets\r\nsmall\r\n.\r\n")
	c.expect("RETR 1\r\n", "+OK 1048560 octets\r\n"+big+".\r\n")
	c.expect("QUIT\r\n", "+OK Logging out\r\n")
}

// stingyConn takes at most per octets a write, then times out; err, when
// set, is what it fails with instead.
type stingyConn struct {
	net.Conn
	per    int
	err    error
	writes []int // what each write was given
	took   int
}

func (c *stingyConn) SetWriteDeadline(time.Time) error { return nil }

func (c *stingyConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	if len(p) <= c.per {
		c.took += len(p)
		return len(p), nil
	}
	c.took += c.per
	if c.err != nil {
		return c.per, c.err
	}
	return c.per, os.ErrDeadlineExceeded
}

func TestWriteTimeoutAsksFor16KiB(t *testing.T) {
	failed := errors.New("connection reset")
	for _, tc := range []struct {
		name   string
		tls    bool
		per    int
		err    error
		took   int   // octets written of 128 KiB
		writes []int // the octets each write to the connection was given
		fails  bool
	}{
		{"plain, 20 KiB per timeout", false, 20 << 10, nil, 128 << 10, []int{128 << 10, 108 << 10, 88 << 10, 68 << 10, 48 << 10, 28 << 10, 8 << 10}, false},
		{"plain, 16 KiB per timeout", false, 16 << 10, nil, 128 << 10, []int{128 << 10, 112 << 10, 96 << 10, 80 << 10, 64 << 10, 48 << 10, 32 << 10, 16 << 10}, false},
		{"plain, 10 KiB per timeout", false, 10 << 10, nil, 10 << 10, []int{128 << 10}, true},
		{"plain, nothing taken", false, 0, nil, 0, []int{128 << 10}, true},
		{"plain, 20 KiB then reset", false, 20 << 10, failed, 20 << 10, []int{128 << 10}, true},
		{"TLS, 16 KiB per timeout", true, 16 << 10, nil, 128 << 10, []int{16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10}, false},
		{"TLS, 10 KiB per timeout", true, 10 << 10, nil, 10 << 10, []int{16 << 10}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &stingyConn{per: tc.per, err: tc.err}
			w := deadlineWriter{c, time.Minute, tc.tls}
			n, err := w.Write(make([]byte, 128<<10))
			if n != tc.took || c.took != tc.took {
				t.Errorf("wrote %d octets (the connection took %d), want %d", n, c.took, tc.took)
			}
			if (err != nil) != tc.fails {
				t.Errorf("err = %v, want an error: %v", err, tc.fails)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
			if !slices.Equal(c.writes, tc.writes) {
				t.Errorf("writes of %v octets, want %v", c.writes, tc.writes)
			}
		})
	}
}
