package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// The listeners, the upstreams and the network lists: their defaults and
// checks.

// ListenTLS says how a POP3 listener offers TLS.
type ListenTLS string

// Listener TLS modes.
const (
	ListenTLSNone     ListenTLS = "none"     // plain POP3; passwords in clear unless the client is trusted
	ListenTLSStartTLS ListenTLS = "starttls" // plain POP3 offering STLS (RFC 2595)
	ListenTLSImplicit ListenTLS = "implicit" // POP3S: TLS from the first byte (RFC 8314, port 995)
)

// ListenTLSModes lists every valid ListenTLS.
var ListenTLSModes = []ListenTLS{ListenTLSNone, ListenTLSStartTLS, ListenTLSImplicit}

// ListenVerify says whether a TLS listener asks clients for certificates,
// with nginx's ssl_verify_client values.
type ListenVerify string

// Client certificate modes.
const (
	ListenVerifyOff      ListenVerify = "off"            // not asked for (the default)
	ListenVerifyOn       ListenVerify = "on"             // required, and verified against client_ca_file
	ListenVerifyOptional ListenVerify = "optional"       // verified when sent
	ListenVerifyNoCA     ListenVerify = "optional_no_ca" // asked for, not verified: the hook decides
)

// ListenVerifyModes lists every valid ListenVerify.
var ListenVerifyModes = []ListenVerify{ListenVerifyOff, ListenVerifyOn, ListenVerifyOptional, ListenVerifyNoCA}

// ClientAuth is the checked verify_client as a crypto/tls constant.
func (l *ListenConfig) ClientAuth() tls.ClientAuthType {
	switch l.VerifyClient {
	case ListenVerifyOn:
		return tls.RequireAndVerifyClientCert
	case ListenVerifyOptional:
		return tls.VerifyClientCertIfGiven
	case ListenVerifyNoCA:
		return tls.RequestClientCert
	}
	return tls.NoClientCert
}

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

// TLSVersion is the checked min_version as a crypto/tls constant.
func (l *ListenConfig) TLSVersion() uint16 { return tlsVersions[l.MinVersion] }

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
	if err := oneOf(key+".tls", l.TLS, ListenTLSModes); err != nil {
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
	errs = append(errs, l.checkVerify(key)...)
	if _, err := ParseNetworks(l.TrustedProxies); err != nil {
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

// checkVerify fills in and validates verify_client and client_ca_file.
func (l *ListenConfig) checkVerify(key string) []error {
	if l.VerifyClient == "" {
		l.VerifyClient = ListenVerifyOff
	}
	if err := oneOf(key+".verify_client", l.VerifyClient, ListenVerifyModes); err != nil {
		return []error{err}
	}
	verifies := l.VerifyClient == ListenVerifyOn || l.VerifyClient == ListenVerifyOptional
	switch {
	case l.VerifyClient != ListenVerifyOff && l.TLS == ListenTLSNone:
		return []error{fmt.Errorf("%s: verify_client: %s needs tls: starttls or implicit", key, l.VerifyClient)}
	case verifies && l.ClientCAFile == "":
		return []error{fmt.Errorf("%s: verify_client: %s needs client_ca_file", key, l.VerifyClient)}
	case !verifies && l.ClientCAFile != "":
		return []error{fmt.Errorf("%s: client_ca_file needs verify_client: on or optional", key)}
	case l.ClientCAFile != "":
		if _, err := imapback.LoadCAFile(l.ClientCAFile); err != nil {
			return []error{fmt.Errorf("%s.client_ca_file: %v", key, err)}
		}
	}
	return nil
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
		u.TLS = imapback.TLSStartTLS
		if port == "993" {
			u.TLS = imapback.TLSImplicit
		}
	}
	if u.TLS != "" && !u.TLS.Valid() { // "": the address is wrong, and said so
		errs = append(errs, fmt.Errorf("%s.tls: %q is not one of %s", key, u.TLS, join(imapback.TLSModes)))
	}
	if u.Auth == "auto" {
		u.Auth = imapback.AuthAuto
	}
	if !u.Auth.Valid() {
		errs = append(errs, fmt.Errorf("%s.auth: %q is not one of auto%s", key, u.Auth, join(imapback.AuthMechanisms)))
	}
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
	errs = append(errs, checkMailboxes(key, u.Mailbox, u.Mailboxes)...)
	if u.Mailbox == "" && len(u.Mailboxes) == 0 {
		u.Mailbox = imapback.DefaultMailbox
	}
	if u.DialTimeout == 0 {
		u.DialTimeout = imapback.DefaultDialTimeout
	}
	if u.CommandTimeout == 0 {
		u.CommandTimeout = imapback.DefaultCommandTimeout
	}
	errs = append(errs, u.checkBounds(key)...)
	for name, d := range map[string]time.Duration{".dial_timeout": u.DialTimeout, ".command_timeout": u.CommandTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s%s: must not be negative", key, name))
		}
	}
	return errs
}

// checkSecurity fills in and validates trusted_networks, the per-address
// and per-user limits, the named upstreams and the routes.
func (c *Config) checkSecurity() []error {
	var errs []error
	if c.TrustedNetworks == nil {
		c.TrustedNetworks = DefaultTrustedNetworks
	}
	if _, err := ParseNetworks(c.TrustedNetworks); err != nil {
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
		"limits.auth_failures_per_ip": *l.AuthFailuresPerIP, "limits.auth_failures_per_user": *l.AuthFailuresPerUser,
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

// ParseNetwork parses a CIDR prefix or a bare address (a prefix of one).
// IPv4-mapped IPv6 forms are unmapped, so that ::ffff:10.0.0.1 and
// ::ffff:10.0.0.0/104 mean what 10.0.0.1 and 10.0.0.0/8 mean: clients
// are matched by their unmapped address.
func ParseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
}

// ParseNetworks parses every entry of list with ParseNetwork.
func ParseNetworks(list []string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	var errs []error
	for _, s := range list {
		p, err := ParseNetwork(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps = append(ps, p)
	}
	return ps, errors.Join(errs...)
}
