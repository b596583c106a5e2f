// Package proxyheader reads PROXY protocol headers on a listener's
// connections, from trusted proxies only.
package proxyheader

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/popbridge/popbridge/pop3front"
)

// Listen wraps ln so that connections from the trusted proxies must start
// with a PROXY header (v1 or v2), read within timeout, whose addresses
// their RemoteAddr and LocalAddr then return. Headers missing or broken
// are logged with the proxy's address.
func Listen(ln net.Listener, trusted []netip.Prefix, timeout time.Duration, log *slog.Logger) net.Listener {
	return &rejectLogListener{Listener: &proxyproto.Listener{
		Listener:          ln,
		ConnPolicy:        policy(trusted),
		ReadHeaderTimeout: timeout,
	}, log: log}
}

// policy trusts PROXY headers from the trusted proxies only, and requires
// one from them (a proxy that forgot it would make every client look like
// the proxy). Anyone else may connect directly and is not even read for a
// header: POP3 servers speak first, so waiting for a header that a direct
// client never sends would hold up its greeting. A header such a client
// sends anyway reaches pop3front as a "PROXY" command line, which closes
// the connection (a v2 header's signature contains "QUIT").
func policy(trusted []netip.Prefix) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		ip := pop3front.AddrIP(o.Upstream)
		for _, p := range trusted {
			if p.Contains(ip) {
				return proxyproto.REQUIRE, nil
			}
		}
		return proxyproto.SKIP, nil
	}
}

// rejectLogListener logs connections from trusted proxies whose PROXY
// header was missing or malformed, with the proxy's address.
type rejectLogListener struct {
	net.Listener
	log *slog.Logger
}

func (l *rejectLogListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pc, ok := nc.(*proxyproto.Conn)
	if !ok {
		return nc, nil
	}
	return &rejectLogConn{Conn: pc, pc: pc, log: l.log}, nil
}

// rejectLogConn is a connection from a trusted proxy.
type rejectLogConn struct {
	net.Conn
	pc   *proxyproto.Conn
	log  *slog.Logger
	once sync.Once
}

var _ pop3front.ProxiedConn = (*rejectLogConn)(nil)

// Proxied reports whether the header named both addresses (a LOCAL
// header, the proxy's own health check, names none).
func (c *rejectLogConn) Proxied() bool {
	h := c.pc.ProxyHeader()
	return h != nil && !h.Command.IsLocal() && h.SourceAddr != nil && h.DestinationAddr != nil
}

func (c *rejectLogConn) check(err error) {
	if err == nil {
		return
	}
	if errors.Is(err, proxyproto.ErrNoProxyProtocol) || isHeaderError(err) {
		c.once.Do(func() {
			c.log.Warn("connection from a trusted proxy closed: missing or bad PROXY protocol header",
				"peer", c.pc.Raw().RemoteAddr().String(), "err", err)
		})
	}
}

// isHeaderError reports whether err comes from parsing a PROXY header.
func isHeaderError(err error) bool {
	for _, e := range []error{
		proxyproto.ErrCantReadVersion1Header, proxyproto.ErrLineMustEndWithCrlf,
		proxyproto.ErrCantReadProtocolVersionAndCommand, proxyproto.ErrCantReadAddressFamilyAndProtocol,
		proxyproto.ErrCantReadLength, proxyproto.ErrUnknownProxyProtocolVersion,
		proxyproto.ErrUnsupportedProtocolVersionAndCommand, proxyproto.ErrUnsupportedAddressFamilyAndProtocol,
		proxyproto.ErrInvalidLength, proxyproto.ErrInvalidAddress, proxyproto.ErrInvalidPortNumber,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (c *rejectLogConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.check(err)
	return n, err
}

func (c *rejectLogConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.check(err)
	return n, err
}
