package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

const rateLimitedAnswer = "-ERR [SYS/TEMP] Too many failed logins, try again later"

func intp(n int) *int { return &n }

func TestFailedLoginsPerAddressAreRateLimited(t *testing.T) {
	up := memUpstream(t)
	var logs testkit.LockedBuffer
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Limits.AuthFailuresPerIP = intp(2)
		c.Limits.AuthFailuresPerUser = intp(0)
	}, logs: &logs}).addrs
	c := pop3test.DialFrom(t, "127.0.0.2", addrs[0])
	for range 2 {
		c.OK("USER alice")
		if got := c.Cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR [AUTH]") {
			t.Fatalf("wrong password: %q", got)
		}
	}
	// The right password is not even tried now.
	c = pop3test.DialFrom(t, "127.0.0.2", addrs[0])
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); got != rateLimitedAnswer {
		t.Errorf("third login from 127.0.0.2: %q, want %q", got, rateLimitedAnswer)
	}
	if got := c.Cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="); got != rateLimitedAnswer {
		t.Errorf("AUTH PLAIN from 127.0.0.2: %q", got)
	}
	// Another address is not affected.
	c = pop3test.DialFrom(t, "127.0.0.3", addrs[0])
	c.Login("alice", "secret")
	c.Quit()
	if !strings.Contains(logs.String(), "too many failed logins from this address") {
		t.Error("no log line for the rate-limited login")
	}
}

func TestFailedLoginsPerUserAreRateLimitedExceptFromKnownAddresses(t *testing.T) {
	up := memUpstream(t)
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Limits.AuthFailuresPerIP = intp(0)
		c.Limits.AuthFailuresPerUser = intp(2)
	}}).addrs
	// alice's own device logs in from 127.0.0.1.
	c := pop3test.DialFrom(t, "127.0.0.1", addrs[0])
	c.Login("alice", "secret")
	c.Quit()
	// Someone guesses from two other addresses, with the user name in
	// another case.
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		c := pop3test.DialFrom(t, src, addrs[0])
		c.OK("USER ALICE")
		if got := c.Cmd("PASS guess"); !strings.HasPrefix(got, "-ERR [AUTH]") {
			t.Fatalf("guess from %s: %q", src, got)
		}
	}
	c = pop3test.DialFrom(t, "127.0.0.4", addrs[0])
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); got != rateLimitedAnswer {
		t.Errorf("alice from a new address after the guesses: %q, want %q", got, rateLimitedAnswer)
	}
	// The device that logged in before still can.
	c = pop3test.DialFrom(t, "127.0.0.1", addrs[0])
	c.Login("alice", "secret")
	c.Quit()
}

// The global connection limit left at its default is derived from the
// descriptor limit: two descriptors per session (client and upstream)
// after a headroom, so that accept never runs out of descriptors.
func TestMaxConnectionsDefaultFollowsTheDescriptorLimit(t *testing.T) {
	for _, c := range []struct{ configured, nofile, want int }{
		{0, 1024, (1024 - fdHeadroom) / 2},
		{0, 1 << 20, (1<<20 - fdHeadroom) / 2},
		{0, 10, 1},
		{0, 0, 0}, // unknown: no limit
		{500, 1024, 500},
		{config.NoLimit, 1024, 0},
	} {
		if got := maxConnections(c.configured, c.nofile); got != c.want {
			t.Errorf("maxConnections(%d, %d) = %d, want %d", c.configured, c.nofile, got, c.want)
		}
	}
	if descriptorLimit() <= fdHeadroom {
		t.Errorf("descriptor limit %d: the derived default would allow almost nothing", descriptorLimit())
	}
}

// greetingFrom connects to addr from the local address from and returns
// the first line the server sends; the connection stays open until the
// test ends.
func greetingFrom(t *testing.T, from, addr string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(nc).ReadString('\n')
	return line
}

func TestConnectionLimitsPerAddressAndTotal(t *testing.T) {
	up := memUpstream(t)
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP = 1
		c.Limits.MaxConnections = 2
	}}).addrs
	c1 := pop3test.DialFrom(t, "127.0.0.2", addrs[0])
	if line := greetingFrom(t, "127.0.0.2", addrs[0]); line != "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n" {
		t.Errorf("second connection from 127.0.0.2: %q", line)
	}
	c2 := pop3test.DialFrom(t, "127.0.0.3", addrs[0])
	if line := greetingFrom(t, "127.0.0.4", addrs[0]); line != "-ERR [SYS/TEMP] Too many connections, try again later\r\n" {
		t.Errorf("third connection in all: %q", line)
	}
	c1.Quit()
	c2.Quit()
}

// Two upstreams: logins are mapped by domain and by regex.
func TestRoutesMapLoginsToUpstreams(t *testing.T) {
	def := memUpstream(t) // alice/secret, one message
	corp := listenMem(t, memimap.Options{})
	corp.AddUser("bob", "corp-pw")
	for i := range 3 {
		corp.Append("bob", "INBOX", testMessage(i+1, "corp mail\r\n"))
	}
	var logs testkit.LockedBuffer
	addrs := startProxy(t, def.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Upstreams = map[string]config.UpstreamConfig{"corp": {Address: corp.Addr, TLS: "none"}}
		c.Routes = []config.RouteConfig{
			{Domain: "corp.example", Upstream: "corp", Login: "${local}"},
			{Regex: `(?P<name>[a-z]+)\+pop`, Login: "${name}"},
		}
	}, logs: &logs}).addrs
	for _, tc := range []struct {
		login, pass string
		want        int // messages, or -1 for a failed login
	}{
		{"bob@corp.example", "corp-pw", 3},
		{"bob@CORP.Example", "corp-pw", 3},
		{"alice+pop", "secret", 1},
		{"alice", "secret", 1},
		{"bob", "corp-pw", -1},               // no route: default upstream has no bob
		{"alice@corp.example", "secret", -1}, // corp has no alice
	} {
		c := pop3test.Dial(t, addrs[0])
		c.OK("USER " + tc.login)
		resp := c.Cmd("PASS " + tc.pass)
		if tc.want < 0 {
			if !strings.HasPrefix(resp, "-ERR [AUTH]") {
				t.Errorf("%s: %q, want -ERR [AUTH]", tc.login, resp)
			}
			continue
		}
		if !strings.HasPrefix(resp, "+OK") {
			t.Errorf("%s: %q", tc.login, resp)
			continue
		}
		if n, _ := c.Stat(); n != tc.want {
			t.Errorf("%s: %d messages, want %d", tc.login, n, tc.want)
		}
		c.Quit()
	}
}

func TestRouteConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		routes []config.RouteConfig
		want   string
	}{
		{[]config.RouteConfig{{}}, "exactly one of domain and regex"},
		{[]config.RouteConfig{{Domain: "a.example", Regex: "x"}}, "exactly one of domain and regex"},
		{[]config.RouteConfig{{Domain: "@a.example"}}, "without @"},
		{[]config.RouteConfig{{Regex: "("}}, "routes[0]"},
		{[]config.RouteConfig{{Domain: "a.example", Upstream: "nowhere"}}, "not in upstreams"},
		{[]config.RouteConfig{{Domain: "a.example", Login: "${user}"}}, "does not have"},
		{[]config.RouteConfig{{Regex: "(a)", Login: "$2"}}, "does not have"},
	} {
		cfg := &config.Config{Upstream: config.UpstreamConfig{Address: "127.0.0.1:143"}, Routes: tc.routes}
		if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Check() = %v, want %q", tc.routes, err, tc.want)
		}
	}
}

// proxyHeader writes a PROXY protocol header claiming src.
func proxyHeader(t *testing.T, nc net.Conn, version byte, src string) {
	t.Helper()
	s, _ := net.ResolveTCPAddr("tcp", src)
	h := &proxyproto.Header{
		Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr: s, DestinationAddr: nc.RemoteAddr(),
	}
	if _, err := h.WriteTo(nc); err != nil {
		t.Fatal(err)
	}
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return nc
}

// A load balancer at 127.0.0.1 sends PROXY headers: popbridge takes the
// client address from them, for the plaintext decision, limits and logs.
// A header from anyone else is refused.
func TestProxyProtocol(t *testing.T) {
	up := memUpstream(t)
	pki := newTestPKI(t)
	cert, key, _ := pki.issue("pop3", false)
	var logs testkit.LockedBuffer
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Listen = []config.ListenConfig{
			{Address: "127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"}},
			{Address: "127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"},
				TLS: "implicit", CertFile: cert, KeyFile: key},
		}
		c.TrustedNetworks = []string{"127.0.0.1/32", "198.51.100.0/24"}
		c.Limits.HandshakeTimeout = 500 * time.Millisecond
	}, logs: &logs}).addrs
	plain, implicit := addrs[0], addrs[1]

	for _, version := range []byte{1, 2} {
		// A client in a trusted network behind the proxy may log in in clear.
		nc := dialFrom(t, "127.0.0.1", plain)
		proxyHeader(t, nc, version, "198.51.100.7:40001")
		c := pop3test.NewClient(t, nc)
		c.Login("alice", "secret")
		c.Quit()
		// One from elsewhere may not, though the proxy itself is trusted.
		nc = dialFrom(t, "127.0.0.1", plain)
		proxyHeader(t, nc, version, "203.0.113.9:40002")
		c = pop3test.NewClient(t, nc)
		if got := c.Cmd("USER alice"); got != plaintextRefused {
			t.Errorf("v%d: USER from 203.0.113.9 behind the proxy: %q", version, got)
		}
		c.Quit()
		// Through TLS the header comes first, then the handshake.
		nc = dialFrom(t, "127.0.0.1", implicit)
		proxyHeader(t, nc, version, "203.0.113.10:40003")
		tc := tls.Client(nc, pki.clientConfig())
		c = pop3test.NewClient(t, tc)
		c.Login("alice", "secret")
		c.Quit()
	}
	if !strings.Contains(logs.String(), "remote=198.51.100.7:40001") || !strings.Contains(logs.String(), "remote=203.0.113.10:40003") {
		t.Errorf("logs do not show the client addresses from the PROXY headers:\n%s", logs.String())
	}

	t.Run("spoofed header from an untrusted address", func(t *testing.T) {
		for _, version := range []byte{1, 2} {
			nc := dialFrom(t, "127.0.0.2", plain)
			br := bufio.NewReader(nc)
			if g, _ := br.ReadString('\n'); !strings.HasPrefix(g, "+OK") {
				t.Fatalf("direct client got %q", g)
			}
			proxyHeader(t, nc, version, "127.0.0.1:1")
			nc.Write([]byte("USER alice\r\nPASS secret\r\n"))
			rest, _ := readAll(br)
			// v1 is refused outright; v2's signature makes the server
			// quit. Either way nothing after the header is served.
			if strings.Contains(rest, "password") || strings.Contains(rest, "Logged in") || !strings.HasSuffix(rest, "\r\n") {
				t.Errorf("v%d spoofed header: server answered %q", version, rest)
			}
		}
		if !strings.Contains(logs.String(), "PROXY protocol header not accepted") {
			t.Error("no log line for the spoofed v1 header")
		}
	})

	t.Run("direct client without header", func(t *testing.T) {
		c := pop3test.DialFrom(t, "127.0.0.2", plain)
		if got := c.Cmd("USER alice"); got != plaintextRefused {
			t.Errorf("USER from 127.0.0.2 directly: %q", got)
		}
	})

	t.Run("trusted proxy without header", func(t *testing.T) {
		nc := dialFrom(t, "127.0.0.1", plain)
		got, _ := readAll(bufio.NewReader(nc))
		if got != "" {
			t.Errorf("trusted proxy without a header got %q", got)
		}
	})
}

func TestUpstreamClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	pair := pki.serverPair("imap")
	cliCert, cliKey, _ := pki.issue("popbridge", true)
	up := listenMem(t, memimap.Options{
		ImplicitTLS: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Pool},
	})
	up.AddUser("alice", "secret")

	with := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.TLS, c.Upstream.CAFile = "implicit", pki.CAFile
		c.Upstream.CertFile, c.Upstream.KeyFile = cliCert, cliKey
	}}).addr
	c := pop3test.Dial(t, with)
	c.Login("alice", "secret")
	c.Quit()

	without := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.TLS, c.Upstream.CAFile = "implicit", pki.CAFile
	}}).addr
	c = pop3test.Dial(t, without)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Errorf("without a client certificate: %q", got)
	}
}

func TestInsecureSkipVerifyWorksAndWarns(t *testing.T) {
	pki := newTestPKI(t)
	pair := pki.serverPair("imap")
	up := listenMem(t, memimap.Options{ImplicitTLS: true, TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}})
	up.AddUser("alice", "secret")
	var logs testkit.LockedBuffer
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.TLS = "implicit" // no CA: only insecure_skip_verify lets this work
		c.Upstream.InsecureSkipVerify = true
	}, logs: &logs}).addrs
	c := pop3test.Dial(t, addrs[0])
	c.Login("alice", "secret")
	c.Quit()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecure_skip_verify") {
		t.Errorf("no warning about insecure_skip_verify:\n%s", logs.String())
	}
}

// readAll reads until the server closes (or resets) the connection.
func readAll(r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}

// Behind a trusted proxy, the rate limits count the client addresses
// from the PROXY headers, not the proxy's.
func TestRateLimitsUseTheAddressFromTheProxyHeader(t *testing.T) {
	up := memUpstream(t)
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Listen = []config.ListenConfig{{Address: "127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"}}}
		c.TrustedNetworks = []string{"198.51.100.0/24"}
		c.Limits.AuthFailuresPerIP = intp(1)
		c.Limits.AuthFailuresPerUser = intp(0)
	}}).addrs
	login := func(src, pass string) string {
		nc := dialFrom(t, "127.0.0.1", addrs[0])
		proxyHeader(t, nc, 2, src)
		c := pop3test.NewClient(t, nc)
		c.OK("USER alice")
		defer c.Quit()
		return c.Cmd("PASS " + pass)
	}
	if got := login("198.51.100.7:1000", "wrong"); !strings.HasPrefix(got, "-ERR [AUTH]") {
		t.Fatalf("wrong password: %q", got)
	}
	if got := login("198.51.100.7:1001", "secret"); got != rateLimitedAnswer {
		t.Errorf("198.51.100.7 after its failure: %q, want %q", got, rateLimitedAnswer)
	}
	if got := login("198.51.100.8:1000", "secret"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("198.51.100.8 through the same proxy: %q", got)
	}
}
