package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

// Listener TLS modes.
const (
	ListenTLSNone     = "none"     // plain POP3; passwords in clear unless the client is trusted
	ListenTLSStartTLS = "starttls" // plain POP3 offering STLS (RFC 2595)
	ListenTLSImplicit = "implicit" // POP3S: TLS from the first byte (RFC 8314, port 995)
)

// Security defaults applied by Check.
const (
	DefaultAuthFailuresPerIP   = 30
	DefaultAuthFailuresPerUser = 10
	DefaultAuthFailureWindow   = 10 * time.Minute
	DefaultMinTLSVersion       = "1.2"
)

// DefaultTrustedNetworks may log in with a password on a connection
// without TLS: loopback only, as Dovecot's default
// disable_plaintext_auth allows.
var DefaultTrustedNetworks = []string{"127.0.0.0/8", "::1/128"}

var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// check fills in a listener's defaults and validates it; key names it in
// errors.
func (l *ListenConfig) check(key string) []error {
	var errs []error
	if _, _, err := net.SplitHostPort(l.Address); err != nil {
		errs = append(errs, fmt.Errorf("%s.address: %v", key, err))
	}
	if l.TLS == "" {
		l.TLS = ListenTLSNone
	}
	if err := oneOf(key+".tls", l.TLS, ListenTLSNone, ListenTLSStartTLS, ListenTLSImplicit); err != nil {
		errs = append(errs, err)
	}
	if l.MinVersion == "" {
		l.MinVersion = DefaultMinTLSVersion
	}
	if _, ok := tlsVersions[l.MinVersion]; !ok {
		errs = append(errs, fmt.Errorf("%s.min_version: %q is not one of 1.2, 1.3", key, l.MinVersion))
	}
	switch {
	case l.TLS == ListenTLSNone && (l.CertFile != "" || l.KeyFile != ""):
		errs = append(errs, fmt.Errorf("%s: cert_file and key_file need tls: starttls or implicit", key))
	case l.TLS != ListenTLSNone && (l.CertFile == "" || l.KeyFile == ""):
		errs = append(errs, fmt.Errorf("%s: tls: %s needs cert_file and key_file", key, l.TLS))
	case l.TLS != ListenTLSNone:
		if _, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("%s.cert_file/key_file: %v", key, err))
		}
	}
	if _, err := parsePrefixes(l.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("%s.trusted_proxies: %v", key, err))
	}
	if l.ProxyProtocol && len(l.TrustedProxies) == 0 {
		errs = append(errs, fmt.Errorf("%s: proxy_protocol needs trusted_proxies (the load balancers' addresses)", key))
	}
	if !l.ProxyProtocol && len(l.TrustedProxies) > 0 {
		errs = append(errs, fmt.Errorf("%s: trusted_proxies without proxy_protocol: true", key))
	}
	return errs
}

// check fills in an upstream's defaults and validates it; key names it in
// errors ("upstream" or "upstreams.NAME").
func (u *UpstreamConfig) check(key string) []error {
	var errs []error
	if u.Address == "" {
		errs = append(errs, fmt.Errorf("%s.address: required (host:port of the IMAP server)", key))
	} else if _, port, err := net.SplitHostPort(u.Address); err != nil {
		errs = append(errs, fmt.Errorf("%s.address: %v", key, err))
	} else if u.TLS == "" {
		u.TLS = string(imapback.TLSStartTLS)
		if port == "993" {
			u.TLS = string(imapback.TLSImplicit)
		}
	}
	errs = append(errs, oneOf(key+".tls", u.TLS, "implicit", "starttls", "none"))
	errs = append(errs, oneOf(key+".auth", u.Auth, "", "auto", "login", "plain", "xoauth2", "oauthbearer"))
	if u.CAFile != "" {
		if _, err := imapback.LoadCAFile(u.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("%s.ca_file: %v", key, err))
		}
	}
	if (u.CertFile == "") != (u.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: cert_file and key_file go together", key))
	} else if u.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(u.CertFile, u.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("%s.cert_file/key_file: %v", key, err))
		}
	}
	if u.Mailbox == "" {
		u.Mailbox = imapback.DefaultMailbox
	}
	if u.DialTimeout == 0 {
		u.DialTimeout = imapback.DefaultDialTimeout
	}
	if u.CommandTimeout == 0 {
		u.CommandTimeout = imapback.DefaultCommandTimeout
	}
	for name, d := range map[string]time.Duration{".dial_timeout": u.DialTimeout, ".command_timeout": u.CommandTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s%s: must not be negative", key, name))
		}
	}
	return errs
}

// tlsConfig is the client TLS config for the upstream: verification on
// unless insecure_skip_verify says otherwise, with the CA bundle and the
// client certificate if configured.
func (u *UpstreamConfig) tlsConfig(logger *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.ServerName}
	if u.CAFile != "" {
		pool, err := imapback.LoadCAFile(u.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if u.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(u.CertFile, u.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if u.InsecureSkipVerify {
		if u.TLS != string(imapback.TLSNone) {
			logger.Warn("upstream TLS certificate verification is OFF (insecure_skip_verify): "+
				"anyone between popbridge and the upstream can read the passwords", "upstream", u.Address)
		}
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

// checkSecurity fills in and validates trusted_networks, the per-address
// and per-user limits, the named upstreams and the routes.
func (c *Config) checkSecurity() []error {
	var errs []error
	if c.TrustedNetworks == nil {
		c.TrustedNetworks = DefaultTrustedNetworks
	}
	if _, err := parsePrefixes(c.TrustedNetworks); err != nil {
		errs = append(errs, fmt.Errorf("trusted_networks: %v", err))
	}
	l := &c.Limits
	if l.AuthFailuresPerIP == nil {
		n := DefaultAuthFailuresPerIP
		l.AuthFailuresPerIP = &n
	}
	if l.AuthFailuresPerUser == nil {
		n := DefaultAuthFailuresPerUser
		l.AuthFailuresPerUser = &n
	}
	if l.AuthFailureWindow == 0 {
		l.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = 30 * time.Second
	}
	for key, n := range map[string]int{
		"limits.max_connections_per_ip": l.MaxConnectionsPerIP,
		"limits.auth_failures_per_ip":   *l.AuthFailuresPerIP, "limits.auth_failures_per_user": *l.AuthFailuresPerUser,
	} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", key))
		}
	}
	for name, u := range c.Upstreams {
		if name == "" || name == DefaultUpstreamName {
			errs = append(errs, fmt.Errorf("upstreams: %q is not a usable name", name))
		}
		errs = append(errs, u.check("upstreams."+name)...)
		c.Upstreams[name] = u
	}
	errs = append(errs, c.checkRoutes()...)
	return errs
}

// parsePrefixes parses CIDR prefixes; a bare address is a prefix of one.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p.Masked())
		} else if a, err2 := netip.ParseAddr(s); err2 == nil {
			ps = append(ps, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		} else {
			errs = append(errs, fmt.Errorf("%q is neither an address nor a CIDR prefix", s))
		}
	}
	return ps, errors.Join(errs...)
}

// netSet is a set of networks.
type netSet []netip.Prefix

func (s netSet) contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// addrIP is the IP address of a network address, or the zero Addr.
func addrIP(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// plaintextPolicy allows USER/PASS and AUTH PLAIN without TLS only from
// trusted_networks.
func (c *Config) plaintextPolicy() func(pop3front.ConnInfo) bool {
	nets, _ := parsePrefixes(c.TrustedNetworks) // checked by Check
	trusted := netSet(nets)
	return func(info pop3front.ConnInfo) bool { return trusted.contains(addrIP(info.RemoteAddr)) }
}

// ReloadCertificates reads every listener's certificate and key files
// again (for SIGHUP; changed files are also picked up by themselves within
// a second of the next handshake). On error the listeners keep their old
// certificates.
func (p *Proxy) ReloadCertificates() error {
	var errs []error
	for _, bl := range p.listeners {
		if bl.cert != nil {
			if err := bl.cert.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("listen %s: %w", bl.cfg.Address, err))
			}
		}
	}
	return errors.Join(errs...)
}
