// Package pop3test is a minimal POP3 client for tests: it sends command
// lines and returns responses with the exact bytes of multi-line data.
package pop3test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Client is a POP3 connection under test. Every read has a deadline, so a
// server that hangs fails the test instead of blocking it.
type Client struct {
	t    testing.TB
	Conn net.Conn
	r    *bufio.Reader
}

// Dial connects and reads the greeting, failing the test unless it is +OK.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	return DialFrom(t, "", addr)
}

// DialFrom is Dial from the local IP address local (e.g. "127.0.0.2"),
// for servers that treat clients by address; "" lets the system choose.
func DialFrom(t testing.TB, local, addr string) *Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &Client{t: t, Conn: nc, r: bufio.NewReader(nc)}
	if g := c.Line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting: %q", g)
	}
	return c
}

// ioTimeout bounds every read and write. It is generous because an
// answer may wait for an upstream login and snapshot, which under -race
// on a loaded two-core machine has been seen to take ten seconds.
const ioTimeout = 30 * time.Second

// Line reads one response line without its CRLF.
func (c *Client) Line() string {
	c.t.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Fatalf("response line without CRLF: %q", line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// Read reads raw response bytes, including any that Line buffered, so
// that a test can take a large response without the client allocating.
func (c *Client) Read(p []byte) (int, error) {
	return c.r.Read(p)
}

// Send writes one command line.
func (c *Client) Send(line string) {
	c.t.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

// Cmd sends a command and returns its status line.
func (c *Client) Cmd(line string) string {
	c.t.Helper()
	c.Send(line)
	return c.Line()
}

// OK sends a command and fails the test unless the answer is +OK.
func (c *Client) OK(line string) string {
	c.t.Helper()
	resp := c.Cmd(line)
	if !strings.HasPrefix(resp, "+OK") {
		c.t.Fatalf("%s: %s", redact(line), resp)
	}
	return resp
}

// Multi sends a command with a multi-line answer and returns the data
// with the dot-stuffing undone, lines joined with CRLF, exactly as a
// client would store it.
func (c *Client) Multi(line string) []byte {
	c.t.Helper()
	c.OK(line)
	return c.Data()
}

// MultiRaw sends a command with a multi-line answer and returns the data
// as sent, dot-stuffing included, without the status and terminating
// lines; ok is false (and data nil) for an -ERR answer.
func (c *Client) MultiRaw(line string) (data []byte, ok bool) {
	c.t.Helper()
	if resp := c.Cmd(line); !strings.HasPrefix(resp, "+OK") {
		return nil, false
	}
	var buf bytes.Buffer
	for {
		l := c.Line()
		if l == "." {
			return buf.Bytes(), true
		}
		buf.WriteString(l)
		buf.WriteString("\r\n")
	}
}

// Data reads multi-line data up to the terminating line.
func (c *Client) Data() []byte {
	c.t.Helper()
	var buf bytes.Buffer
	for {
		l := c.Line()
		if l == "." {
			return buf.Bytes()
		}
		l = strings.TrimPrefix(l, ".")
		buf.WriteString(l)
		buf.WriteString("\r\n")
	}
}

// Login logs in with USER and PASS.
func (c *Client) Login(user, pass string) {
	c.t.Helper()
	c.OK("USER " + user)
	c.OK("PASS " + pass)
}

// Quit sends QUIT and returns its answer.
func (c *Client) Quit() string {
	c.t.Helper()
	resp := c.Cmd("QUIT")
	c.Conn.Close()
	return resp
}

// Stat returns the message count and total size.
func (c *Client) Stat() (n int, size int64) {
	c.t.Helper()
	resp := c.OK("STAT")
	if _, err := fmt.Sscanf(resp, "+OK %d %d", &n, &size); err != nil {
		c.t.Fatalf("STAT answer %q: %v", resp, err)
	}
	return n, size
}

func redact(line string) string {
	if strings.HasPrefix(strings.ToUpper(line), "PASS ") {
		return "PASS ****"
	}
	return line
}
