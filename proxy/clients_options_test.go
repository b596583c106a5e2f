package proxy

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// Real clients' folder and authentication options through popbridge, in
// front of Dovecot and Cyrus: mpop's "auth login" and "auth plain" (AUTH
// LOGIN and AUTH PLAIN), fetchmail's "auth any" (it knows neither of the
// SASL mechanisms popbridge offers, so it falls back to USER/PASS; its
// POP3 has no AUTH LOGIN or PLAIN at all), and a folder named after the
// user name ("alice+Scans") through both.
func TestRealClientsFolderAndAuthOptions(t *testing.T) {
	for _, kind := range []struct {
		name  string
		start func(t *testing.T) *upstream
	}{{"dovecot", startDovecotUpstream}, {"cyrus", startCyrusUpstream}} {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			u := kind.start(t)
			u.deliver(t, testMessage(1, "inbox mail\r\n"))
			u.deliver(t, testMessage(2, "inbox mail\r\n"))
			testkit.RecreateMailbox(t, u.dial(t), "Scans", testMessage(3, "a scan\r\n"))
			var logs testkit.LockedBuffer
			addr := startProxy(t, u.addr, proxyOptions{logs: &logs, configure: func(c *config.Config) {
				c.Policy.Folders.Separator = "+"
			}}).addr
			host, port, _ := net.SplitHostPort(addr)

			for _, tc := range []struct {
				tool, auth, user string
				run              func(t *testing.T, r *clientRun) [][]byte
				want             string // in every message downloaded
				n                int    // messages downloaded
				login            string // the log line of the login that must have happened
			}{
				{"mpop", "login", "alice", runMpop, "inbox mail", 2, `cmd=AUTH args=LOGIN result=ok`},
				{"mpop", "login", "alice+Scans", runMpop, "a scan", 1, `cmd=AUTH args=LOGIN result=ok`},
				{"mpop", "plain", "alice+Scans", runMpop, "a scan", 1, `cmd=AUTH args="?PLAIN[^\n]*result=ok`},
				{"mpop", "", "alice+Scans", runMpop, "a scan", 1, `cmd=USER args=alice\+Scans result=ok`},
				{"fetchmail", "any", "alice+Scans", runFetchmail, "a scan", 1, `cmd=USER args=alice\+Scans result=ok`},
				{"fetchmail", "", "alice", runFetchmail, "inbox mail", 2, `cmd=USER args=alice result=ok`},
			} {
				what := tc.tool + " auth " + tc.auth + " as " + tc.user
				login := regexp.MustCompile(tc.login)
				before := len(login.FindAllString(logs.String(), -1))
				r := &clientRun{tool: testkit.Program(t, tc.tool), host: host, port: port, user: tc.user, pass: u.pass,
					state: t.TempDir(), out: t.TempDir(), auth: tc.auth}
				got := tc.run(t, r)
				if len(got) != tc.n {
					t.Errorf("%s: %d messages, want %d", what, len(got), tc.n)
				}
				for _, m := range got {
					if !strings.Contains(string(m), tc.want) {
						t.Errorf("%s: downloaded %q, want %q", what, m, tc.want)
					}
				}
				if after := len(login.FindAllString(logs.String(), -1)); after != before+1 {
					t.Errorf("%s: %d logins logged as %q, want 1", what, after-before, tc.login)
				}
			}
		})
	}
}
