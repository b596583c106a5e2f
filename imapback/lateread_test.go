package imapback

// Reads whose buffer is picked when input comes: on a bare TCP
// connection the buffer is asked for again once the input is there, errors
// are those of net.Conn.Read, and a 4 KiB message's answer to a range
// FETCH, arriving while go-imap's reader waited with its 4 KiB buffer,
// is read in one read into the tap's buffer.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s
}

func TestReadLatePicksTheBufferWhenInputComes(t *testing.T) {
	client, server := tcpPair(t)
	early, late := make([]byte, 8), make([]byte, 64)
	asked := make(chan struct{}, 4)
	calls := 0
	choose := func() []byte {
		calls++
		asked <- struct{}{}
		if calls == 1 {
			return early
		}
		return late
	}
	type result struct {
		p   []byte
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, n, err := readLate(client, choose)
		done <- result{p, n, err}
	}()
	<-asked // the first try, before there is input
	if _, err := server.Write([]byte("a line longer than eight octets\r\n")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || &r.p[0] != &late[0] || string(r.p[:r.n]) != "a line longer than eight octets\r\n" {
		t.Fatalf("read %q into the buffer of call %d, %v; want the whole line in the later buffer", r.p[:r.n], calls, r.err)
	}
}

func TestReadLateErrorsAreThoseOfRead(t *testing.T) {
	buf := func() []byte { return make([]byte, 16) }
	client, server := tcpPair(t)
	client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, n, err := readLate(client, buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("past the deadline: %d octets, %v; want %v", n, err, os.ErrDeadlineExceeded)
	}
	client.SetReadDeadline(time.Time{})
	server.Close()
	if _, n, err := readLate(client, buf); n != 0 || err != io.EOF {
		t.Errorf("closed by the peer: %d octets, %v; want io.EOF", n, err)
	}
	client.Close()
	if _, n, err := readLate(client, buf); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("closed here: %d octets, %v; want %v", n, err, net.ErrClosed)
	}
}

// countedConn counts the reads of its connection that returned input.
type countedConn struct {
	*net.TCPConn
	reads int
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		c.reads++
	}
	return n, err
}

func (c *countedConn) readLate(choose func() []byte) ([]byte, int, error) {
	p, n, err := readTCPLate(c.TCPConn, choose)
	if n > 0 {
		c.reads++
	}
	return p, n, err
}

func TestTapRangeAnswerTakesOneReadWhileGoIMAPWaits(t *testing.T) {
	client, server := tcpPair(t)
	counted := &countedConn{TCPConn: client}
	tap := &itemTap{Conn: newBoundedConn(counted, ResponseLimits{})}
	body := strings.Repeat("x", 4094) + "\r\n"
	go func() { // the upstream: the whole answer in one write
		line, _ := bufio.NewReader(server).ReadString('\n')
		if line != batchTag+" UID FETCH 5 (UID BODY.PEEK[]<0.65536>)\r\n" {
			server.Write([]byte("* BYE unexpected " + line))
			return
		}
		server.Write([]byte("* 1 FETCH (UID 5 BODY[]<0> {4096}\r\n" + body + ")\r\n" + batchTag + " OK done\r\n"))
	}()
	waiting := make(chan struct{})
	go func() { // go-imap's reader, waiting for input before the FETCH goes out
		p := make([]byte, 4096)
		close(waiting)
		for {
			if _, err := tap.Read(p); err != nil {
				return
			}
		}
	}()
	<-waiting
	time.Sleep(20 * time.Millisecond) // into its read
	room := make([]byte, 65536)
	var kept string
	b := &bodyBatch{room: room, to: &sinkFuncs{
		keepFn: func(uid imap.UID, off, n int, fits bool) bool {
			kept = string(room[off : off+n])
			return fits
		},
	}}
	if err := tap.fetchBodies(imap.UIDSetNum(5), len(room), b, client, nil); err != nil || b.broken {
		t.Fatalf("fetchBodies: %v (broken %v)", err, b.broken)
	}
	if kept != body {
		t.Fatalf("kept %d octets, want the %d of the body", len(kept), len(body))
	}
	if counted.reads != 1 {
		t.Errorf("the answer took %d reads, want 1", counted.reads)
	}
}
