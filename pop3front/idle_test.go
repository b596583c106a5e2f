package pop3front

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// After an idle wait the line reader gets, in its first read, what the
// octets that ended the wait left in the socket, as one read into the
// whole buffer would have: a pipelining client's burst is read at once,
// and answered in one write.
func TestWakeReaderTakesWhatTheSocketHolds(t *testing.T) {
	client, server := loopbackPair(t)
	burst := strings.Repeat("STAT\r\nNOOP\r\n", 50) // 600 octets
	if _, err := client.Write([]byte(burst)); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	in := wakeReader{nc: server}
	// The socket holds all of it before the wait ends (loopback).
	for deadline := time.Now().Add(5 * time.Second); peekSocket(server, make([]byte, len(burst))) < len(burst) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	n, err := server.Read(in.first[:])
	if err != nil || n != len(in.first) {
		t.Fatalf("first read: %d, %v", n, err)
	}
	in.w = uint8(n)
	br := bufio.NewReaderSize(&in, maxAuthLine)
	line, err := br.ReadSlice('\n')
	if err != nil || string(line) != "STAT\r\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if got, want := br.Buffered(), len(burst)-len(line); got != want {
		t.Errorf("after the first line %d octets buffered, want %d", got, want)
	}
}

type passThrough struct{ net.Conn }

func (p passThrough) PassThrough() net.Conn { return p.Conn }

type holdsInput struct{ net.Conn }

// The server looks at the socket's queued input through wrappers that
// say they hold none (a listener's hand-off wrapper), never through
// others (TLS, a PROXY protocol reader), and without consuming it.
func TestPeekSocketThroughPassThroughWrappers(t *testing.T) {
	client, server := loopbackPair(t)
	const queued = "RETR 1\r\nRETR 2\r\n"
	if _, err := client.Write([]byte(queued)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for deadline := time.Now().Add(5 * time.Second); peekSocket(server, buf) < len(queued) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		nc   net.Conn
		want string
	}{
		{"bare TCP", server, queued},
		{"pass-through", passThrough{server}, queued},
		{"pass-through twice", passThrough{passThrough{server}}, queued},
		{"a wrapper with input of its own", holdsInput{server}, ""},
		{"pass-through over such a wrapper", passThrough{holdsInput{server}}, ""},
	} {
		n := peekSocket(tc.nc, buf)
		if got := string(buf[:n]); got != tc.want {
			t.Errorf("%s: peeked %q, want %q", tc.name, got, tc.want)
		}
		if got := bareTCP(tc.nc); got != (tc.want != "") {
			t.Errorf("%s: bareTCP = %v", tc.name, got)
		}
	}
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1,
// closed when the test ends.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}
