// start.go holds what a connection does before its greeting: the implicit
// TLS handshake, learning the client's address (a PROXY protocol header,
// read by the listener), and the connection limits.

package pop3front

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"
)

// start runs in the connection's goroutine before the greeting. Under
// HandshakeTimeout it completes the implicit TLS handshake and learns the
// client's address (which, behind a PROXY protocol listener, reads the
// header); then it applies the connection limits. It reports whether the
// session goes on.
func (c *conn) start() bool {
	timeout := orDefault(c.srv.HandshakeTimeout, DefaultHandshakeTimeout)
	c.nc.SetDeadline(time.Now().Add(timeout))
	if tc, ok := c.nc.(*tls.Conn); ok {
		ctx, cancel := c.callContext(timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.log.Info("TLS handshake failed", "remote", tc.RemoteAddr().String(), "err", err)
			return false
		}
	}
	c.remote = c.nc.RemoteAddr()
	c.nc.SetDeadline(time.Time{})
	c.log = sessionLogger(c.srv.logger(), c.id, c.remote.String())
	if c.overLimit {
		c.refuse("too many connections", "Too many connections, try again later")
		return false
	}
	if !c.srv.addIP(c, AddrIP(c.remote)) {
		c.refuse("too many connections from the client's address", "Too many connections from your address, try again later")
		return false
	}
	return true
}

// refuse answers a connection over one of the server's limits; the
// caller closes it.
func (c *conn) refuse(why, text string) {
	c.log.Warn("connection refused: " + why)
	if c.srv.Observer != nil {
		c.srv.Observer.ConnRefused(c.event())
	}
	c.writeErr(&Error{Code: "SYS/TEMP", Text: text})
	c.bw.Flush()
}

func (c *conn) isTLS() bool {
	_, ok := c.nc.(*tls.Conn)
	return ok
}

// ProxiedConn is implemented by the connections of a listener that reads
// PROXY protocol headers. Proxied reports whether the connection's header
// named the client and the address it connected to, which its RemoteAddr
// and LocalAddr then return (a LOCAL header, or a peer not trusted to send
// one, leaves the socket's own).
type ProxiedConn interface {
	net.Conn
	Proxied() bool
}

// PassThroughConn is implemented by a connection wrapper that reads and
// writes straight through to the connection it wraps, holding no input of
// its own (unlike TLS or a PROXY protocol reader). The server then looks
// at the socket beneath for commands a client queued (pipelining) and
// while the connection idles.
type PassThroughConn interface {
	net.Conn
	PassThrough() net.Conn
}

// info describes the connection for the Backend and PlaintextAllowed.
func (c *conn) info() ConnInfo {
	info := ConnInfo{RemoteAddr: c.remote, LocalAddr: c.nc.LocalAddr(), Session: c.id, Logger: c.log,
		LoginAttempt: c.authFail + 1}
	raw := c.raw
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if pc, ok := raw.(ProxiedConn); ok {
		info.Proxied = pc.Proxied()
	}
	if ap, err := netip.ParseAddrPort(c.listener); err == nil {
		info.Listener = net.TCPAddrFromAddrPort(ap)
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		info.TLS, info.TLSState = true, &st
	}
	return info
}
