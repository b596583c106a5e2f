package proxy

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

func TestUpstreamTLSVerifiesCertificates(t *testing.T) {
	pki := newTestPKI(t)
	cert := pki.serverPair("imap.test")
	for _, mode := range []imapback.TLSMode{imapback.TLSImplicit, imapback.TLSStartTLS} {
		t.Run(string(mode), func(t *testing.T) {
			srv := listenMem(t, memimap.Options{
				TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
				ImplicitTLS: mode == "implicit",
			})
			srv.AddUser("alice", "secret")
			srv.Append("alice", "INBOX", testMessage(1, "over TLS\r\n"))

			trusted := startProxy(t, srv.Addr, proxyOptions{configure: func(c *config.Config) {
				c.Upstream.TLS = mode
				c.Upstream.CAFile = pki.CAFile
			}}).addr
			c := pop3test.Dial(t, trusted)
			c.Login("alice", "secret")
			if got := c.Multi("RETR 1"); !strings.Contains(string(got), "over TLS") {
				t.Errorf("RETR over upstream TLS = %q", got)
			}
			c.Quit()

			// Without the CA the certificate is unknown: verification is on
			// by default, so the login fails and nothing is sent upstream.
			untrusted := startProxy(t, srv.Addr, proxyOptions{configure: func(c *config.Config) { c.Upstream.TLS = mode }}).addr
			c = pop3test.Dial(t, untrusted)
			c.OK("USER alice")
			if resp := c.Cmd("PASS secret"); !strings.HasPrefix(resp, "-ERR [SYS/TEMP]") {
				t.Errorf("unverifiable upstream certificate: %q", resp)
			}
		})
	}
}
