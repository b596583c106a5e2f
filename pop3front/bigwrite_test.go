package pop3front

// A large message goes to the client in writes of the larger buffer, and
// the answers after it, with the usual buffer or the larger one taken
// again, are whole.

import (
	"net"
	"strings"
	"testing"
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
