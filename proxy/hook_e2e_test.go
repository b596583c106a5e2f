package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/authhttp"
	"github.com/popbridge/popbridge/proxy/config"
)

// The auth_http hook, wired: a hook served by net/http on 127.0.0.1 in
// front of a real Dovecot (and of the in-memory server where only the
// request matters).

// testHook is an auth_http hook that answers every request with the
// headers answer returns, and keeps the requests' headers.
type testHook struct {
	url    string
	mu     sync.Mutex
	asked  []http.Header
	answer func(req http.Header) map[string]string
}

func startTestHook(t *testing.T, answer func(req http.Header) map[string]string) *testHook {
	h := &testHook{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.asked = append(h.asked, r.Header.Clone())
		h.mu.Unlock()
		for k, v := range h.answer(r.Header) {
			w.Header().Set(k, v)
		}
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/auth"
	return h
}

func (h *testHook) requests() []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]http.Header(nil), h.asked...)
}

// okAt is an OK answer that sends the login to the IMAP server at addr.
func okAt(t *testing.T, addr string, more ...string) map[string]string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	a := map[string]string{"Auth-Status": "OK", "Auth-Server": host, "Auth-Port": port}
	for i := 0; i+1 < len(more); i += 2 {
		a[more[i]] = more[i+1]
	}
	return a
}

// hookDovecot starts Dovecot with alice (two messages in INBOX) and bob.
func hookDovecot(t *testing.T, extra string) *dovecottest.Server {
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret", "bob": "bobpass"}, ExtraConfig: extra})
	for i := 1; i <= 2; i++ {
		d.Deliver(t, "alice", testMessage(i, "inbox mail\r\n"))
	}
	return d
}

// withHook turns the hook on in front of an upstream that no login may
// reach by itself: only the hook's answers lead to Dovecot.
func withHook(url string, more func(*config.Config)) proxyOptions {
	return proxyOptions{configure: func(c *config.Config) {
		c.Upstream.Address = "127.0.0.1:1"
		c.AuthHTTP = authhttp.Config{URL: url, Timeout: 2 * time.Second,
			Servers: []authhttp.Server{{Network: "127.0.0.1", TLS: "none"}}}
		if more != nil {
			more(c)
		}
	}}
}

// An OK logs in where the hook says with the login it gives, whatever
// the client sent; a refusal answers with the hook's text.
func TestHookRoutesLoginsToDovecotWithTheAnswersCredentials(t *testing.T) {
	t.Parallel()
	d := hookDovecot(t, "")
	hook := startTestHook(t, func(req http.Header) map[string]string {
		// The password comes escaped as nginx escapes it.
		if req.Get("Auth-User") == "scanner" && req.Get("Auth-Pass") == "hook%20pass" {
			return okAt(t, d.IMAPAddr, "Auth-User", "alice", "Auth-Pass", "secret")
		}
		return map[string]string{"Auth-Status": "Unknown scanner, ask the helpdesk"}
	})
	addr := startProxy(t, "", withHook(hook.url, nil)).addr

	c := pop3test.Dial(t, addr)
	c.OK("USER scanner")
	if got := c.Cmd("PASS wrong"); got != "-ERR [AUTH] Unknown scanner, ask the helpdesk" {
		t.Fatalf("refused login: %q", got)
	}
	c.Login("scanner", "hook pass")
	if n, _ := c.Stat(); n != 2 {
		t.Fatalf("STAT: %d messages, want alice's 2", n)
	}
	c.Quit()
	// What the hook-down test looks for in the log when no login came.
	hasAlice := func(log string) bool { return strings.Contains(log, "user=<alice>") }
	if log := d.WaitLog(hasAlice); !hasAlice(log) {
		t.Errorf("Dovecot's log names no login as alice:\n%s", log)
	}

	reqs := hook.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d hook requests, want 2", len(reqs))
	}
	for i, want := range map[string]string{"Auth-Method": "plain", "Auth-Protocol": "pop3", "Auth-User": "scanner",
		"Auth-Pass": "hook%20pass", "Auth-Login-Attempt": "2", "Client-IP": "127.0.0.1"} {
		if got := reqs[1].Get(i); got != want {
			t.Errorf("second request: %s %q, want %q", i, got, want)
		}
	}
	if got := reqs[0].Get("Auth-Login-Attempt"); got != "1" {
		t.Errorf("first request: Auth-Login-Attempt %q, want 1", got)
	}
}

// A hook that cannot be asked answers [SYS/TEMP], and nothing reaches
// the upstream: the static one is Dovecot here, and it sees no login.
func TestHookDownRefusesWithoutTouchingTheUpstream(t *testing.T) {
	t.Parallel()
	d := hookDovecot(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/auth"
	ln.Close()
	addr := startProxy(t, "", withHook(down, func(c *config.Config) { c.Upstream.Address = d.IMAPAddr })).addr

	c := pop3test.Dial(t, addr)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Fatalf("login with the hook down: %q", got)
	}
	c.Quit()
	if log := d.Log(); strings.Contains(log, "user=<alice>") {
		t.Fatalf("Dovecot saw alice log in without the hook's OK:\n%s", log)
	}
}

// X-Popbridge-Mailbox serves another folder, and X-Popbridge-Delete keep
// leaves the mail after DELE and QUIT.
func TestHookAnswerChoosesTheMailboxAndTheDeletePolicy(t *testing.T) {
	t.Parallel()
	d := hookDovecot(t, dovecotSlashNamespace)
	imc := d.Dial(t, "alice")
	appendMail(t, imc, "Support/Inbound", time.Now(), testMessage(7, "a ticket\r\n"))
	hook := startTestHook(t, func(req http.Header) map[string]string {
		return okAt(t, d.IMAPAddr, "X-Popbridge-Upstream", "default",
			"X-Popbridge-Mailbox", "Support%2FInbound", "X-Popbridge-Delete", "keep")
	})
	addr := startProxy(t, "", withHook(hook.url, func(c *config.Config) { c.AuthHTTP.Servers = nil })).addr

	c := pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	if n, _ := c.Stat(); n != 1 {
		t.Fatalf("STAT: %d messages, want the one in Support/Inbound", n)
	}
	if got := string(c.Multi("RETR 1")); !strings.Contains(got, "a ticket") {
		t.Fatalf("RETR 1: %q", got)
	}
	c.OK("DELE 1")
	c.Quit()
	if n := folderSize(t, imc, "Support/Inbound"); n != 1 {
		t.Fatalf("after DELE and QUIT with delete keep: %d messages left, want 1", n)
	}
	if n := folderSize(t, imc, "INBOX"); n != 2 {
		t.Fatalf("INBOX: %d messages, want 2 untouched", n)
	}
}

// dovecotSlashNamespace makes "/" the hierarchy separator, as most
// servers have it.
const dovecotSlashNamespace = `
namespace inbox {
  inbox = yes
  separator = /
}
`

// appendMail creates mailbox if needed and appends raw with date as its
// internal date.
func appendMail(t *testing.T, c *imapclient.Client, mailbox string, date time.Time, raw []byte) {
	t.Helper()
	if !strings.EqualFold(mailbox, "INBOX") {
		c.Create(mailbox, nil).Wait() // may exist already
	}
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Time: date})
	cmd.Write(raw)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("APPEND to %s: %v", mailbox, err)
	}
}

func folderSize(t *testing.T, c *imapclient.Client, mailbox string) int {
	t.Helper()
	st, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("STATUS %s: %v", mailbox, err)
	}
	return int(*st.NumMessages)
}

// After STLS the hook learns that the client uses TLS, and which
// version and cipher.
func TestHookLearnsTheClientsTLS(t *testing.T) {
	up := memUpstream(t)
	hook := startTestHook(t, func(req http.Header) map[string]string {
		return okAt(t, up.Addr, "X-Popbridge-Upstream", "default")
	})
	pki := newTestPKI(t)
	addr := startProxy(t, "", withHook(hook.url, tlsListeners(pki))).addrs[0]
	c := pop3test.Dial(t, addr)
	c.STLS(pki.clientConfig())
	c.Login("alice", "secret")
	c.Quit()
	reqs := hook.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d hook requests, want 1", len(reqs))
	}
	if got := reqs[0].Get("Auth-SSL"); got != "on" {
		t.Errorf("Auth-SSL %q, want on", got)
	}
	if got := reqs[0].Get("Auth-SSL-Protocol"); !strings.HasPrefix(got, "TLSv1.") {
		t.Errorf("Auth-SSL-Protocol %q, want the TLS version", got)
	}
	if reqs[0].Get("Auth-SSL-Cipher") == "" {
		t.Error("no Auth-SSL-Cipher")
	}
}
