package imapback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/cyrustest"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// mail returns a message with its own Message-ID and Subject.
func mail(n int) []byte {
	return fmt.Appendf(nil, "From: a@example.org\r\nMessage-ID: <%d@example.org>\r\nSubject: message %d\r\n\r\nbody %d\r\n", n, n, n)
}

func uidlFormat(t testing.TB, s string) *UIDLFormat {
	t.Helper()
	f, err := ParseUIDLFormat(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// uidls returns the UIDLs of s, loaded first if the snapshot left them
// for their first need; an error takes the place of the list.
func uidls(s *Session) []string {
	if err := s.LoadUIDLs(context.Background()); err != nil {
		return []string{"LoadUIDLs: " + err.Error()}
	}
	var ids []string
	for _, m := range s.Messages() {
		ids = append(ids, m.UIDL)
	}
	return ids
}

// The in-memory server has no message identity: a %g format fails the
// login with an error naming what it would need; %m works, and equal
// headers get distinct ids.
func TestUIDLIdentitiesInMemory(t *testing.T) {
	dup := mail(1)
	srv := startMem(t, dup, mail(2), dup)
	_, err := loginAs(newBackend(t, Options{Address: srv.Addr, UIDL: uidlFormat(t, "%g")}), alice.User, alice.Password)
	if !errors.Is(err, ErrNoIdentity) || !errors.Is(err, ErrMailbox) || !strings.Contains(err.Error(), "OBJECTID") {
		t.Fatalf("login with %%g on a server without identities: %v", err)
	}
	s := login(t, newBackend(t, Options{Address: srv.Addr, UIDL: uidlFormat(t, "%m")}))
	h1, _ := HeaderHash(bytes.NewReader(dup))
	h2, _ := HeaderHash(bytes.NewReader(mail(2)))
	want := []string{h1, h2, h1 + "-2"}
	if got := uidls(s); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("UIDLs = %q, want %q", got, want)
	}
}

// An imported map gives its UIDLs to the messages it names; the others
// get the format's, and an imported id equal to a made one is told apart.
func TestUIDLMapOverridesFormat(t *testing.T) {
	srv := startMem(t, mail(1), mail(2), mail(3))
	s0 := login(t, newBackend(t, Options{Address: srv.Addr}))
	uv := s0.rc.uidValidity
	m := staticMap{uv: uv, ids: map[imap.UID]string{1: "old-one", 3: s0.Messages()[1].UIDL}}
	s := login(t, newBackend(t, Options{Address: srv.Addr, UIDLMap: m}))
	want := []string{"old-one", s0.Messages()[1].UIDL, s0.Messages()[1].UIDL + "-2"}
	if got := uidls(s); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("UIDLs = %q, want %q", got, want)
	}
}

type staticMap struct {
	uv  uint32
	ids map[imap.UID]string
}

func (m staticMap) UIDLs(user string, uidValidity uint32) (map[imap.UID]string, error) {
	if user != alice.User || uidValidity != m.uv {
		return nil, nil
	}
	return m.ids, nil
}

// With %m the UIDLs of a mailbox survive its re-creation by APPEND (a
// restore, a move to another server); with the default format they do
// not, which is what the test must tell apart.
func testHeaderHashSurvivesRecreate(t *testing.T, addr string, c *imapclient.Client) {
	msgs := [][]byte{mail(1), mail(2), mail(1), mail(3)}
	testkit.RecreateMailbox(t, c, "Test", msgs...)
	snap := func(format string) (*Session, []string) {
		s := login(t, newBackend(t, Options{Address: addr, Mailbox: "Test", UIDL: uidlFormat(t, format)}))
		ids := uidls(s)
		s.Close()
		return s, ids
	}
	s1, before := snap("%m")
	_, defBefore := snap(DefaultUIDLFormat)
	if len(before) != len(msgs) || before[2] != before[0]+"-2" {
		t.Fatalf("UIDLs = %q: want 4, the third the first's with -2", before)
	}
	testkit.RecreateMailbox(t, c, "Test", msgs...)
	s2, after := snap("%m")
	_, defAfter := snap(DefaultUIDLFormat)
	if s1.rc.uidValidity == s2.rc.uidValidity && s1.Messages()[0].UID == s2.Messages()[0].UID {
		t.Fatalf("the mailbox was not recreated (UIDVALIDITY %d)", s2.rc.uidValidity)
	}
	if strings.Join(before, " ") != strings.Join(after, " ") {
		t.Errorf("%%m UIDLs changed with the mailbox: %q, then %q", before, after)
	}
	if defBefore[0] == defAfter[0] {
		t.Errorf("default UIDLs did not change (%q): the recreation proves nothing", defBefore)
	}
}

func TestUIDLHeaderHashDovecot(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	testHeaderHashSurvivesRecreate(t, d.IMAPAddr, d.Dial(t, "alice"))
}

func TestUIDLHeaderHashCyrus(t *testing.T) {
	cy := cyrustest.Start(t, cyrustest.Options{})
	testHeaderHashSurvivesRecreate(t, cy.IMAPAddr, cy.Dial(t, "alice"))
}

// testIdentitySurvivesMove: %g UIDLs are the server's identities, which
// stay with a message moved out of the mailbox and back (new UIDs).
func testIdentitySurvivesMove(t *testing.T, addr string, c *imapclient.Client) {
	testkit.RecreateMailbox(t, c, "Test", mail(1), mail(2), mail(3))
	testkit.RecreateMailbox(t, c, "Elsewhere")
	snap := func() []Message {
		s := login(t, newBackend(t, Options{Address: addr, Mailbox: "Test", UIDL: uidlFormat(t, "%g")}))
		defer s.Close()
		return s.Messages()
	}
	before := snap()
	for i, m := range before {
		if len(m.UIDL) == 0 || i > 0 && m.UIDL == before[i-1].UIDL {
			t.Fatalf("UIDLs %v: want distinct identities", before)
		}
	}
	for _, from := range []string{"Test", "Elsewhere"} {
		if _, err := c.Select(from, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Move(imap.SeqSet{{Start: 1, Stop: 0}}, map[string]string{"Test": "Elsewhere", "Elsewhere": "Test"}[from]).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	after := snap()
	if len(after) != len(before) || after[0].UID == before[0].UID {
		t.Fatalf("after the moves: %v (before %v): the UIDs should have changed", after, before)
	}
	for i := range before {
		if after[i].UIDL != before[i].UIDL {
			t.Errorf("message %d: UIDL %q, then %q after a move out and back", i+1, before[i].UIDL, after[i].UIDL)
		}
	}
}

func TestUIDLIdentityDovecot(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	// In a maildir Dovecot's GUID is the file's name, which a MOVE or COPY
	// keeps (rename, link); in dbox it is 32 hex digits.
	testIdentitySurvivesMove(t, d.IMAPAddr, d.Dial(t, "alice"))
}

func TestUIDLIdentityCyrus(t *testing.T) {
	cy := cyrustest.Start(t, cyrustest.Options{})
	c := cy.Dial(t, "alice")
	if !c.Caps().Has("OBJECTID") {
		t.Fatalf("Cyrus does not offer OBJECTID: %v", c.Caps())
	}
	testIdentitySurvivesMove(t, cy.IMAPAddr, c)
}

// A login with %g reads the identities beside go-imap: the session goes
// on to stream messages over the same connection.
func TestUIDLIdentityThenRetrieve(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	d.Deliver(t, "alice", mail(1))
	d.Deliver(t, "alice", mail(2))
	s := login(t, newBackend(t, Options{Address: d.IMAPAddr, UIDL: uidlFormat(t, "%g")}))
	if got := retrieveAll(t, s, 1); !bytes.Equal(got, mail(2)) {
		t.Errorf("RETR 2 = %q, want %q", got, mail(2))
	}
	if err := s.Noop(context.Background()); err != nil {
		t.Error(err)
	}
}

// A cold %m snapshot whose UIDLs are needed at login asks for the
// headers in the FETCH of the sizes, sent with the SELECT: one pass over
// the mailbox, no second FETCH.
func TestUIDLHeaderHashOneFetch(t *testing.T) {
	srv := startMem(t, mail(1), mail(2), mail(3))
	u := tapUpstream(t, srv.Addr)
	s := login(t, newBackend(t, Options{Address: u.Addr, UIDL: uidlFormat(t, "%m"), UIDLsAtLogin: true}))
	defer s.Close()
	var fetches []string
	for _, line := range strings.Split(u.sent.String(), "\r\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "UID" && f[2] == "FETCH" {
			fetches = append(fetches, strings.Join(f[1:], " "))
		}
	}
	want := "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])"
	if len(fetches) != 1 || fetches[0] != want {
		t.Errorf("the snapshot sent %q, want only %q", fetches, want)
	}
	for i, m := range s.Messages() {
		h, err := HeaderHash(strings.NewReader(string(mail(i + 1))))
		if err != nil || m.UIDL != h {
			t.Errorf("message %d: UIDL %q, want its header hash %q (%v)", i+1, m.UIDL, h, err)
		}
	}
}
