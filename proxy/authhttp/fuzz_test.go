// fuzz_test.go feeds arbitrary answers to the parser: it must never
// panic, and an accepted answer must be usable.

package authhttp

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

func FuzzAnswer(f *testing.F) {
	f.Add(ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143"))
	f.Add(ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143", "X-Popbridge-Mailbox: a%2Fb", "X-Popbridge-Device: d"))
	f.Add(ok200("Auth-Status: WAIT", "Auth-Wait: 2"))
	f.Add(ok200("Auth-Status: no\x80", "Auth-Wait: 99999999999999999999"))
	f.Add("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n continued\r\n\r\n")
	c := &Client{servers: []Server{{Network: "0.0.0.0/0", TLS: "none"}, {Network: "::/0", TLS: "none"}},
		maxWait: DefaultMaxWait, waitUnit: 1}
	f.Fuzz(func(t *testing.T, raw string) {
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
		if err != nil {
			return
		}
		v, err := c.parse(resp.Header, &Request{User: "u", Pass: "p"})
		if err != nil {
			return
		}
		switch v.status {
		case statusOK:
			a := v.answer
			if !a.Addr.IsValid() || a.Addr.Port() == 0 || a.User == "" || a.Pass == "" || a.Server == nil {
				t.Fatalf("accepted %+v", a)
			}
		case statusDenied:
			if len(v.text) == 0 || len(v.text) > maxStatusLen || !safeValue(v.text) {
				t.Fatalf("refusal text %q", v.text)
			}
		}
		if v.wait < 0 || v.wait > DefaultMaxWait {
			t.Fatalf("wait %v", v.wait)
		}
	})
}
