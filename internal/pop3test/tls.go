package pop3test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// NewClient wraps an open connection and reads the greeting, failing the
// test unless it is +OK.
func NewClient(t testing.TB, nc net.Conn) *Client {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	c := &Client{t: t, Conn: nc, r: bufio.NewReader(nc)}
	if g := c.Line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting: %q", g)
	}
	return c
}

// DialTLS connects with implicit TLS (POP3S) and reads the greeting.
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Client {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	return NewClient(t, nc)
}

// STLS sends STLS and, after +OK, runs the TLS handshake on the
// connection.
func (c *Client) STLS(cfg *tls.Config) {
	c.t.Helper()
	c.OK("STLS")
	if c.r.Buffered() > 0 {
		c.t.Fatalf("server sent %d bytes after STLS's +OK", c.r.Buffered())
	}
	tc := tls.Client(c.Conn, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.Conn = tc
	c.r = bufio.NewReader(tc)
}
