// Package authhttp asks an external HTTP service, speaking nginx's mail
// auth_http protocol, whether a POP3 login may proceed and where it goes.
//
// config.go holds the auth_http section of the YAML file and its checks.
package authhttp

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// Defaults applied by Check when the hook is on.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxConcurrent = 32
	DefaultMaxWait       = 10 * time.Second
	DefaultCacheSize     = 10000
)

// Config is the auth_http section. The hook is off when URL is empty.
type Config struct {
	// URL is the hook, http:// or https://. Its path and query are sent
	// as they are written.
	URL string `yaml:"url"`
	// CAFile verifies an https hook's certificate instead of the system
	// roots.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one exchange with the hook, connecting included, and
	// the wait for a free request slot.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent bounds the hook requests in flight at once.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Headers are sent with every request after the protocol's own, in
	// this order (nginx's auth_http_header), e.g. a shared secret.
	Headers []Header `yaml:"headers"`
	// PassClientCert sends the client's certificate, PEM and URL-escaped,
	// in Auth-SSL-Cert (nginx's auth_http_pass_client_cert).
	PassClientCert bool `yaml:"pass_client_cert"`
	// MaxWait caps an answer's Auth-Wait.
	MaxWait time.Duration `yaml:"max_wait"`
	// CacheTTL keeps positive answers that long; 0 (the default) turns
	// the cache off. Refusals and failures are never kept.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CacheSize bounds the answers kept.
	CacheSize int `yaml:"cache_size"`
	// Servers say how to speak TLS to the Auth-Server/Auth-Port of an
	// answer that names no upstream with X-Popbridge-Upstream. The first
	// entry that matches decides; an address no entry matches is refused.
	Servers []Server `yaml:"servers"`
}

// Header is one static request header. Exactly one of Value and
// ValueFile is set; ValueFile keeps a secret out of the YAML file (its
// content without the final line break is the value).
type Header struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFile string `yaml:"value_file"`
}

// Server is how to reach the upstream IMAP servers at one address or in
// one network. Exactly one of Address and Network is set.
type Server struct {
	// Address is an IP address and port, "10.0.0.5:993" or
	// "[2001:db8::5]:993", matched exactly.
	Address string `yaml:"address"`
	// Network is a CIDR prefix or a single IP address: any port matches.
	Network string `yaml:"network"`
	// TLS is implicit, starttls or none.
	TLS imapback.TLSMode `yaml:"tls"`
	// CAFile verifies the server's certificate instead of the system
	// roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the certificate must carry; empty: the
	// IP address of the answer.
	ServerName string `yaml:"server_name"`
}

// Enabled reports whether the hook is configured.
func (c *Config) Enabled() bool { return c.URL != "" }

// Check fills in the defaults and returns every problem, each naming
// its setting. A section without url must be empty.
func (c *Config) Check() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("auth_http.%s: "+format, append([]any{key}, args...)...))
	}
	if !c.Enabled() {
		if c.CAFile != "" || c.Timeout != 0 || c.MaxConcurrent != 0 || len(c.Headers) > 0 || c.PassClientCert ||
			c.MaxWait != 0 || c.CacheTTL != 0 || c.CacheSize != 0 || len(c.Servers) > 0 {
			bad("url", "required when other auth_http settings are given")
		}
		return errs
	}
	if u, err := url.Parse(c.URL); err != nil {
		bad("url", "%v", err)
	} else if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		bad("url", "%q: an http:// or https:// URL with a host and no user or fragment", c.URL)
	}
	if c.CAFile != "" {
		if !strings.HasPrefix(c.URL, "https://") {
			bad("ca_file", "only for an https:// url")
		} else if _, err := imapback.LoadCAFile(c.CAFile); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	positive := func(key string, d *time.Duration, def time.Duration) {
		switch {
		case *d == 0:
			*d = def
		case *d < 0:
			bad(key, "must be positive")
		}
	}
	positive("timeout", &c.Timeout, DefaultTimeout)
	positive("max_wait", &c.MaxWait, DefaultMaxWait)
	switch {
	case c.MaxConcurrent == 0:
		c.MaxConcurrent = DefaultMaxConcurrent
	case c.MaxConcurrent < 0:
		bad("max_concurrent", "must be positive")
	}
	if c.CacheTTL < 0 {
		bad("cache_ttl", "must not be negative (0 turns the cache off)")
	}
	switch {
	case c.CacheSize == 0:
		c.CacheSize = DefaultCacheSize
	case c.CacheSize < 0:
		bad("cache_size", "must be positive")
	}
	for i, h := range c.Headers {
		if _, err := h.value(); err != nil {
			bad(fmt.Sprintf("headers[%d]", i), "%v", err)
		}
	}
	for i, s := range c.Servers {
		if err := s.check(); err != nil {
			bad(fmt.Sprintf("servers[%d]", i), "%v", err)
		}
	}
	return errs
}

// ownHeaders are sent by the protocol itself: a static header must not
// repeat or forge one (compared in lower case).
var ownHeaders = []string{"host", "auth-method", "auth-user", "auth-pass", "auth-salt",
	"auth-protocol", "auth-login-attempt", "client-ip", "client-host",
	"proxy-protocol-addr", "proxy-protocol-port", "proxy-protocol-server-addr", "proxy-protocol-server-port",
	"auth-ssl", "auth-ssl-protocol", "auth-ssl-cipher", "auth-ssl-verify", "auth-ssl-subject",
	"auth-ssl-issuer", "auth-ssl-serial", "auth-ssl-fingerprint", "auth-ssl-cert"}

// value checks the header and returns its value, reading ValueFile.
func (h Header) value() (string, error) {
	if !validToken(h.Name) {
		return "", fmt.Errorf("name %q is not an HTTP header name", h.Name)
	}
	for _, own := range ownHeaders {
		if strings.EqualFold(h.Name, own) {
			return "", fmt.Errorf("name %q is a header the protocol sends itself", h.Name)
		}
	}
	v := h.Value
	switch {
	case (h.Value == "") == (h.ValueFile == ""):
		return "", errors.New("needs exactly one of value and value_file")
	case h.ValueFile != "":
		b, err := os.ReadFile(h.ValueFile)
		if err != nil {
			return "", fmt.Errorf("value_file: %v", err)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", fmt.Errorf("value_file %s is empty", h.ValueFile)
		}
	}
	if !safeValue(v) {
		return "", errors.New("value holds a control character or a line break")
	}
	return v, nil
}

// validToken reports whether s is an HTTP token (RFC 9110), as header
// names are.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (s Server) check() error {
	switch {
	case (s.Address == "") == (s.Network == ""):
		return errors.New("needs exactly one of address and network")
	case s.Address != "":
		if _, err := netip.ParseAddrPort(s.Address); err != nil {
			return fmt.Errorf("address %q: an IP address and port", s.Address)
		}
	default:
		if _, err := parseNetwork(s.Network); err != nil {
			return fmt.Errorf("network %q: a CIDR prefix or an IP address", s.Network)
		}
	}
	if !s.TLS.Valid() {
		modes := make([]string, len(imapback.TLSModes))
		for i, m := range imapback.TLSModes {
			modes[i] = string(m)
		}
		return fmt.Errorf("tls %q: one of %s", s.TLS, strings.Join(modes, ", "))
	}
	if s.CAFile != "" {
		if s.TLS == imapback.TLSNone {
			return errors.New("ca_file without tls")
		}
		if _, err := os.Stat(s.CAFile); err != nil {
			return fmt.Errorf("ca_file: %v", err)
		}
	}
	return nil
}

// parseNetwork reads a CIDR prefix or a single address as a prefix.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// matches reports whether the server entry covers addr.
func (s Server) matches(addr netip.AddrPort) bool {
	if s.Address != "" {
		want, err := netip.ParseAddrPort(s.Address)
		return err == nil && want.Addr().Unmap() == addr.Addr() && want.Port() == addr.Port()
	}
	p, err := parseNetwork(s.Network)
	return err == nil && p.Contains(addr.Addr())
}
