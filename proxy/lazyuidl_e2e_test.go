package proxy

// %m UIDLs made on the client's first UIDL, end to end against Dovecot:
// a session that never asks for them costs the upstream no header read,
// and the UIDLs it gets when it asks are those made at login (which
// retention and exact sizes ask for) and those from the snapshot cache.

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// tappedSent is what the proxy sent upstream through a tapped relay.
type tappedSent struct{ testkit.LockedBuffer }

// headerFetches counts the header FETCHes sent so far.
func (s *tappedSent) headerFetches() int {
	return strings.Count(s.String(), "BODY.PEEK[HEADER]")
}

// tapped starts a proxy with cfg's changes through a relay to upstream
// that records what the proxy sends.
func tapped(t *testing.T, upstream string, configure func(*config.Config)) (string, *tappedSent) {
	r := faultrelay.New(t, upstream)
	sent := &tappedSent{}
	r.Tap(faultrelay.Up, sent)
	return startProxy(t, r.Addr, proxyOptions{configure: configure}).addr, sent
}

func TestLazyUIDLsThroughDovecot(t *testing.T) {
	u := startDovecotUpstream(t)
	for i := 1; i <= 4; i++ {
		u.deliver(t, testMessage(i, "body\r\n"))
	}
	u.deliver(t, testMessage(2, "the same header as message 2\r\n"))
	u.dial(t) // Dovecot indexes the mail now
	format := func(c *config.Config) { c.Policy.UIDLFormat = "%m" }
	lazy, sent := tapped(t, u.addr, format)
	// Retention keys its stamps by UIDL: the UIDLs are made at login.
	eager, eagerSent := tapped(t, u.addr, func(c *config.Config) { format(c); c.Policy.RetentionDays = 30 })

	// A scanner: STAT, LIST, RETR, DELE, QUIT, no header read.
	c := pop3test.Dial(t, lazy)
	c.Login(u.user, u.pass)
	if n, _ := c.Stat(); n != 5 {
		t.Fatalf("STAT: %d messages, want 5", n)
	}
	c.Multi("LIST")
	c.Multi("RETR 1")
	c.OK("DELE 1")
	c.Quit()
	if n := sent.headerFetches(); n != 0 {
		t.Errorf("a session without UIDL fetched headers %d times, want none", n)
	}

	c = pop3test.Dial(t, eager)
	c.Login(u.user, u.pass)
	want := string(c.Multi("UIDL"))
	one := c.OK("UIDL 4")
	c.Quit()
	if n := eagerSent.headerFetches(); n != 1 || !strings.Contains(eagerSent.String(), "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])") {
		t.Errorf("with retention: %d header FETCHes, want the one with the sizes at login", n)
	}
	// Exact sizes are counted under UIDLs too: the same at login.
	exact, exactSent := tapped(t, u.addr, func(c *config.Config) { format(c); c.Upstream.ExactSizes = true })
	c = pop3test.Dial(t, exact)
	c.Login(u.user, u.pass)
	c.Stat()
	c.Quit()
	if !strings.Contains(exactSent.String(), "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])") {
		t.Errorf("with exact sizes the login did not fetch the headers with the sizes:\n%s", exactSent.String())
	}
	if !strings.HasSuffix(strings.Fields(want)[7], "-2") {
		t.Fatalf("UIDL at login %q: want message 4 told apart from message 1 (the same header)", want)
	}

	// UIDL n first, then the listing: one header FETCH for both.
	c = pop3test.Dial(t, lazy)
	c.Login(u.user, u.pass)
	if got := c.OK("UIDL 4"); got != one {
		t.Errorf("UIDL 4 on first need %q, at login %q", got, one)
	}
	if got := string(c.Multi("UIDL")); got != want {
		t.Errorf("UIDL on first need\n%s\nat login\n%s", got, want)
	}
	c.Quit()
	if n := sent.headerFetches(); n != 1 {
		t.Errorf("%d header FETCHes after a session with UIDL, want 1", n)
	}

	// Warm: the cache holds every hash now.
	c = pop3test.Dial(t, lazy)
	c.Login(u.user, u.pass)
	if got := string(c.Multi("UIDL")); got != want {
		t.Errorf("UIDL from the cache\n%s\nat login\n%s", got, want)
	}
	c.Quit()
	if n := sent.headerFetches(); n != 1 {
		t.Errorf("a warm session fetched headers: %d FETCHes in all, want 1", n)
	}
}

// Another IMAP client expunges a message between the login and the
// first UIDL: the session still lists it, every other message keeps the
// UIDL it has at login, and RETR of the expunged one fails alone.
func TestLazyUIDLsExpungeBeforeUIDL(t *testing.T) {
	u := startDovecotUpstream(t)
	deliverN(t, u, 3)
	before := upstreamState(t, u)
	format := func(c *config.Config) { c.Policy.UIDLFormat = "%m" }
	eager, _ := tapped(t, u.addr, func(c *config.Config) { format(c); c.Policy.RetentionDays = 30 })
	c := pop3test.Dial(t, eager)
	c.Login(u.user, u.pass)
	atLogin := strings.Split(string(c.Multi("UIDL")), "\r\n")
	c.Quit()

	lazy, sent := tapped(t, u.addr, format)
	c = pop3test.Dial(t, lazy)
	c.Login(u.user, u.pass)
	other := u.dial(t)
	flagDeleted(t, other, before[1].UID)
	if err := other.UIDExpunge(imap.UIDSetNum(before[1].UID)).Close(); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(string(c.Multi("UIDL")), "\r\n")
	if len(got) != len(atLogin) || got[0] != atLogin[0] || got[2] != atLogin[2] || got[1] == atLogin[1] {
		t.Errorf("UIDL after message 2 was expunged\n%q\nat login\n%q\nwant 1 and 3 unchanged, 2 another", got, atLogin)
	}
	if sent.headerFetches() != 1 {
		t.Errorf("%d header FETCHes, want 1", sent.headerFetches())
	}
	if reply := c.Cmd("RETR 2"); !strings.HasPrefix(reply, "-ERR") {
		t.Errorf("RETR of the expunged message: %q", reply)
	}
	if got := c.Multi("RETR 3"); !bytes.Equal(got, before[2].Body) {
		t.Errorf("RETR 3 after the expunge of 2 = %q", got)
	}
	c.Quit()
}
