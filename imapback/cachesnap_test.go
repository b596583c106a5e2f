package imapback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/cyrustest"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// outcomes is an Observer that records the snapshot cache's outcomes.
type outcomes struct {
	mu   sync.Mutex
	seen []CacheOutcome
}

func (*outcomes) Connected(time.Duration, error)           {}
func (*outcomes) CommandDone(string, time.Duration, error) {}
func (o *outcomes) SnapshotCache(c CacheOutcome, _ int64) {
	o.mu.Lock()
	o.seen = append(o.seen, c)
	o.mu.Unlock()
}

func (o *outcomes) last() CacheOutcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) == 0 {
		return ""
	}
	return o.seen[len(o.seen)-1]
}

// cachedPair is a backend with a snapshot cache beside one without, on
// the same mailbox, to compare their snapshots.
type cachedPair struct {
	warm, fresh *Backend
	obs         *outcomes
}

func newCachedPair(t *testing.T, o Options) cachedPair {
	p := cachedPair{obs: &outcomes{}}
	p.fresh = newBackend(t, o)
	o.SnapshotCache, o.Observer = NewSnapshotCache(1<<20), p.obs
	p.warm = newBackend(t, o)
	return p
}

func describe(msgs []Message) string {
	var b strings.Builder
	for i, m := range msgs {
		fmt.Fprintf(&b, "%d:uid=%d,size=%d,uidl=%s ", i+1, m.UID, m.Size, m.UIDL)
	}
	return b.String()
}

// check logs in through the cache and without it: the snapshots, with
// their UIDLs (loaded if they were left for their first need), must be
// equal, and the cache's outcome the one wanted. It returns the cached
// session, open.
func (p cachedPair) check(t *testing.T, step string, want CacheOutcome, pol Policy) *Session {
	t.Helper()
	s := loginPolicy(t, p.warm, pol)
	f := loginPolicy(t, p.fresh, pol)
	defer f.Close()
	for _, x := range []*Session{s, f} {
		if err := x.LoadUIDLs(context.Background()); err != nil {
			t.Fatalf("%s: LoadUIDLs: %v", step, err)
		}
	}
	if got, exp := describe(s.Messages()), describe(f.Messages()); got != exp {
		t.Fatalf("%s: cached snapshot\n %s\nfresh snapshot\n %s", step, got, exp)
	}
	if got := p.obs.last(); got != want {
		t.Errorf("%s: cache outcome %q, want %q", step, got, want)
	}
	return s
}

func uidsOf(s *Session) []imap.UID {
	var uids []imap.UID
	for _, m := range s.Messages() {
		uids = append(uids, m.UID)
	}
	return uids
}

// testCacheSeesChanges changes the mailbox with another client between
// logins; every snapshot through the cache must equal a fresh one.
func testCacheSeesChanges(t *testing.T, addr string, c *imapclient.Client, format string, pol Policy) {
	box := mailboxFor(t)
	testkit.RecreateMailbox(t, c, box, mail(1), mail(2), mail(3), mail(4))
	p := newCachedPair(t, Options{Address: addr, Mailbox: box, UIDL: uidlFormat(t, format)})
	p.check(t, "first login", CacheMiss, pol).Close()
	s := p.check(t, "nothing changed", CacheHit, pol)
	s.Close()
	testkit.AppendAll(t, c, box, mail(5))
	p.check(t, "appended", CachePartial, pol).Close()
	p.check(t, "after the append", CacheHit, pol).Close()

	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uids := uidsOf(s)
	expunge(t, c, imap.UIDSetNum(uids[1]))
	p.check(t, "expunged", CacheHit, pol).Close()

	// The same message expunged and appended again: a new UID.
	expunge(t, c, imap.UIDSetNum(uids[2]))
	testkit.AppendAll(t, c, box, mail(3))
	after := p.check(t, "replaced", CachePartial, pol)
	after.Close()
	if n := len(after.Messages()); n != 4 || after.Messages()[3].UID == uids[2] {
		t.Fatalf("after the replace: %s", describe(after.Messages()))
	}

	err := c.Store(imap.UIDSetNum(uids[0], uids[3]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Close()
	if err != nil {
		t.Fatal(err)
	}
	p.check(t, "flags changed", CacheHit, pol).Close()

	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	testkit.RecreateMailbox(t, c, box, mail(10), mail(11), mail(12))
	again := p.check(t, "recreated", CacheMiss, pol)
	again.Close()
	if again.rc.uidValidity == s.rc.uidValidity {
		t.Fatalf("UIDVALIDITY %d did not change: the recreation proves nothing", s.rc.uidValidity)
	}
	p.check(t, "after the recreation", CacheHit, pol).Close()
}

// testCacheExpungeDuringSession: a session whose snapshot came from the
// cache numbers the mailbox's messages right, so that an EXPUNGE by
// another client during it marks exactly that message gone.
func testCacheExpungeDuringSession(t *testing.T, addr string, c *imapclient.Client) {
	box := mailboxFor(t)
	testkit.RecreateMailbox(t, c, box, mail(1), mail(2), mail(3), mail(4))
	p := newCachedPair(t, Options{Address: addr, Mailbox: box})
	first := p.check(t, "first login", CacheMiss, Policy{})
	uids := uidsOf(first)
	first.Close()
	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	expunge(t, c, imap.UIDSetNum(uids[0])) // the cached snapshot is now one off
	s := p.check(t, "expunged before", CacheHit, Policy{})
	expunge(t, c, imap.UIDSetNum(uids[2])) // message 2 of the session
	if err := s.Noop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, false} {
		if got := s.Expunged(i); got != want {
			t.Errorf("Expunged(%d) = %v, want %v (snapshot %s)", i, got, want, describe(s.Messages()))
		}
	}
	if _, err := s.Retrieve(context.Background(), 1, -1); !errors.Is(err, ErrGone) {
		t.Errorf("Retrieve of the expunged message: %v, want ErrGone", err)
	}
	if got := string(retrieveAll(t, s, 2)); got != string(mail(4)) {
		t.Errorf("message 3 = %q, want %q", got, mail(4))
	}
}

// mailboxFor names a mailbox of the test's own: Cyrus may still hold a
// mailbox of the test before for a moment, and refuse to recreate it.
func mailboxFor(t *testing.T) string {
	return "Cache" + strings.NewReplacer("%", "", "/", "", "_", "").Replace(t.Name())
}

func TestSnapshotCacheDovecot(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	for _, format := range []string{DefaultUIDLFormat, "%m", "%g"} {
		t.Run(format, func(t *testing.T) {
			testCacheSeesChanges(t, d.IMAPAddr, d.Dial(t, "alice"), format, Policy{})
		})
	}
	t.Run("device", func(t *testing.T) {
		testCacheSeesChanges(t, d.IMAPAddr, d.Dial(t, "alice"), "%m", Policy{Device: "phone"})
	})
	t.Run("expunge during session", func(t *testing.T) {
		testCacheExpungeDuringSession(t, d.IMAPAddr, d.Dial(t, "alice"))
	})
	t.Run("equal headers", func(t *testing.T) {
		testCacheEqualHeaders(t, d.IMAPAddr, d.Dial(t, "alice"))
	})
}

// testCacheEqualHeaders: messages with equal headers keep their suffixed
// %m UIDLs through the cache, session after session, and when the first
// of them goes, as without the cache.
func testCacheEqualHeaders(t *testing.T, addr string, c *imapclient.Client) {
	box := mailboxFor(t)
	testkit.RecreateMailbox(t, c, box, mail(1), mail(2), mail(1), mail(1))
	p := newCachedPair(t, Options{Address: addr, Mailbox: box, UIDL: uidlFormat(t, "%m")})
	p.check(t, "first login", CacheMiss, Policy{}).Close()
	for range 2 {
		s := p.check(t, "nothing changed", CacheHit, Policy{})
		s.Close()
		if m := s.Messages(); !strings.HasSuffix(m[2].UIDL, "-2") || !strings.HasSuffix(m[3].UIDL, "-3") {
			t.Fatalf("equal headers not told apart: %s", describe(m))
		}
	}
	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	s := p.check(t, "nothing changed", CacheHit, Policy{})
	s.Close()
	expunge(t, c, imap.UIDSetNum(s.Messages()[0].UID))
	p.check(t, "first expunged", CacheHit, Policy{}).Close()
	p.check(t, "after the expunge", CacheHit, Policy{}).Close()
}

func TestSnapshotCacheCyrus(t *testing.T) {
	cy := cyrustest.Start(t, cyrustest.Options{})
	for _, format := range []string{DefaultUIDLFormat, "%g"} {
		t.Run(format, func(t *testing.T) {
			testCacheSeesChanges(t, cy.IMAPAddr, cy.Dial(t, "alice"), format, Policy{})
		})
	}
	t.Run("expunge during session", func(t *testing.T) {
		testCacheExpungeDuringSession(t, cy.IMAPAddr, cy.Dial(t, "alice"))
	})
}

// A device view of a mailbox larger than the maximum maildrop serves
// what the view holds, as without the cache, which would need the whole
// mailbox's UIDs: such logins take the full snapshot every time.
func TestSnapshotCacheViewOfLargeMailbox(t *testing.T) {
	srv := startMem(t, mail(1), mail(2), mail(3), mail(4))
	c := otherDevice(t, srv.Addr)
	kw := DeviceKeyword("phone")
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{kw}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	p := newCachedPair(t, Options{Address: srv.Addr, MaxMessages: 3})
	for _, want := range []CacheOutcome{CacheMiss, CacheMiss} {
		s := p.check(t, "view", want, Policy{Device: "phone"})
		if n := len(s.Messages()); n != 3 {
			t.Fatalf("the view holds %d messages, want 3", n)
		}
		s.Close()
	}
}
