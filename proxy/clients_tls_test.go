package proxy

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// Every client downloads the corpus over TLS: STLS where it supports it,
// POP3S otherwise (getmail). popbridge trusts no network for plaintext
// logins here, so a client that did not start TLS could not log in, and
// each client verifies popbridge's certificate against the test CA.
func TestClientsDownloadOverTLS(t *testing.T) {
	corpus := clientMessages(t)
	forEachClient(t, func(t *testing.T, cl interopClient, tool string) {
		u := startDovecotUpstream(t)
		for _, m := range corpus {
			u.deliver(t, m.raw)
		}
		pki := newTestPKI(t)
		// fetchmail matches the host name against the certificate's
		// common name and DNS names only, not its IP addresses: the
		// common name is the address.
		cert, key, _ := pki.issue("127.0.0.1", false)
		addrs := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
			c.Listen = []config.ListenConfig{
				{Address: "127.0.0.1:0", TLS: "starttls", CertFile: cert, KeyFile: key},
				{Address: "127.0.0.1:0", TLS: "implicit", CertFile: cert, KeyFile: key},
			}
			c.TrustedNetworks = []string{"192.0.2.0/24"} // not loopback
		}}).addrs
		// Without TLS, no login: so the clients below did use TLS.
		plain := pop3test.Dial(t, addrs[0])
		if resp := plain.Cmd("USER " + u.user); !strings.HasPrefix(resp, "-ERR") {
			t.Fatalf("USER without TLS: %q, want a refusal", resp)
		}
		plain.Quit()
		addr := addrs[0] // STLS
		if cl.tls == "implicit" {
			addr = addrs[1]
		}
		host, port, _ := net.SplitHostPort(addr)
		state := t.TempDir()
		r := &clientRun{tool: tool, host: host, port: port, user: u.user, pass: u.pass,
			state: state, out: filepath.Join(state, "out"), tls: cl.tls, caFile: pki.CAFile}
		got := cl.download(t, r)
		if cl.storedTLS != nil {
			cl.stored = cl.storedTLS
		}
		compareMail(t, "over "+cl.tls+" TLS", got, expectedStored(t, cl, tool, upstreamState(t, u)))
	})
}
