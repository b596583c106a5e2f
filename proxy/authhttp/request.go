// request.go holds what a login tells the hook (Request) and the bytes
// of the HTTP request that carries it, written as nginx's mail module
// writes them: the same header names, order and escaping.

package authhttp

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/pop3front"
)

// Request is one login as the hook sees it.
type Request struct {
	// User and Pass are the credentials the client sent (USER/PASS, AUTH
	// PLAIN or AUTH LOGIN: nginx calls all three "plain").
	User, Pass string
	// LoginAttempt counts the logins on this connection, 1 for the first
	// (Auth-Login-Attempt). 0 is sent as 1.
	LoginAttempt int
	// ClientIP is the client's address (Client-IP): with the PROXY
	// protocol, the address the proxy reported.
	ClientIP netip.Addr
	// ClientHost is the client's host name when known (Client-Host).
	ClientHost string
	// TLS is set when the client connection uses TLS.
	TLS *TLSInfo
	// Proxy is set when the PROXY protocol supplied the addresses.
	Proxy *ProxyInfo
}

// TLSInfo describes the client's TLS connection.
type TLSInfo struct {
	// State gives Auth-SSL-Protocol and Auth-SSL-Cipher and the client
	// certificate; nil sends only "Auth-SSL: on".
	State *tls.ConnectionState
	// VerifyClient: the listener asks clients for certificates (nginx's
	// ssl_verify_client), so the certificate headers are sent.
	VerifyClient bool
}

// ProxyInfo is what a PROXY protocol header said.
type ProxyInfo struct {
	// Source is the client's address and port, Dest the address and port
	// it connected to.
	Source, Dest netip.AddrPort
}

// RequestFor fills a Request from what pop3front passes to Backend.Login:
// the client address, the attempt count, the addresses a PROXY header
// named and the TLS state. verifyClient says whether the listener asks
// clients for certificates, which pop3front does not know.
func RequestFor(user, pass string, info pop3front.ConnInfo, verifyClient bool) Request {
	r := Request{User: user, Pass: pass, LoginAttempt: max(info.LoginAttempt, 1), ClientIP: pop3front.AddrIP(info.RemoteAddr)}
	if info.TLS {
		r.TLS = &TLSInfo{State: info.TLSState, VerifyClient: verifyClient}
	}
	if info.Proxied {
		src, okSrc := addrPort(info.RemoteAddr)
		dst, okDst := addrPort(info.LocalAddr)
		if okSrc && okDst {
			r.Proxy = &ProxyInfo{Source: src, Dest: dst}
		}
	}
	return r
}

// addrPort returns a's IP address, unmapped, and port.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ip := pop3front.AddrIP(a)
	if !ip.IsValid() {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ip, ap.Port()), err == nil
}

// cacheKey lists the parts of the request a cached answer is keyed on.
func (r *Request) cacheKey() []string {
	return []string{r.User, r.Pass, r.ClientIP.String(), strconv.FormatBool(r.TLS != nil)}
}

// requestHead writes the request: "GET <uri> HTTP/1.0", Host, the
// protocol's headers in nginx's order, the static headers, the blank
// line. It fails only on a value that could break the request's framing.
func (c *Client) requestHead(r *Request) ([]byte, error) {
	var b strings.Builder
	line := func(name, value string) {
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	b.WriteString("GET " + c.uri + " HTTP/1.0\r\n")
	line("Host", c.host)
	line("Auth-Method", "plain")
	line("Auth-User", escape(r.User))
	line("Auth-Pass", escape(r.Pass))
	line("Auth-Protocol", "pop3")
	line("Auth-Login-Attempt", strconv.Itoa(max(r.LoginAttempt, 1)))
	clientIP := "" // no address known, as for a Unix socket
	if r.ClientIP.IsValid() {
		clientIP = r.ClientIP.String()
	}
	line("Client-IP", clientIP)
	if r.ClientHost != "" {
		if !safeValue(r.ClientHost) {
			return nil, fmt.Errorf("client host %q holds a control character", r.ClientHost)
		}
		line("Client-Host", r.ClientHost)
	}
	if p := r.Proxy; p != nil {
		line("Proxy-Protocol-Addr", p.Source.Addr().String())
		line("Proxy-Protocol-Port", strconv.Itoa(int(p.Source.Port())))
		line("Proxy-Protocol-Server-Addr", p.Dest.Addr().String())
		line("Proxy-Protocol-Server-Port", strconv.Itoa(int(p.Dest.Port())))
	}
	if t := r.TLS; t != nil {
		b.WriteString("Auth-SSL: on\r\n")
		if s := t.State; s != nil {
			if v := tlsProtocol(s.Version); v != "" {
				line("Auth-SSL-Protocol", v)
			}
			if s.CipherSuite != 0 {
				line("Auth-SSL-Cipher", tls.CipherSuiteName(s.CipherSuite))
			}
		}
		if t.VerifyClient {
			c.writeCert(line, t.State)
		}
	}
	for _, h := range c.headers {
		line(h[0], h[1])
	}
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

// writeCert writes the client certificate headers as nginx does when the
// listener verifies clients: Auth-SSL-Verify always, the rest when the
// client sent a certificate.
func (c *Client) writeCert(line func(name, value string), s *tls.ConnectionState) {
	if s == nil || len(s.PeerCertificates) == 0 {
		line("Auth-SSL-Verify", "NONE")
		return
	}
	if len(s.VerifiedChains) > 0 {
		line("Auth-SSL-Verify", "SUCCESS")
	} else {
		line("Auth-SSL-Verify", "FAILED:certificate not verified")
	}
	cert := s.PeerCertificates[0]
	line("Auth-SSL-Subject", cert.Subject.String())
	line("Auth-SSL-Issuer", cert.Issuer.String())
	line("Auth-SSL-Serial", serial(cert.SerialNumber.Bytes()))
	sum := sha1.Sum(cert.Raw)
	line("Auth-SSL-Fingerprint", hex.EncodeToString(sum[:]))
	if c.passClientCert {
		line("Auth-SSL-Cert", escape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))))
	}
}

// serial writes a certificate serial number as OpenSSL's
// i2a_ASN1_INTEGER: upper-case hex, two digits a byte, "00" for zero.
func serial(b []byte) string {
	if len(b) == 0 {
		return "00"
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

// tlsProtocol names a TLS version as OpenSSL does, or is empty.
func tlsProtocol(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return ""
}

// escape URL-escapes s as nginx's NGX_ESCAPE_MAIL_AUTH: only the control
// characters 0x00-0x1F, space and '%' become %XX (upper-case hex). Every
// other byte, '+' and non-ASCII UTF-8 included, is sent as it is, so a
// hook must decode %XX and must not turn '+' into a space.
func escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// safeValue reports whether s can be a header value as it is.
func safeValue(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
