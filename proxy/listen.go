package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/proxyheader"
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
			ClientAuth:     l.ClientAuth(),
		}
		if l.ClientCAFile != "" {
			if tlsConfig.ClientCAs, err = imapback.LoadCAFile(l.ClientCAFile); err != nil {
				return nil, fmt.Errorf("listen %s: client_ca_file: %w", l.Address, err)
			}
		}
	}
	ln, err := listenTCP(l.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	b.addr = ln.Addr()
	if l.ProxyProtocol {
		proxies, _ := config.ParseNetworks(l.TrustedProxies) // checked by Check
		ln = proxyheader.Listen(ln, proxies, handshakeTimeout, log)
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
