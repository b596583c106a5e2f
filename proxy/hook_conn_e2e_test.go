package proxy

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// What popbridge learns about the client's connection, through real
// listeners: the auth_http hook gets the client certificate on a listener
// that asks for one and the addresses a PROXY protocol header named, and
// a rule for a PROXY listener applies to its connections.

// loginAndAsk logs in as alice on c and returns the one request the hook
// got for it.
func loginAndAsk(t *testing.T, hook *testHook, c *pop3test.Client) http.Header {
	t.Helper()
	n := len(hook.requests())
	c.Login("alice", "secret")
	c.Quit()
	reqs := hook.requests()
	if len(reqs) != n+1 {
		t.Fatalf("%d hook requests, want %d", len(reqs), n+1)
	}
	return reqs[n]
}

// wantHeaders checks every header of want in req; "" means absent.
func wantHeaders(t *testing.T, what string, req http.Header, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got, ok := req[http.CanonicalHeaderKey(name)]; v == "" && ok {
			t.Errorf("%s: %s %q, want none", what, name, got)
		} else if v != "" && req.Get(name) != v {
			t.Errorf("%s: %s %q, want %q", what, name, req.Get(name), v)
		}
	}
}

// A POP3S listener with verify_client: on passes the client's verified
// certificate as nginx does; one with optional says NONE for a client
// without one; one that asks for none sends no certificate headers.
func TestHookLearnsTheClientCertificate(t *testing.T) {
	up := memUpstream(t)
	hook := startTestHook(t, func(req http.Header) map[string]string {
		return okAt(t, up.Addr, "X-Popbridge-Upstream", "default")
	})
	pki := newTestPKI(t)
	cert, key, _ := pki.issue("pop3", false)
	clientCert, clientKey, serial := pki.issue("scanner", true)
	addrs := startProxy(t, "", withHook(hook.url, func(c *config.Config) {
		// Distinct addresses: the hook finds a listener's settings by its
		// configured address.
		c.Listen = []config.ListenConfig{
			{Address: testkit.FreeAddr(t), TLS: "implicit", CertFile: cert, KeyFile: key, VerifyClient: "on", ClientCAFile: pki.CAFile},
			{Address: testkit.FreeAddr(t), TLS: "starttls", CertFile: cert, KeyFile: key, VerifyClient: "optional", ClientCAFile: pki.CAFile},
			{Address: testkit.FreeAddr(t), TLS: "implicit", CertFile: cert, KeyFile: key},
		}
		c.AuthHTTP.PassClientCert = true
	})).addrs

	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := pki.clientConfig()
	withCert.Certificates = []tls.Certificate{pair}
	req := loginAndAsk(t, hook, pop3test.DialTLS(t, addrs[0], withCert))
	sum := sha1.Sum(pair.Certificate[0])
	wantHeaders(t, "verify_client on", req, map[string]string{
		"Auth-SSL": "on", "Auth-SSL-Verify": "SUCCESS",
		"Auth-SSL-Subject": "CN=scanner", "Auth-SSL-Issuer": "CN=popbridge test CA",
		"Auth-SSL-Serial":      fmt.Sprintf("%02X", serial),
		"Auth-SSL-Fingerprint": hex.EncodeToString(sum[:]),
	})
	pemFile, err := os.ReadFile(clientCert)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := url.PathUnescape(req.Get("Auth-SSL-Cert")); err != nil || got != string(pemFile) {
		t.Errorf("Auth-SSL-Cert %q (%v), want the client's PEM, escaped", req.Get("Auth-SSL-Cert"), err)
	}

	c := pop3test.Dial(t, addrs[1])
	c.STLS(pki.clientConfig())
	wantHeaders(t, "verify_client optional, no certificate", loginAndAsk(t, hook, c), map[string]string{
		"Auth-SSL": "on", "Auth-SSL-Verify": "NONE", "Auth-SSL-Subject": "", "Auth-SSL-Cert": ""})

	wantHeaders(t, "verify_client off", loginAndAsk(t, hook, pop3test.DialTLS(t, addrs[2], withCert)), map[string]string{
		"Auth-SSL": "on", "Auth-SSL-Verify": "", "Auth-SSL-Subject": "", "Auth-SSL-Cert": ""})
}

// Behind a PROXY protocol listener the hook gets the header's addresses
// in nginx's Proxy-Protocol-* headers, and Client-IP is the client the
// header named; a client the proxy does not speak for gets none.
func TestHookLearnsThePROXYHeader(t *testing.T) {
	up := memUpstream(t)
	hook := startTestHook(t, func(req http.Header) map[string]string {
		return okAt(t, up.Addr, "X-Popbridge-Upstream", "default")
	})
	addr := startProxy(t, "", withHook(hook.url, func(c *config.Config) {
		c.Listen = []config.ListenConfig{{Address: "127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"}}}
		c.TrustedNetworks = []string{"127.0.0.0/8", "198.51.100.0/24"}
	})).addr

	for _, version := range []byte{1, 2} {
		nc := dialFrom(t, "127.0.0.1", addr)
		proxyHeader(t, nc, version, "198.51.100.7:40001")
		_, port, _ := net.SplitHostPort(addr)
		wantHeaders(t, fmt.Sprintf("PROXY v%d", version), loginAndAsk(t, hook, pop3test.NewClient(t, nc)), map[string]string{
			"Client-IP": "198.51.100.7", "Proxy-Protocol-Addr": "198.51.100.7", "Proxy-Protocol-Port": "40001",
			"Proxy-Protocol-Server-Addr": "127.0.0.1", "Proxy-Protocol-Server-Port": port, "Auth-SSL": ""})
	}
	wantHeaders(t, "direct client", loginAndAsk(t, hook, pop3test.DialFrom(t, "127.0.0.2", addr)), map[string]string{
		"Client-IP": "127.0.0.2", "Proxy-Protocol-Addr": "", "Proxy-Protocol-Server-Addr": ""})
}

// A rule for a PROXY protocol listener applies to the connections that
// came through it: the listener is the socket's address, not the one the
// header says the client connected to (the load balancer's).
func TestRuleForAPROXYListener(t *testing.T) {
	up := memUpstream(t)
	addr := testkit.FreeAddr(t)
	startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Listen = []config.ListenConfig{{Address: addr, ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"}}}
		c.Policy.Rules = []config.PolicyRule{{Listen: []string{addr}, Delete: "keep"}}
	}})
	// The load balancer listens on 198.51.100.1:110.
	viaProxy := func() *pop3test.Client {
		nc := dialFrom(t, "127.0.0.1", addr)
		h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
			SourceAddr:      &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40001},
			DestinationAddr: &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 110}}
		if _, err := h.WriteTo(nc); err != nil {
			t.Fatal(err)
		}
		c := pop3test.NewClient(t, nc)
		c.Login("alice", "secret")
		return c
	}
	c := viaProxy()
	c.OK("DELE 1")
	c.Quit()
	c = viaProxy()
	if n, _ := c.Stat(); n != 1 {
		t.Errorf("after DELE and QUIT on the listener whose rule keeps mail: %d messages, want 1", n)
	}
	c.Quit()
}
