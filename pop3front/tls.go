package pop3front

import (
	"context"
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
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.log.Info("TLS handshake failed", "remote", tc.RemoteAddr().String(), "err", err)
			return false
		}
	}
	c.remote = c.nc.RemoteAddr()
	c.nc.SetDeadline(time.Time{})
	c.log = c.log.With("remote", c.remote.String())
	if c.overLimit {
		c.refuse("too many connections", "Too many connections, try again later")
		return false
	}
	if !c.srv.addIP(c, addrIP(c.remote)) {
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
	c.fail(&Error{Code: "SYS/TEMP", Text: text})
	c.bw.Flush()
}

// addrIP is the IP address of a TCP peer, without an IPv4-in-IPv6
// wrapping, or the zero Addr for other kinds of address.
func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (c *conn) isTLS() bool {
	_, ok := c.nc.(*tls.Conn)
	return ok
}

// info describes the connection for the Backend and the server's hooks.
func (c *conn) info() ConnInfo {
	return ConnInfo{RemoteAddr: c.remote, LocalAddr: c.nc.LocalAddr(), TLS: c.isTLS()}
}

// stlsAvailable reports whether CAPA lists STLS: TLS is configured and not
// active yet (RFC 2595 section 4).
func (c *conn) stlsAvailable() bool {
	return c.stls != nil && !c.isTLS()
}

// plaintextAllowed reports whether USER/PASS and AUTH PLAIN may be used
// now: always over TLS, otherwise as Server.PlaintextAllowed decides.
func (c *conn) plaintextAllowed() bool {
	if c.isTLS() || c.srv.PlaintextAllowed == nil {
		return true
	}
	return c.srv.PlaintextAllowed(c.info())
}

// refusePlaintext answers USER or AUTH PLAIN on a connection where they
// are not allowed. The refusal counts as a protocol error, so a client
// that keeps trying is disconnected.
func (c *conn) refusePlaintext() error {
	c.user = ""
	c.log.Info("plaintext authentication refused on a connection without TLS")
	if f := c.srv.OnLogin; f != nil {
		f(c.info(), ErrPlaintextRefused)
	}
	c.observeLogin(ErrPlaintextRefused)
	c.fail(ErrPlaintextRefused)
	return c.protocolError()
}

// handleStls upgrades the connection to TLS (RFC 2595 section 4).
func (c *conn) handleStls(args []byte) error {
	if c.stls == nil {
		// A server without TLS does not know the command at all.
		return protoError("Unknown command")
	}
	if err := c.need(stateAuthorization); err != nil {
		return err
	}
	if len(args) > 0 {
		return protoError("STLS takes no arguments")
	}
	if c.isTLS() {
		return protoError("TLS is already active")
	}
	if c.br.Buffered() > 0 {
		// Whatever follows STLS in the same pipeline was sent in clear
		// and must not be taken as a command sent under TLS (the command
		// injection of CVE-2011-0411). A correct client waits for +OK.
		c.log.Warn("data after STLS before the TLS handshake, closing connection")
		c.fail(&Error{Text: "STLS must be the last command before the TLS handshake"})
		return errHangUp
	}
	c.ok("Begin TLS negotiation now")
	if err := c.bw.Flush(); err != nil {
		return err
	}
	timeout := orDefault(c.srv.HandshakeTimeout, DefaultHandshakeTimeout)
	tc := tls.Server(c.nc, c.stls)
	tc.SetDeadline(time.Now().Add(timeout))
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Info("STLS handshake failed", "err", err)
		return errHangUp
	}
	tc.SetDeadline(time.Time{})
	c.setConn(tc)
	// RFC 2595 section 4: the server discards what it learnt from the
	// client before TLS (a USER name); the client asks CAPA again.
	c.user = ""
	return nil
}
