// request_test.go checks the request bytes against what nginx's mail
// module sends, header by header and in order, and the escaping.

package authhttp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/pop3front"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// popReply is the POP3 reply text an error gets, without "-ERR ".
func popReply(err error) string {
	var pe *pop3front.Error
	if !errors.As(err, &pe) {
		return ""
	}
	return pe.Error()
}

func TestRequestPlainConnection(t *testing.T) {
	h := startHook(t, accept)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(h)
	cfg.URL += "?site=a%20b"
	cfg.Headers = []Header{{Name: "X-Auth-Key", Value: "k1"}, {Name: "X-Secret", ValueFile: secret}}
	c, _ := newClient(t, cfg, Options{})
	r := Request{User: "alice", Pass: "s3cret", LoginAttempt: 2, ClientIP: ip("192.0.2.7")}
	if _, err := c.Login(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	want := "GET /auth?site=a%20b HTTP/1.0\r\n" +
		"Host: " + h.srv.Addr + "\r\n" +
		"Auth-Method: plain\r\n" +
		"Auth-User: alice\r\n" +
		"Auth-Pass: s3cret\r\n" +
		"Auth-Protocol: pop3\r\n" +
		"Auth-Login-Attempt: 2\r\n" +
		"Client-IP: 192.0.2.7\r\n" +
		"X-Auth-Key: k1\r\n" +
		"X-Secret: from-file\r\n" +
		"\r\n"
	if got := h.requests(); len(got) != 1 || got[0] != want {
		t.Fatalf("request:\n%q\nwant:\n%q", got, want)
	}
}

// clientCert makes a client certificate with a known serial and names.
func clientCert(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x0102ab),
		Subject:      pkix.Name{CommonName: "scanner", Organization: []string{"Example"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestRequestTLSAndProxy(t *testing.T) {
	h := startHook(t, accept)
	cfg := testConfig(h)
	cfg.PassClientCert = true
	c, _ := newClient(t, cfg, Options{})
	cert := clientCert(t)
	state := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	r := Request{User: "bob", Pass: "pw", ClientIP: ip("2001:db8::7"), ClientHost: "client.example.net",
		TLS:   &TLSInfo{State: state, VerifyClient: true},
		Proxy: &ProxyInfo{Source: netip.MustParseAddrPort("[2001:db8::7]:40000"), Dest: netip.MustParseAddrPort("198.51.100.1:995")}}
	if _, err := c.Login(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(cert.Raw)
	pemText := "-----BEGIN%20CERTIFICATE-----%0A"
	want := "GET /auth HTTP/1.0\r\n" +
		"Host: " + h.srv.Addr + "\r\n" +
		"Auth-Method: plain\r\n" +
		"Auth-User: bob\r\n" +
		"Auth-Pass: pw\r\n" +
		"Auth-Protocol: pop3\r\n" +
		"Auth-Login-Attempt: 1\r\n" +
		"Client-IP: 2001:db8::7\r\n" +
		"Client-Host: client.example.net\r\n" +
		"Proxy-Protocol-Addr: 2001:db8::7\r\n" +
		"Proxy-Protocol-Port: 40000\r\n" +
		"Proxy-Protocol-Server-Addr: 198.51.100.1\r\n" +
		"Proxy-Protocol-Server-Port: 995\r\n" +
		"Auth-SSL: on\r\n" +
		"Auth-SSL-Protocol: TLSv1.3\r\n" +
		"Auth-SSL-Cipher: TLS_AES_128_GCM_SHA256\r\n" +
		"Auth-SSL-Verify: SUCCESS\r\n" +
		"Auth-SSL-Subject: CN=scanner,O=Example\r\n" +
		"Auth-SSL-Issuer: CN=scanner,O=Example\r\n" +
		"Auth-SSL-Serial: 0102AB\r\n" +
		fmt.Sprintf("Auth-SSL-Fingerprint: %x\r\n", sum) +
		"Auth-SSL-Cert: " + pemText
	got := h.requests()[0]
	if !strings.HasPrefix(got, want) {
		t.Fatalf("request:\n%q\nwant a start of:\n%q", got, want)
	}
	rest := strings.TrimPrefix(got, want)
	certValue, tail, _ := strings.Cut(rest, "\r\n")
	if tail != "\r\n" || strings.ContainsAny(certValue, " \n") || !strings.HasSuffix(certValue, "-----END%20CERTIFICATE-----%0A") {
		t.Fatalf("Auth-SSL-Cert and end: %q", rest)
	}
	// The certificate decodes back to the PEM of the client's certificate.
	dec, err := url.PathUnescape(pemText + certValue)
	if err != nil || !strings.Contains(dec, "\n") {
		t.Fatalf("certificate does not unescape: %v", err)
	}
}

func TestRequestClientCertificateStates(t *testing.T) {
	h := startHook(t, accept)
	c, _ := newClient(t, testConfig(h), Options{})
	cert := clientCert(t)
	for _, tc := range []struct {
		name   string
		info   *TLSInfo
		want   string // the TLS part of the request
		absent string
	}{
		{"no state", &TLSInfo{}, "Auth-SSL: on\r\n\r\n", ""},
		{"not verifying", &TLSInfo{State: &tls.ConnectionState{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, PeerCertificates: []*x509.Certificate{cert}}},
			"Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv1.2\r\nAuth-SSL-Cipher: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\r\n\r\n", ""},
		{"no certificate", &TLSInfo{State: &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384}, VerifyClient: true},
			"Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\nAuth-SSL-Verify: NONE\r\n\r\n", ""},
		{"unverified", &TLSInfo{State: &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{cert}}, VerifyClient: true},
			"Auth-SSL-Verify: FAILED:certificate not verified\r\nAuth-SSL-Subject: CN=scanner,O=Example\r\n", "Auth-SSL-Cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(h.requests())
			if _, err := c.Login(t.Context(), Request{User: "u", Pass: "p", ClientIP: ip("192.0.2.1"), TLS: tc.info}); err != nil {
				t.Fatal(err)
			}
			got := h.requests()[n]
			if !strings.Contains(got, "Client-IP: 192.0.2.1\r\nAuth-SSL: on\r\n") || !strings.Contains(got, tc.want) {
				t.Fatalf("request:\n%q\nwant it to hold %q", got, tc.want)
			}
			if tc.absent != "" && strings.Contains(got, tc.absent) {
				t.Fatalf("request holds %s without pass_client_cert", tc.absent)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com": "alice@example.com",
		"a b":               "a%20b",
		"100%":              "100%25",
		"a+b=c&d?e#f/g":     "a+b=c&d?e#f/g",
		"\x00\t\r\n\x1f":    "%00%09%0D%0A%1F",
		"\x7f":              "\x7f",
		"jürgen":            "jürgen",
		"%20":               "%2520",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOddCredentials sends awkward user names and passwords through a
// hook that decodes them as a hook should (%XX only, '+' stays).
func TestOddCredentials(t *testing.T) {
	decoded := make(chan [2]string, 1)
	h := startHook(t, func(req *http.Request) string {
		u, err1 := url.PathUnescape(req.Header.Get("Auth-User"))
		p, err2 := url.PathUnescape(req.Header.Get("Auth-Pass"))
		if err1 != nil || err2 != nil {
			return ok200("Auth-Status: undecodable")
		}
		decoded <- [2]string{u, p}
		return accept(req)
	})
	c, _ := newClient(t, testConfig(h), Options{})
	for _, cred := range [][2]string{
		{"john smith", "pass word"},
		{"50%off", "100%%"},
		{"a+b@example.com", "x+y=z"},
		{"jürgen@bücher.de", "pässwörd€"},
		{"tab\tuser", " leading and trailing "},
	} {
		a, err := login(c, cred[0], cred[1])
		if err != nil {
			t.Fatalf("%q: %v", cred, err)
		}
		if got := <-decoded; got != cred {
			t.Errorf("hook decoded %q, want %q", got, cred)
		}
		if a.User != cred[0] || a.Pass != cred[1] {
			t.Errorf("answer credentials %q %q, want the client's", a.User, a.Pass)
		}
	}
}

func TestRequestRefusesBrokenClientHost(t *testing.T) {
	h := startHook(t, accept)
	c, obs := newClient(t, testConfig(h), Options{})
	_, err := c.Login(t.Context(), Request{User: "u", Pass: "p", ClientIP: ip("192.0.2.1"), ClientHost: "evil\r\nAuth-Status: OK"})
	wantUnavailable(t, err, ResultMalformed)
	if len(h.requests()) != 0 || obs.list() != ResultMalformed {
		t.Fatalf("requests %d, observed %q", len(h.requests()), obs.list())
	}
}

func TestRequestFor(t *testing.T) {
	r := RequestFor("u", "p", pop3front.ConnInfo{RemoteAddr: &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.9"), Port: 5000}, TLS: true}, false)
	if r.ClientIP != ip("192.0.2.9") || r.TLS == nil || r.LoginAttempt != 1 || r.User != "u" || r.Pass != "p" {
		t.Fatalf("RequestFor = %+v", r)
	}
	// Behind a PROXY header: its addresses, unmapped, and the
	// certificate headers when the listener asks for certificates.
	r = RequestFor("u", "p", pop3front.ConnInfo{Proxied: true, TLS: true,
		RemoteAddr: &net.TCPAddr{IP: net.ParseIP("::ffff:198.51.100.7"), Port: 40001},
		LocalAddr:  &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 995}}, true)
	want := ProxyInfo{Source: netip.MustParseAddrPort("198.51.100.7:40001"), Dest: netip.MustParseAddrPort("[2001:db8::1]:995")}
	if r.Proxy == nil || *r.Proxy != want || !r.TLS.VerifyClient || r.ClientIP != ip("198.51.100.7") {
		t.Fatalf("RequestFor behind a PROXY header = %+v, %+v", r, r.Proxy)
	}
	// Without a header, or without addresses, none is claimed.
	if r := RequestFor("u", "p", pop3front.ConnInfo{RemoteAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.9"), Port: 5000},
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 110}}, false); r.Proxy != nil {
		t.Fatalf("RequestFor without a PROXY header claims one: %+v", r.Proxy)
	}
	if r := RequestFor("u", "p", pop3front.ConnInfo{Proxied: true}, false); r.Proxy != nil {
		t.Fatalf("RequestFor without addresses: %+v", r.Proxy)
	}
}

func TestRequestWithoutClientAddress(t *testing.T) {
	h := startHook(t, accept)
	c, _ := newClient(t, testConfig(h), Options{})
	if _, err := c.Login(t.Context(), Request{User: "u", Pass: "p"}); err != nil {
		t.Fatal(err)
	}
	if got := h.requests()[0]; !strings.Contains(got, "\r\nAuth-Login-Attempt: 1\r\nClient-IP: \r\n\r\n") {
		t.Fatalf("request %q", got)
	}
}
