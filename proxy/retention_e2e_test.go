package proxy

// retention_days end to end, against go-imap's in-memory server, Dovecot
// and Cyrus, with the store's clock moved forward instead of waiting days:
// what a device retrieved goes at the first QUIT N days after the QUIT
// that retrieved it; mail not retrieved, and sessions without QUIT, change
// nothing; in device views mail goes once every known device is done
// with it; CAPA states EXPIRE before and after login.

import (
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// testClock is real time moved forward by the test.
type testClock struct{ ahead atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *testClock) advance(d time.Duration) { c.ahead.Add(int64(d)) }

const day = 24 * time.Hour

// retentionProxy starts popbridge in front of u with configure applied
// and a store whose clock the test moves.
func retentionProxy(t *testing.T, u *upstream, configure func(*config.Config)) (*testProxy, *testClock) {
	clock := &testClock{}
	p := startProxy(t, u.addr, proxyOptions{configure: configure, store: state.NewMemoryWithClock(clock.now)})
	return p, clock
}

// popSession logs in as login, sends each command (RETR's and TOP's data
// read and dropped) and QUITs, returning QUIT's answer; with quit false
// it drops the connection instead and waits until popbridge has ended the
// session.
func popSession(t *testing.T, p *testProxy, login, pass string, quit bool, cmds ...string) string {
	t.Helper()
	c := pop3test.Dial(t, p.addr)
	c.Login(login, pass)
	for _, cmd := range cmds {
		if strings.HasPrefix(cmd, "RETR") || strings.HasPrefix(cmd, "TOP") {
			c.Multi(cmd)
		} else {
			c.OK(cmd)
		}
	}
	if quit {
		return c.Quit()
	}
	c.Conn.Close()
	for i := 0; len(p.srv.Sessions()) > 0; i++ {
		if i == 500 {
			t.Fatal("the dropped session did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

func eachRetentionUpstream(t *testing.T, f func(t *testing.T, u *upstream)) {
	for _, start := range []func(*testing.T) *upstream{startMemUpstream, startDovecotUpstream, startCyrusUpstream} {
		u := start(t)
		t.Run(u.name, func(t *testing.T) { f(t, u) })
	}
}

func TestRetentionRemovesWhatWasRetrievedNDaysBefore(t *testing.T) {
	eachRetentionUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 4)
		before := upstreamState(t, u)
		p, clock := retentionProxy(t, u, func(c *config.Config) { c.Policy.RetentionDays = 7 })

		c := pop3test.Dial(t, p.addr)
		if got := string(c.Multi("CAPA")); !strings.Contains(got, "\r\nEXPIRE 7\r\n") {
			t.Errorf("CAPA before login: %q, want EXPIRE 7", got)
		}
		c.Login(u.user, u.pass)
		if got := string(c.Multi("CAPA")); !strings.Contains(got, "\r\nEXPIRE 7\r\n") {
			t.Errorf("CAPA after login: %q, want EXPIRE 7", got)
		}
		c.Multi("RETR 1")
		c.Multi("RETR 2")
		c.Multi("TOP 3 0") // TOP is no retrieval
		if resp := c.Quit(); resp != "+OK Logging out" {
			t.Fatalf("QUIT: %q", resp)
		}
		// Retrieved in a session that never QUITs: no clock starts.
		popSession(t, p, u.user, u.pass, false, "RETR 4")

		clock.advance(7*day - time.Minute)
		if resp := popSession(t, p, u.user, u.pass, true); resp != "+OK Logging out" {
			t.Errorf("QUIT a minute early: %q", resp)
		}
		if n := len(upstreamState(t, u)); n != 4 {
			t.Fatalf("%d messages left a minute before the retention ended, want 4", n)
		}
		clock.advance(time.Minute)
		// Due now, but a session without QUIT removes nothing.
		popSession(t, p, u.user, u.pass, false)
		if n := len(upstreamState(t, u)); n != 4 {
			t.Fatalf("a dropped session removed mail: %d messages left", n)
		}
		if resp := popSession(t, p, u.user, u.pass, true); resp != "+OK Logging out, 2 messages deleted (2 of them expired)" {
			t.Errorf("QUIT after the retention: %q", resp)
		}
		if got := uidsOf(upstreamState(t, u)); !slices.Equal(got, []imap.UID{before[2].UID, before[3].UID}) {
			t.Errorf("INBOX UIDs %v, want the two never retrieved by a session that QUIT (%d, %d)", got, before[2].UID, before[3].UID)
		}
	})
}

// A DELE of its own and an expired message in one UPDATE; a later RETR of
// an old message does not restart its clock.
func TestRetentionJoinsTheClientsDeletes(t *testing.T) {
	u := startDovecotUpstream(t)
	deliverN(t, u, 3)
	before := upstreamState(t, u)
	p, clock := retentionProxy(t, u, func(c *config.Config) { c.Policy.RetentionDays = 2 })
	popSession(t, p, u.user, u.pass, true, "RETR 1")
	clock.advance(day)
	popSession(t, p, u.user, u.pass, true, "RETR 1", "RETR 2")
	clock.advance(day)
	if resp := popSession(t, p, u.user, u.pass, true, "DELE 3"); resp != "+OK Logging out, 2 messages deleted (1 of them expired)" {
		t.Errorf("QUIT: %q", resp)
	}
	if got := uidsOf(upstreamState(t, u)); !slices.Equal(got, []imap.UID{before[1].UID}) {
		t.Errorf("INBOX UIDs %v, want only message 2 (retrieved a day ago)", got)
	}
}

func TestRetentionInDeviceViewsWaitsForEveryKnownDevice(t *testing.T) {
	eachRetentionUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 2)
		p, clock := retentionProxy(t, u, func(c *config.Config) {
			c.Policy.Delete = imapback.DeleteExpunge
			c.Policy.RetentionDays = 7
			c.Policy.Devices.Separator = "#"
			c.Policy.Devices.Known = []string{"laptop", "scanner"}
			c.Policy.Devices.DeleteWhenAllDeleted = true
		})
		laptop, scanner := u.user+"#laptop", u.user+"#scanner"
		popSession(t, p, laptop, u.pass, true, "RETR 1", "RETR 2")
		clock.advance(3 * day)
		popSession(t, p, scanner, u.pass, true, "RETR 1", "RETR 2")

		clock.advance(4 * day) // 7 days for the laptop, 4 for the scanner
		if resp := popSession(t, p, laptop, u.pass, true); resp != "+OK Logging out, 2 messages marked deleted on the server (2 of them expired)" {
			t.Errorf("laptop's QUIT after its retention: %q", resp)
		}
		after := upstreamState(t, u)
		if len(after) != 2 {
			t.Fatalf("%d messages left once only the laptop was done, want 2", len(after))
		}
		for _, m := range after {
			if !hasFlag(m.Flags, imapback.DeviceKeyword("laptop")) || hasFlag(m.Flags, imapback.DeviceKeyword("scanner")) {
				t.Errorf("UID %d flags %v, want the laptop's delete mark only", m.UID, m.Flags)
			}
		}
		c := pop3test.Dial(t, p.addr)
		c.Login(laptop, u.pass)
		if n, _ := c.Stat(); n != 0 {
			t.Errorf("the laptop's view still lists %d messages", n)
		}
		c.Quit()

		clock.advance(3 * day) // 7 days for the scanner too
		if resp := popSession(t, p, scanner, u.pass, true); resp != "+OK Logging out, 2 messages deleted (2 of them expired)" {
			t.Errorf("scanner's QUIT after its retention: %q", resp)
		}
		if n := len(upstreamState(t, u)); n != 0 {
			t.Errorf("%d messages left once every device was done, want none", n)
		}
	})
}

// EXPIRE before login is the lowest value with USER when logins differ;
// after login each session states its own, or none.
func TestRetentionCapaPerUser(t *testing.T) {
	u := startMemUpstream(t)
	deliverN(t, u, 1)
	thirty := 30
	p, _ := retentionProxy(t, u, func(c *config.Config) {
		c.Policy.RetentionDays = 7
		c.Policy.Devices.Separator = "#"
		c.Policy.Rules = []config.PolicyRule{
			{Devices: []string{"archive"}, RetentionDays: new(int)},
			{Devices: []string{"phone"}, RetentionDays: &thirty},
		}
	})
	const head = "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
	c := pop3test.Dial(t, p.addr)
	if got, want := string(c.Multi("CAPA")), head+"USER\r\nSASL PLAIN LOGIN\r\nEXPIRE 7 USER\r\nIMPLEMENTATION popbridge\r\n"; got != want {
		t.Errorf("CAPA before login:\n%q\nwant\n%q", got, want)
	}
	c.Quit()
	for device, expire := range map[string]string{"": "EXPIRE 7\r\n", "#phone": "EXPIRE 30\r\n", "#archive": ""} {
		c := pop3test.Dial(t, p.addr)
		c.Login(u.user+device, u.pass)
		if got, want := string(c.Multi("CAPA")), head+expire+"IMPLEMENTATION popbridge\r\n"; got != want {
			t.Errorf("CAPA after login as %q:\n%q\nwant\n%q", u.user+device, got, want)
		}
		c.Quit()
	}
}

// The hook's X-Popbridge-Retention-Days sets a session's retention, 0
// turns the configured one off; before login CAPA promises nothing.
func TestRetentionFromTheHook(t *testing.T) {
	u := startMemUpstream(t)
	deliverN(t, u, 2)
	hook := startTestHook(t, func(req http.Header) map[string]string {
		days := map[string]string{"alice": "3", "archive": "0"}[req.Get("Auth-User")]
		return okAt(t, u.addr, "Auth-User", "alice", "Auth-Pass", "secret", "X-Popbridge-Retention-Days", days)
	})
	clock := &testClock{}
	o := withHook(hook.url, func(c *config.Config) { c.Policy.RetentionDays = 5 })
	o.store = state.NewMemoryWithClock(clock.now)
	p := startProxy(t, "", o)

	c := pop3test.Dial(t, p.addr)
	if got := string(c.Multi("CAPA")); strings.Contains(got, "EXPIRE") {
		t.Errorf("CAPA before login with a hook: %q, want no EXPIRE", got)
	}
	c.Quit()
	capa := func(login string) string {
		c := pop3test.Dial(t, p.addr)
		c.Login(login, "x")
		defer c.Quit()
		return string(c.Multi("CAPA"))
	}
	if got := capa("alice"); !strings.Contains(got, "\r\nEXPIRE 3\r\n") {
		t.Errorf("CAPA after the hook's 3 days: %q", got)
	}
	if got := capa("archive"); strings.Contains(got, "EXPIRE") {
		t.Errorf("CAPA after the hook's 0: %q, want no EXPIRE", got)
	}
	popSession(t, p, "archive", "x", true, "RETR 1")
	popSession(t, p, "alice", "x", true, "RETR 2")
	clock.advance(3 * day)
	if resp := popSession(t, p, "archive", "x", true); resp != "+OK Logging out" {
		t.Errorf("archive's QUIT 3 days on: %q", resp)
	}
	if resp := popSession(t, p, "alice", "x", true); resp != "+OK Logging out, 1 messages deleted (1 of them expired)" {
		t.Errorf("alice's QUIT 3 days on: %q", resp)
	}
	if n := len(upstreamState(t, u)); n != 1 {
		t.Errorf("%d messages left, want 1", n)
	}
}

// A merged maildrop keeps one clock per message across its folders: what
// was retrieved from either folder goes from that folder, and nothing
// else.
func TestRetentionOverMergedFolders(t *testing.T) {
	u := startDovecotUpstream(t)
	u.deliver(t, testMessage(1, "inbox\r\n"))
	imc := u.dial(t)
	appendMail(t, imc, "Junk", time.Now(), testMessage(2, "junk two\r\n"))
	appendMail(t, imc, "Junk", time.Now(), testMessage(3, "junk three\r\n"))
	p, clock := retentionProxy(t, u, func(c *config.Config) {
		c.Policy.RetentionDays = 3
		c.Upstream.Mailboxes = []string{"INBOX", "Junk"}
	})
	popSession(t, p, u.user, u.pass, true, "RETR 1", "RETR 3")
	clock.advance(3 * day)
	if resp := popSession(t, p, u.user, u.pass, true); resp != "+OK Logging out, 2 messages deleted (2 of them expired)" {
		t.Errorf("QUIT after the retention: %q", resp)
	}
	if got := subjects(folderState(t, imc, "INBOX")); len(got) != 0 {
		t.Errorf("INBOX after the retention: %q, want empty", got)
	}
	if got, want := subjects(folderState(t, imc, "Junk")), []string{"message 2"}; !slices.Equal(got, want) {
		t.Errorf("Junk after the retention: %q, want %q", got, want)
	}
}
