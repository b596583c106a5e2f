package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

// popListener is one bound POP3 listener with what Serve needs.
type popListener struct {
	cfg  config.ListenConfig
	ln   net.Listener // TLS and PROXY wrapping included
	addr net.Addr
	stls *tls.Config // STLS offered with this; nil: not offered
	cert *certLoader
}

// bind opens one configured listener: TCP, then the PROXY protocol if
// enabled (so that TLS and everything after it see the real client), then
// implicit TLS.
// certLoaded, if not nil, gets the expiry of every certificate loaded.
func bind(l config.ListenConfig, handshakeTimeout time.Duration, log *slog.Logger, listenTCP func(string) (net.Listener, error),
	certLoaded func(notAfter time.Time)) (*popListener, error) {
	b := &popListener{cfg: l}
	var tlsConfig *tls.Config
	if l.TLS != config.ListenTLSNone {
		cert, err := newCertLoader(l.CertFile, l.KeyFile, log, certLoaded)
		if err != nil {
			return nil, fmt.Errorf("listen %s: certificate: %w", l.Address, err)
		}
		b.cert = cert
		tlsConfig = &tls.Config{
			MinVersion:     l.TLSVersion(),
			GetCertificate: cert.GetCertificate,
		}
	}
	ln, err := listenTCP(l.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	b.addr = ln.Addr()
	if l.ProxyProtocol {
		proxies, _ := config.ParseNetworks(l.TrustedProxies) // checked by Check
		ln = &proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        proxyPolicy(netSet(proxies)),
			ReadHeaderTimeout: handshakeTimeout,
		}
		ln = &rejectLogListener{Listener: ln, log: log}
	}
	switch l.TLS {
	case config.ListenTLSImplicit:
		ln = tls.NewListener(ln, tlsConfig)
	case config.ListenTLSStartTLS:
		b.stls = tlsConfig
	}
	b.ln = ln
	return b, nil
}

// proxyPolicy trusts PROXY headers from the trusted proxies only, and
// requires one from them (a proxy that forgot it would make every client
// look like the proxy). Anyone else may connect directly and is not even
// read for a header: POP3 servers speak first, so waiting for a header
// that a direct client never sends would hold up its greeting. A header
// such a client sends anyway reaches pop3front as a "PROXY" command line,
// which closes the connection (a v2 header's signature contains "QUIT").
func proxyPolicy(trusted netSet) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if trusted.contains(pop3front.AddrIP(o.Upstream)) {
			return proxyproto.REQUIRE, nil
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

type rejectLogConn struct {
	net.Conn
	pc   *proxyproto.Conn
	log  *slog.Logger
	once sync.Once
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
