package proxy

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
)

// With forward_client_address, Dovecot (which trusts popbridge through
// login_trusted_networks) logs the POP3 client's address, not
// popbridge's, and applies its per-address auth penalty to it.
func TestDovecotSeesTheRealClientAddress(t *testing.T) {
	t.Parallel()
	d := dovecottest.Start(t, dovecottest.Options{
		Users:       map[string]string{"alice": "secret"},
		ExtraConfig: "login_trusted_networks = 127.0.0.1/32\n",
	})
	fwd := startProxyAt(t, d.IMAPAddr, func(c *Config) { c.Upstream.ForwardClientAddress = true })
	plain := startProxyAt(t, d.IMAPAddr, nil)

	c := pop3test.DialFrom(t, "127.0.0.2", fwd)
	c.Login("alice", "secret")
	c.Quit()
	c = pop3test.DialFrom(t, "127.0.0.3", plain)
	c.Login("alice", "secret")
	c.Quit()

	var logins []string
	for deadline := time.Now().Add(10 * time.Second); len(logins) < 2 && time.Now().Before(deadline); {
		logins = nil
		for _, l := range strings.Split(d.Log(), "\n") {
			if strings.Contains(l, "imap-login: Info: Login: user=<alice>") {
				logins = append(logins, l)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	srvCert, srvKey, _ := pki.issue("imap", false)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"none", "starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			opts := memimap.Options{}
			if mode != "none" {
				opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}}
				opts.ImplicitTLS = mode == "implicit"
			}
			up, err := memimap.Listen(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { up.Close() })
			up.AddUser("alice", "secret")
			up.Append("alice", "INBOX", testMessage(1, "via ID\r\n"))
			addr := startProxyAt(t, up.Addr, func(c *Config) {
				c.Upstream.TLS, c.Upstream.CAFile = mode, pki.CAFile
				c.Upstream.ForwardClientAddress = true
			})
			c := pop3test.DialFrom(t, "127.0.0.2", addr)
			c.Login("alice", "secret")
			if got := c.Multi("RETR 1"); !strings.Contains(string(got), "via ID") {
				t.Errorf("RETR = %q", got)
			}
			c.Quit()
		})
	}
}
