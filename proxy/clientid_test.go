package proxy

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// With forward_client_address (the default), Dovecot (which trusts popbridge through
// login_trusted_networks) logs the POP3 client's address, not
// popbridge's, and applies its per-address auth penalty to it.
func TestDovecotSeesTheRealClientAddress(t *testing.T) {
	t.Parallel()
	d := dovecottest.Start(t, dovecottest.Options{
		Users:       map[string]string{"alice": "secret"},
		ExtraConfig: "login_trusted_networks = 127.0.0.1/32\n",
	})
	fwd := startProxy(t, d.IMAPAddr, proxyOptions{}).addr // forwarding is the default
	plain := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) { c.Upstream.ForwardClientAddress = new(bool) }}).addr

	c := pop3test.DialFrom(t, "127.0.0.2", fwd)
	c.Login("alice", "secret")
	c.Quit()
	c = pop3test.DialFrom(t, "127.0.0.3", plain)
	c.Login("alice", "secret")
	c.Quit()

	logins := aliceLogins(d.WaitLog(func(log string) bool { return len(aliceLogins(log)) >= 2 }))
	if len(logins) != 2 {
		t.Fatalf("Dovecot logged %d logins, want 2:\n%s", len(logins), d.Log())
	}
	if !strings.Contains(logins[0], "rip=127.0.0.2,") {
		t.Errorf("with forwarding, Dovecot logged %q, want rip=127.0.0.2", logins[0])
	}
	if !strings.Contains(logins[1], "rip=127.0.0.1,") {
		t.Errorf("without forwarding, Dovecot logged %q, want popbridge's rip=127.0.0.1", logins[1])
	}
}

// The ID exchange runs before go-imap takes over the connection; the
// session works over every upstream TLS mode and with a server that
// answers ID with BAD (go-imap's server does not know ID).
func TestForwardClientAddressOverEveryUpstreamTLSMode(t *testing.T) {
	pki := newTestPKI(t)
	pair := pki.serverPair("imap")
	for _, mode := range imapback.TLSModes {
		t.Run(string(mode), func(t *testing.T) {
			opts := memimap.Options{}
			if mode != "none" {
				opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}}
				opts.ImplicitTLS = mode == "implicit"
			}
			up := listenMem(t, opts)
			up.AddUser("alice", "secret")
			up.Append("alice", "INBOX", testMessage(1, "via ID\r\n"))
			addr := startProxy(t, up.Addr, proxyOptions{configure: func(c *config.Config) {
				c.Upstream.TLS, c.Upstream.CAFile = mode, pki.CAFile
			}}).addr
			c := pop3test.DialFrom(t, "127.0.0.2", addr)
			c.Login("alice", "secret")
			if got := c.Multi("RETR 1"); !strings.Contains(string(got), "via ID") {
				t.Errorf("RETR = %q", got)
			}
			c.Quit()
		})
	}
}

// The hand-made STARTTLS before ID, against Dovecot with TLS that asks for
// and verifies popbridge's client certificate: Dovecot logs the POP3
// client's address and that the connection is TLS.
func TestDovecotSTARTTLSWithClientCertificateAndForwardedAddress(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	srvCert, srvKey, _ := pki.issue("imap", false)
	cliCert, cliKey, _ := pki.issue("popbridge", true)
	d := dovecottest.Start(t, dovecottest.Options{
		Users: map[string]string{"alice": "secret"},
		ExtraConfig: "ssl = yes\nssl_cert = <" + srvCert + "\nssl_key = <" + srvKey + "\n" +
			"ssl_ca = <" + pki.CAFile + "\nssl_verify_client_cert = yes\nauth_ssl_require_client_cert = yes\n" +
			"ssl_require_crl = no\n" + // the test CA publishes no CRL
			"login_trusted_networks = 127.0.0.1/32\n",
	})
	addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.TLS, c.Upstream.CAFile = "starttls", pki.CAFile
		c.Upstream.CertFile, c.Upstream.KeyFile = cliCert, cliKey
	}}).addr
	c := pop3test.DialFrom(t, "127.0.0.2", addr)
	c.Login("alice", "secret")
	c.Quit()
	// Without the client certificate Dovecot refuses the login.
	noCert := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.TLS, c.Upstream.CAFile = "starttls", pki.CAFile
	}}).addr
	c = pop3test.DialFrom(t, "127.0.0.2", noCert)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("login without a client certificate: %q", got)
	}
	var login string
	if logins := aliceLogins(d.WaitLog(func(log string) bool { return len(aliceLogins(log)) > 0 })); len(logins) > 0 {
		login = logins[len(logins)-1]
	}
	t.Logf("Dovecot: %s", login)
	if !strings.Contains(login, "rip=127.0.0.2,") || !strings.Contains(login, "TLS") {
		t.Errorf("Dovecot's login line %q: want rip=127.0.0.2 over TLS\n%s", login, d.Log())
	}
}

// aliceLogins returns the lines of Dovecot's log that tell of alice's
// logins.
func aliceLogins(log string) []string {
	var logins []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "imap-login: Info: Login: user=<alice>") {
			logins = append(logins, l)
		}
	}
	return logins
}
