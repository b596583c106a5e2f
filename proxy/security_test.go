package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

const plaintextRefused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use STLS or POP3S"

// memUpstream is a memimap server with alice/secret and one message.
func memUpstream(t *testing.T) *memimap.Server {
	t.Helper()
	srv := listenMem(t, memimap.Options{})
	srv.AddUser("alice", "secret")
	if err := srv.Append("alice", "INBOX", testMessage(1, "hello over TLS\r\n")); err != nil {
		t.Fatal(err)
	}
	return srv
}

// listenMem starts an in-memory IMAP upstream with opts, closed when the
// test ends.
func listenMem(t *testing.T, opts memimap.Options) *memimap.Server {
	t.Helper()
	srv, err := memimap.Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// tlsListeners configures one STLS and one POP3S listener with a
// certificate from pki.
func tlsListeners(pki *testPKI) func(*config.Config) {
	cert, key, _ := pki.issue("pop3", false)
	return func(c *config.Config) {
		c.Listen = []config.ListenConfig{
			{Address: "127.0.0.1:0", TLS: "starttls", CertFile: cert, KeyFile: key},
			{Address: "127.0.0.1:0", TLS: "implicit", CertFile: cert, KeyFile: key},
		}
		c.TrustedNetworks = []string{"127.0.0.1/32"}
	}
}

// Plaintext logins are refused from an untrusted address (127.0.0.2 when
// only 127.0.0.1 is trusted) until the client has TLS, and CAPA says so.
func TestPlaintextAuthOnlyFromTrustedNetworksOrOverTLS(t *testing.T) {
	up := memUpstream(t)
	pki := newTestPKI(t)
	addrs := startProxy(t, up.Addr, proxyOptions{configure: tlsListeners(pki)}).addrs
	stls, pop3s := addrs[0], addrs[1]

	c := pop3test.DialFrom(t, "127.0.0.2", stls)
	c.Send("CAPA")
	if capa := string(c.Data()); strings.Contains(capa, "USER") || strings.Contains(capa, "SASL") || !strings.Contains(capa, "STLS") {
		t.Errorf("CAPA to an untrusted plain connection:\n%s", capa)
	}
	if got := c.Cmd("USER alice"); got != plaintextRefused {
		t.Errorf("USER from 127.0.0.2: %q", got)
	}
	if got := c.Cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="); got != plaintextRefused {
		t.Errorf("AUTH PLAIN from 127.0.0.2: %q", got)
	}
	c.STLS(pki.clientConfig())
	c.Send("CAPA")
	if capa := string(c.Data()); !strings.Contains(capa, "USER") || strings.Contains(capa, "STLS") {
		t.Errorf("CAPA after STLS:\n%s", capa)
	}
	c.Login("alice", "secret")
	if n, _ := c.Stat(); n != 1 {
		t.Errorf("STAT after STLS login: %d messages", n)
	}
	c.Quit()

	// The trusted address may log in without TLS.
	c = pop3test.DialFrom(t, "127.0.0.1", stls)
	c.Login("alice", "secret")
	c.Quit()

	// POP3S from the untrusted address.
	c = pop3test.DialTLS(t, pop3s, pki.clientConfig())
	c.Login("alice", "secret")
	c.Quit()
}

// curl and Python's poplib, real TLS clients, over STLS and POP3S from
// an untrusted address.
func TestRealClientsOverSTLSAndPOP3S(t *testing.T) {
	curl := testkit.Program(t, "curl")
	python := testkit.Program(t, "python3")
	up := memUpstream(t)
	pki := newTestPKI(t)
	addrs := startProxy(t, up.Addr, proxyOptions{configure: tlsListeners(pki)}).addrs
	stls, pop3s := addrs[0], addrs[1]
	want := string(testMessage(1, "hello over TLS\r\n"))

	for name, args := range map[string][]string{
		"curl STLS":  {"--ssl-reqd", "pop3://" + stls + "/1"},
		"curl POP3S": {"pop3s://" + pop3s + "/1"},
	} {
		t.Run(name, func(t *testing.T) {
			args = append([]string{"-sS", "--max-time", "20", "--interface", "127.0.0.2", "--cacert", pki.CAFile,
				"-u", "alice:secret"}, args...)
			out, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl %v: %v\n%s", args, err, out)
			}
			if string(out) != want {
				t.Errorf("curl got %q, want %q", out, want)
			}
		})
	}
	t.Run("curl without TLS is refused", func(t *testing.T) {
		out, err := exec.Command(curl, "-sS", "--max-time", "20", "--interface", "127.0.0.2",
			"-u", "alice:secret", "pop3://"+stls+"/1").CombinedOutput()
		if err == nil {
			t.Errorf("curl logged in without TLS from an untrusted address: %s", out)
		}
	})

	t.Run("poplib stls", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(stls)
		script := `
import poplib, socket, ssl, sys
orig = socket.create_connection
socket.create_connection = lambda addr, timeout=None, source_address=None: orig(addr, timeout, ("127.0.0.2", 0))
ctx = ssl.create_default_context(cafile=sys.argv[3])
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
try:
    p.user("alice")
    print("plaintext accepted")
except poplib.error_proto as e:
    print("refused:", e.args[0].decode())
p.stls(ctx)
p.user("alice")
p.pass_("secret")
print("stat", p.stat())
print("capa", sorted(p.capa()))
p.quit()
`
		out, err := exec.Command(python, "-c", script, host, port, pki.CAFile).CombinedOutput()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "refused: "+plaintextRefused) || !strings.Contains(string(out), "stat (1,") ||
			strings.Contains(string(out), "'STLS'") {
			t.Errorf("poplib:\n%s", out)
		}
	})
}

func TestMinTLSVersion(t *testing.T) {
	up := memUpstream(t)
	pki := newTestPKI(t)
	cert, key, _ := pki.issue("pop3", false)
	addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Listen = []config.ListenConfig{
			{Address: "127.0.0.1:0", TLS: "implicit", CertFile: cert, KeyFile: key}, // default 1.2
			{Address: "127.0.0.1:0", TLS: "implicit", CertFile: cert, KeyFile: key, MinVersion: "1.3"},
		}
	}}).addrs
	dial := func(addr string, maxVersion uint16) error {
		cfg := pki.clientConfig()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, maxVersion
		nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			nc.Close()
		}
		return err
	}
	for _, tc := range []struct {
		addr    string
		version uint16
		ok      bool
	}{
		{addrs[0], tls.VersionTLS11, false},
		{addrs[0], tls.VersionTLS12, true},
		{addrs[1], tls.VersionTLS12, false},
		{addrs[1], tls.VersionTLS13, true},
	} {
		if err := dial(tc.addr, tc.version); (err == nil) != tc.ok {
			t.Errorf("TLS max version %x to %s: %v, want success %v", tc.version, tc.addr, err, tc.ok)
		}
	}
}

// servedSerial returns the serial number of the certificate a POP3S
// listener presents.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return nc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestCertificateReload(t *testing.T) {
	up := memUpstream(t)
	pki := newTestPKI(t)
	cert, key, first := pki.issue("pop3", false)
	var logs testkit.LockedBuffer
	p := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Listen = []config.ListenConfig{{Address: "127.0.0.1:0", TLS: "implicit", CertFile: cert, KeyFile: key}}
	}, logs: &logs})
	addrs := p.addrs
	if got := servedSerial(t, addrs[0], pki.Pool); got != first {
		t.Fatalf("serving serial %d, want %d", got, first)
	}

	t.Run("files changed", func(t *testing.T) {
		second := pki.writePair(cert, key, "pop3", false)
		// A later modification time, whatever the file system's clock
		// granularity.
		later := time.Now().Add(5 * time.Second)
		os.Chtimes(cert, later, later)
		os.Chtimes(key, later, later)
		deadline := time.Now().Add(10 * time.Second)
		for servedSerial(t, addrs[0], pki.Pool) != second {
			if time.Now().After(deadline) {
				t.Fatal("new certificate not served 10 s after the files changed")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("explicit reload", func(t *testing.T) {
		third := pki.writePair(cert, key, "pop3", false)
		if err := p.ReloadCertificates(); err != nil {
			t.Fatal(err)
		}
		if got := servedSerial(t, addrs[0], pki.Pool); got != third {
			t.Errorf("after ReloadCertificates serving serial %d, want %d", got, third)
		}
	})

	t.Run("broken files keep the old certificate", func(t *testing.T) {
		before := servedSerial(t, addrs[0], pki.Pool)
		writeFileAtomic(t, key, []byte("not a key"))
		if err := p.ReloadCertificates(); err == nil {
			t.Error("ReloadCertificates accepted a broken key")
		}
		later := time.Now().Add(10 * time.Second)
		os.Chtimes(key, later, later)
		time.Sleep(certCheckInterval + 100*time.Millisecond)
		if got := servedSerial(t, addrs[0], pki.Pool); got != before {
			t.Errorf("serving serial %d after a broken renewal, want the old %d", got, before)
		}
		if !strings.Contains(logs.String(), "keeping the old certificate") {
			t.Errorf("no log line about the broken certificate files")
		}
	})
}

func TestListenerConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	cert, key, _ := pki.issue("pop3", false)
	for _, tc := range []struct {
		l    config.ListenConfig
		want string
	}{
		{config.ListenConfig{Address: "127.0.0.1:0", TLS: "starttls"}, "needs cert_file and key_file"},
		{config.ListenConfig{Address: "127.0.0.1:0", TLS: "ssl", CertFile: cert, KeyFile: key}, "listen[0].tls"},
		{config.ListenConfig{Address: "127.0.0.1:0", CertFile: cert, KeyFile: key}, "need tls: starttls or implicit"},
		{config.ListenConfig{Address: "127.0.0.1:0", TLS: "implicit", CertFile: key, KeyFile: cert}, "cert_file/key_file"},
		{config.ListenConfig{Address: "127.0.0.1:0", TLS: "implicit", CertFile: cert, KeyFile: key, MinVersion: "1.1"}, "min_version"},
		{config.ListenConfig{Address: "127.0.0.1:0", ProxyProtocol: true}, "needs trusted_proxies"},
		{config.ListenConfig{Address: "127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"10.0.0.0/33"}}, "trusted_proxies"},
		{config.ListenConfig{Address: "127.0.0.1:0", TrustedProxies: []string{"10.0.0.1"}}, "without proxy_protocol"},
	} {
		cfg := &config.Config{Listen: []config.ListenConfig{tc.l}, Upstream: config.UpstreamConfig{Address: "127.0.0.1:143"}}
		if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Check() = %v, want %q", tc.l, err, tc.want)
		}
	}
	cfg := &config.Config{Upstream: config.UpstreamConfig{Address: "127.0.0.1:143"}, TrustedNetworks: []string{"loopback"}}
	if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), "trusted_networks") {
		t.Errorf("bad trusted_networks: Check() = %v", err)
	}
}

// Whole sessions at debug level, over every way a password can travel
// (USER/PASS, AUTH PLAIN with an initial response and as a continuation,
// after STLS and over POP3S, refused in clear, rate-limited, wrong and
// right): no log line contains a password or its base64 form.
func TestNoPasswordInLogsOverTLSRefusalsAndLimits(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		const wrong = "wrong-pw-9d2f"
		u.deliver(t, testMessage(1, "body\r\n"))
		pki := newTestPKI(t)
		var logs testkit.LockedBuffer
		addrs := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
			tlsListeners(pki)(c)
			c.Limits.AuthFailuresPerIP = intp(3)
		}, logs: &logs}).addrs
		stls, pop3s := addrs[0], addrs[1]
		b64 := func(authz, user, pass string) string {
			return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
		}

		// Refused in clear from an untrusted address, password and all.
		c := pop3test.DialFrom(t, "127.0.0.2", stls)
		c.Cmd("USER " + u.user)
		c.Cmd("PASS " + u.pass)
		c.Cmd("AUTH PLAIN " + b64("", u.user, u.pass))
		// Over STLS: wrong then right, both mechanisms.
		c.STLS(pki.clientConfig())
		c.OK("USER " + u.user)
		c.Cmd("PASS " + wrong)
		c.Send("AUTH PLAIN")
		c.Line()
		c.Cmd(b64("", u.user, wrong))
		c.OK("AUTH PLAIN " + b64(u.user, u.user, u.pass))
		c.Multi("RETR 1")
		c.Quit()
		// POP3S: continuation with the right password.
		c = pop3test.DialTLS(t, pop3s, pki.clientConfig())
		c.Send("AUTH PLAIN")
		c.Line()
		c.OK(b64("", u.user, u.pass))
		c.Quit()
		// Rate-limited: three failures from 127.0.0.1 block it.
		c = pop3test.DialTLS(t, pop3s, pki.clientConfig())
		for range 2 {
			c.OK("USER " + u.user)
			c.Cmd("PASS " + wrong)
		}
		c = pop3test.DialTLS(t, pop3s, pki.clientConfig())
		c.Send("AUTH PLAIN " + b64("", u.user, wrong))
		c.Line()
		c = pop3test.DialTLS(t, pop3s, pki.clientConfig())
		c.OK("USER " + u.user)
		if got := c.Cmd("PASS " + u.pass); !strings.Contains(got, "Too many failed logins") {
			t.Errorf("expected a rate-limited login, got %q", got)
		}
		c.Quit()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "session ended") < 2 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		out := logs.String()
		for _, secret := range []string{u.pass, wrong, b64("", u.user, u.pass), b64("", u.user, wrong), b64(u.user, u.user, u.pass)} {
			if strings.Contains(out, secret) {
				t.Errorf("logs contain %q:\n%s", secret, out)
			}
		}
		for _, want := range []string{"plaintext authentication refused", "login failed", "too many failed logins", "session ended"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs lack %q (the sessions did not go as planned):\n%s", want, out)
			}
		}
	})
}

// IPv6 clients: ::1 is trusted by default; trusting only 127.0.0.1 refuses
// plaintext from ::1 (no IPv4/IPv6 confusion).
func TestPlaintextPolicyForIPv6Clients(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	up := memUpstream(t)
	for _, tc := range []struct {
		trusted []string
		ok      bool
	}{
		{nil, true}, // the default: 127.0.0.0/8 and ::1
		{[]string{"127.0.0.1/32"}, false},
		{[]string{"::1"}, true},
	} {
		addrs := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
			c.Listen = []config.ListenConfig{{Address: "[::1]:0"}}
			c.TrustedNetworks = tc.trusted
		}}).addrs
		c := pop3test.Dial(t, addrs[0])
		got := c.Cmd("USER alice")
		if ok := strings.HasPrefix(got, "+OK"); ok != tc.ok {
			t.Errorf("trusted %v: USER from ::1 answered %q", tc.trusted, got)
		}
		c.Quit()
	}
}
