// answer_test.go checks every kind of answer: accepted, refused, the
// popbridge headers, and the answers that must end in [SYS/TEMP].

package authhttp

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

// answering starts a hook that sends raw to every request and a Client
// for it with two servers entries and two known upstreams.
func answering(t *testing.T, raw string) (*Client, *results) {
	h := startHook(t, func(*http.Request) string { return raw })
	cfg := testConfig(h)
	cfg.Servers = []Server{
		{Address: "127.0.0.1:993", TLS: "implicit", ServerName: "imap.example.net"},
		{Network: "127.0.0.0/8", TLS: "none"},
		{Network: "2001:db8::/32", TLS: "starttls"},
	}
	return newClient(t, cfg, Options{Upstreams: []string{"default", "gmail"}})
}

func TestAnswerAccepted(t *testing.T) {
	okLines := []string{"Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143"}
	for _, tc := range []struct {
		name  string
		lines []string
		want  Answer // Server is compared by its TLS mode
		tls   imapback.TLSMode
	}{
		{"plain", okLines, Answer{Addr: netip.MustParseAddrPort("127.0.0.1:143"), User: "alice", Pass: "pw"}, "none"},
		{"address entry first", []string{"Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 993"},
			Answer{Addr: netip.MustParseAddrPort("127.0.0.1:993"), User: "alice", Pass: "pw"}, "implicit"},
		{"IPv6 and case-insensitive names", []string{"auth-status: OK", "AUTH-SERVER: 2001:db8::5", "auth-port: 143"},
			Answer{Addr: netip.MustParseAddrPort("[2001:db8::5]:143"), User: "alice", Pass: "pw"}, "starttls"},
		{"IPv4-mapped IPv6 is IPv4", []string{"Auth-Status: OK", "Auth-Server: ::ffff:127.0.0.2", "Auth-Port: 143"},
			Answer{Addr: netip.MustParseAddrPort("127.0.0.2:143"), User: "alice", Pass: "pw"}, "none"},
		{"upstream credentials taken as they are", append(okLines, "Auth-User: master%20user*alice", "Auth-Pass: tok+en%41"),
			Answer{Addr: netip.MustParseAddrPort("127.0.0.1:143"), User: "master%20user*alice", Pass: "tok+en%41"}, "none"},
		{"last repeated header wins", append(okLines, "Auth-Port: 1143", "Auth-User: first", "Auth-User: second"),
			Answer{Addr: netip.MustParseAddrPort("127.0.0.1:1143"), User: "second", Pass: "pw"}, "none"},
		{"Auth-Wait and Auth-Error-Code ignored on success", append(okLines, "Auth-Wait: 3", "Auth-Error-Code: 535 5.7.8"),
			Answer{Addr: netip.MustParseAddrPort("127.0.0.1:143"), User: "alice", Pass: "pw"}, "none"},
		{"popbridge headers", append(okLines, "X-Popbridge-Mailbox: Support%2FInbound%20%C3%BC", "X-Popbridge-Device: scanner-2",
			"X-Popbridge-Delete: trash", "X-Popbridge-Seen: never"),
			Answer{Addr: netip.MustParseAddrPort("127.0.0.1:143"), User: "alice", Pass: "pw",
				Mailbox: "Support/Inbound ü", Device: "scanner-2", Delete: imapback.DeleteTrash, Seen: imapback.SeenNever}, "none"},
		{"merged folders", append(okLines, "X-Popbridge-Mailboxes: INBOX, Junk%2C%20old,%5BGmail%5D%2FSpam"),
			Answer{Addr: netip.MustParseAddrPort("127.0.0.1:143"), User: "alice", Pass: "pw",
				Mailboxes: []string{"INBOX", "Junk, old", "[Gmail]/Spam"}}, "none"},
		{"named upstream", []string{"Auth-Status: OK", "Auth-Server: 192.0.2.99", "Auth-Port: 993", "X-Popbridge-Upstream: gmail"},
			Answer{Addr: netip.MustParseAddrPort("192.0.2.99:993"), User: "alice", Pass: "pw", Upstream: "gmail"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, obs := answering(t, ok200(tc.lines...))
			a, err := login(c, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			got := a
			got.Server = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("answer %+v, want %+v", got, tc.want)
			}
			switch {
			case tc.tls == "" && a.Server != nil:
				t.Errorf("server entry %+v with an upstream named", a.Server)
			case tc.tls != "" && (a.Server == nil || a.Server.TLS != tc.tls):
				t.Errorf("server entry %+v, want tls %s", a.Server, tc.tls)
			}
			if obs.list() != ResultOK {
				t.Errorf("observed %q", obs.list())
			}
		})
	}
}

// X-Popbridge-Retention-Days: absent leaves the configured value, 0
// turns retention off, leading zeros are digits like any other.
func TestAnswerRetention(t *testing.T) {
	okLines := []string{"Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143"}
	for _, tc := range []struct {
		header string
		want   int // -1: absent
	}{{"", -1}, {"X-Popbridge-Retention-Days: 030", 30}, {"X-Popbridge-Retention-Days: 0", 0}, {"x-popbridge-retention-days: 36500", 36500}} {
		lines := okLines
		if tc.header != "" {
			lines = append(lines, tc.header)
		}
		c, _ := answering(t, ok200(lines...))
		a, err := login(c, "alice", "pw")
		if err != nil {
			t.Fatal(err)
		}
		switch got := a.RetentionDays; {
		case tc.want < 0 && got != nil:
			t.Errorf("%q: RetentionDays %d, want none", tc.header, *got)
		case tc.want >= 0 && (got == nil || *got != tc.want):
			t.Errorf("%q: RetentionDays %v, want %d", tc.header, got, tc.want)
		}
	}
}

func TestAnswerDenied(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ name, status, reply string }{
		{"text", "Invalid login or password", "[AUTH] Invalid login or password"},
		{"with error code", "Invalid login or password\r\nAuth-Error-Code: 535 5.7.8", "[AUTH] Invalid login or password"},
		{"lower-case ok is a refusal, as in nginx", "ok", "[AUTH] ok"},
		{"non-ASCII", "Konto gesperrt \xc3\xbc!", "[AUTH] Konto gesperrt ??!"},
		{"bounded", long, "[AUTH] " + long[:maxStatusLen]},
		{"nothing printable", "\xff\xfe", "[AUTH] ??"},
		{"refusal beats OK", "OK\r\nAuth-Status: Account disabled\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143", "[AUTH] Account disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, obs := answering(t, ok200("Auth-Status: "+tc.status))
			_, err := login(c, "alice", "pw")
			var de *DeniedError
			if !errors.As(err, &de) || !errors.Is(err, ErrDenied) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want a DeniedError", err)
			}
			if got := popReply(err); got != tc.reply {
				t.Errorf("POP3 reply %q, want %q", got, tc.reply)
			}
			if obs.list() != ResultDenied {
				t.Errorf("observed %q", obs.list())
			}
		})
	}
}

func TestAnswerUnusable(t *testing.T) {
	ok := "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143"
	for _, tc := range []struct{ name, raw, result string }{
		{"no Auth-Status", ok200("Auth-Server: 127.0.0.1", "Auth-Port: 143"), ResultMalformed},
		{"no Auth-Server", ok200("Auth-Status: OK", "Auth-Port: 143"), ResultMalformed},
		{"no Auth-Port", ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1"), ResultMalformed},
		{"host name", ok200("Auth-Status: OK", "Auth-Server: imap.example.net", "Auth-Port: 143"), ResultMalformed},
		{"zoned address", ok200("Auth-Status: OK", "Auth-Server: fe80::1%eth0", "Auth-Port: 143"), ResultMalformed},
		{"port 0", ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 0"), ResultMalformed},
		{"port too big", ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 65536"), ResultMalformed},
		{"signed port", ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: +143"), ResultMalformed},
		{"empty Auth-User", ok200(ok, "Auth-User:"), ResultMalformed},
		{"empty Auth-Pass", ok200(ok, "Auth-Pass: "), ResultMalformed},
		{"server in no entry", ok200("Auth-Status: OK", "Auth-Server: 192.0.2.1", "Auth-Port: 143"), ResultMalformed},
		{"unknown upstream", ok200(ok, "X-Popbridge-Upstream: nosuch"), ResultMalformed},
		{"bad device", ok200(ok, "X-Popbridge-Device: Scanner 2"), ResultMalformed},
		{"repeated device", ok200(ok, "X-Popbridge-Device: a", "X-Popbridge-Device: b"), ResultMalformed},
		{"empty device", ok200(ok, "X-Popbridge-Device: "), ResultMalformed},
		{"bad delete", ok200(ok, "X-Popbridge-Delete: shred"), ResultMalformed},
		{"bad seen", ok200(ok, "X-Popbridge-Seen: sometimes"), ResultMalformed},
		{"signed retention", ok200(ok, "X-Popbridge-Retention-Days: +7"), ResultMalformed},
		{"negative retention", ok200(ok, "X-Popbridge-Retention-Days: -1"), ResultMalformed},
		{"retention in words", ok200(ok, "X-Popbridge-Retention-Days: never"), ResultMalformed},
		{"retention too long", ok200(ok, "X-Popbridge-Retention-Days: 36501"), ResultMalformed},
		{"repeated retention", ok200(ok, "X-Popbridge-Retention-Days: 1", "X-Popbridge-Retention-Days: 2"), ResultMalformed},
		{"wildcard mailbox", ok200(ok, "X-Popbridge-Mailbox: INBOX*"), ResultMalformed},
		{"mailbox not UTF-8", ok200(ok, "X-Popbridge-Mailbox: %FF"), ResultMalformed},
		{"mailbox control character", ok200(ok, "X-Popbridge-Mailbox: a%0Ab"), ResultMalformed},
		{"mailbox bad escape", ok200(ok, "X-Popbridge-Mailbox: 100%"), ResultMalformed},
		{"mailbox too long", ok200(ok, "X-Popbridge-Mailbox: "+strings.Repeat("m", imapback.MaxMailboxLen+1)), ResultMalformed},
		{"mailbox and mailboxes", ok200(ok, "X-Popbridge-Mailbox: INBOX", "X-Popbridge-Mailboxes: INBOX,Junk"), ResultMalformed},
		{"mailboxes twice the same", ok200(ok, "X-Popbridge-Mailboxes: INBOX,inbox"), ResultMalformed},
		{"mailboxes empty entry", ok200(ok, "X-Popbridge-Mailboxes: INBOX,,Junk"), ResultMalformed},
		{"mailboxes wildcard", ok200(ok, "X-Popbridge-Mailboxes: INBOX,J%25"), ResultMalformed},
		{"not HTTP", "hello\r\n\r\n", ResultMalformed},
		{"bad header line", "HTTP/1.0 200 OK\r\nno colon here\r\n\r\n", ResultMalformed},
		{"headers too big", ok200(ok, "X-Filler: "+strings.Repeat("f", maxHead)), ResultMalformed},
		{"status 500", "HTTP/1.0 500 Internal Server Error\r\n" + ok + "\r\n\r\n", ResultUnavailable},
		{"status 302", "HTTP/1.0 302 Found\r\nLocation: /elsewhere\r\n\r\n", ResultUnavailable},
		{"closed without an answer", "", ResultUnavailable},
		{"cut after a header", "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n", ResultUnavailable},
		{"control character", ok200("Auth-Status: no\x01"), ResultMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, obs := answering(t, tc.raw)
			a, err := login(c, "alice", "pw")
			wantUnavailable(t, err, tc.result)
			if !reflect.DeepEqual(a, Answer{}) {
				t.Errorf("answer %+v with the error", a)
			}
			if obs.list() != tc.result {
				t.Errorf("observed %q", obs.list())
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"Bad password":  "Bad password",
		"tab\there\x7f": "tab?here?",
		"  padded  ":    "padded",
		"":              "Authentication failed",
		"\x00":          "?",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestErrorsReachTheClient shows what pop3front makes of the errors: the
// *pop3front.Error each unwraps to is what a Backend returns.
func TestErrorsReachTheClient(t *testing.T) {
	var pe *pop3front.Error
	denied := error(&DeniedError{Status: "Go away"})
	if !errors.As(denied, &pe) || pe.Code != "AUTH" || pe.Text != "Go away" {
		t.Fatalf("denied unwraps to %+v", pe)
	}
	down := unavailable(ResultTimeout, "slow")
	if !errors.As(down, &pe) || pe != pop3front.ErrUnavailable {
		t.Fatalf("unavailable unwraps to %+v", pe)
	}
	if strings.Contains(pe.Error(), "slow") {
		t.Fatal("the cause reaches the client")
	}
}
