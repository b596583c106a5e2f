package imapback

// %m UIDLs made on first need (lazyuidl.go), against Dovecot: what goes
// upstream when, and that the UIDLs equal those made at login and those
// from the cache, equal headers, expunges and merged folders included.

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// headerFetches counts the FETCHes of headers sent upstream so far.
func (u *tappedUpstream) headerFetches() int {
	return strings.Count(u.sent.String(), "BODY.PEEK[HEADER]")
}

func TestLazyUIDLsDovecot(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	c := d.Dial(t, "alice")
	box := mailboxFor(t)
	// Equal headers (1, 3 and 4) get suffixes in mailbox order.
	testkit.RecreateMailbox(t, c, box, mail(1), mail(2), mail(1), mail(1), mail(3))
	opts := Options{Address: d.IMAPAddr, Mailbox: box, UIDL: uidlFormat(t, "%m")}
	atLogin := opts
	atLogin.UIDLsAtLogin = true
	want := uidls(login(t, newBackend(t, atLogin)))
	if len(want) != 5 || want[2] != want[0]+"-2" || want[3] != want[0]+"-3" {
		t.Fatalf("UIDLs at login %q: want 5, the third and fourth the first's with -2, -3", want)
	}

	t.Run("session without UIDL", func(t *testing.T) {
		u := tapUpstream(t, d.IMAPAddr)
		o := opts
		o.Address = u.Addr
		s := login(t, newBackend(t, o))
		if m := s.Messages(); len(m) != 5 || m[0].UIDL != "" {
			t.Fatalf("snapshot %s: want 5 messages without UIDLs", describe(m))
		}
		retrieveAll(t, s, 1)
		if err := s.Noop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := u.headerFetches(); n != 0 {
			t.Errorf("login, RETR and NOOP fetched headers %d times, want none:\n%s", n, u.sent.String())
		}
		if got := uidls(s); !slices.Equal(got, want) {
			t.Errorf("UIDLs on first need %q, at login %q", got, want)
		}
		if got := uidls(s); !slices.Equal(got, want) || u.headerFetches() != 1 {
			t.Errorf("UIDLs asked again: %q after %d header FETCHes, want %q after one", got, u.headerFetches(), want)
		}
	})

	t.Run("through the cache", func(t *testing.T) {
		u := tapUpstream(t, d.IMAPAddr)
		o := opts
		o.Address, o.SnapshotCache = u.Addr, NewSnapshotCache(1<<20)
		b := newBackend(t, o)
		login(t, b).Close() // no UIDL: the entry gets no hashes
		s := login(t, b)
		if got := uidls(s); !slices.Equal(got, want) {
			t.Errorf("UIDLs on first need after a login without them %q, want %q", got, want)
		}
		s.Close()
		before := u.headerFetches()
		warm := login(t, b)
		if warm.lazy != nil || !slices.Equal(uidls(warm), want) || u.headerFetches() != before {
			t.Errorf("warm login: UIDLs %q (left for later: %v) with %d more header FETCHes; want %q at login, none fetched",
				uidls(warm), warm.lazy != nil, u.headerFetches()-before, want)
		}
	})

	t.Run("retention takes them at login", func(t *testing.T) {
		u := tapUpstream(t, d.IMAPAddr)
		o := opts
		o.Address = u.Addr
		s := loginPolicy(t, newBackend(t, o), Policy{RetentionDays: 7})
		if s.lazy != nil || s.Messages()[4].UIDL != want[4] || !strings.Contains(u.sent.String(), "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])") {
			t.Errorf("with retention: %s, upstream got\n%s\nwant the UIDLs made at login with the sizes", describe(s.Messages()), u.sent.String())
		}
	})

	t.Run("merged folders", func(t *testing.T) {
		other := mailboxFor(t) + "x"
		testkit.RecreateMailbox(t, c, other, mail(1), mail(4))
		merged := func(o Options) []string {
			o.Mailbox, o.Mailboxes = "", []string{box, other}
			b := newBackend(t, o)
			md, err := b.Open(context.Background(), alice, b.DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			defer md.Close()
			if err := md.LoadUIDLs(context.Background()); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range md.Messages() {
				ids = append(ids, m.UIDL)
			}
			return ids
		}
		lazy, eager := merged(opts), merged(atLogin)
		if len(lazy) != 7 || !slices.Equal(lazy, eager) || lazy[5] == lazy[0] {
			t.Errorf("merged UIDLs on first need %q, at login %q: want 7, equal, distinct", lazy, eager)
		}
	})
}

// A message expunged by another client between the login and the UIDL
// keeps its place with the default format's UIDL; every other message
// gets the UIDL it had at login, but for the one with the same header,
// which keeps the plain id the next session gives it too.
func TestLazyUIDLsExpungedBeforeUIDL(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	c := d.Dial(t, "alice")
	box := mailboxFor(t)
	testkit.RecreateMailbox(t, c, box, mail(1), mail(2), mail(1), mail(3))
	opts := Options{Address: d.IMAPAddr, Mailbox: box, UIDL: uidlFormat(t, "%m")}
	atLogin := opts
	atLogin.UIDLsAtLogin = true
	want := uidls(login(t, newBackend(t, atLogin)))

	s := login(t, newBackend(t, opts))
	gone := s.Messages()[0].UID
	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	expunge(t, c, imap.UIDSetNum(gone))
	got := uidls(s)
	stand := defaultUIDL.Format(uint32(gone), s.rc.uidValidity)
	if len(got) != 4 || got[0] != stand || got[1] != want[1] || got[2] != want[0] || got[3] != want[3] {
		t.Errorf("UIDLs after an expunge %q; at login %q: want %q first, then %q %q %q", got, want, stand, want[1], want[0], want[3])
	}
	next := uidls(login(t, newBackend(t, atLogin)))
	if !slices.Equal(next, got[1:]) {
		t.Errorf("the next session's UIDLs %q, want %q", next, got[1:])
	}
}
