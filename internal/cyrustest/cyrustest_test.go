package cyrustest

import (
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/internal/testkit"
)

// The facts the package comment states about Cyrus, measured.
func TestCyrusStoresWhatThePackageCommentSays(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Users: map[string]string{"alice": "secret", "bob": "pw"}})
	for _, tc := range []struct {
		name    string
		raw     string
		stored  string // "" with refusal set
		refusal string
	}{
		{"CRLF", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n", ""},
		{"bare LF", "Subject: b\n\nline\n.dot\n", "", "bare newlines"},
		{"bare CR", "Subject: c\r\n\r\na\rb\r\n", "Subject: c\r\n\r\na\rb\r\n", ""},
		{"8-bit header", "Subject: caf\xe9\r\n\r\nx\r\n", "Subject: cafX\r\n\r\nx\r\n", ""},
		{"no final line end", "Subject: d\r\n\r\nlast", "Subject: d\r\n\r\nlast", ""},
		{"NUL", "Subject: e\r\n\r\na\x00b\r\n", "", "NUL"},
		{"empty", "", "", "Zero-length"},
		{"header without line end", "Subject: f\r\nX-A: b", "", "invalid header"},
		{"header-only", "Subject: g\r\nX-A: b\r\n", "Subject: g\r\nX-A: b\r\n", ""},
	} {
		err := s.TryDeliver(t, "alice", []byte(tc.raw))
		testkit.WantError(t, tc.name+": APPEND", err, tc.refusal)
		if err != nil || tc.refusal != "" {
			continue
		}
		c := s.Dial(t, "alice")
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		body := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(imap.SeqSetNum(sel.NumMessages), &imap.FetchOptions{
			RFC822Size: true, BodySection: []*imap.FetchItemBodySection{body},
		}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: FETCH: %v (%d messages)", tc.name, err, len(msgs))
		}
		if got := string(msgs[0].FindBodySection(body)); got != tc.stored {
			t.Errorf("%s: stored %q, want %q", tc.name, got, tc.stored)
		}
		if msgs[0].RFC822Size != int64(len(tc.stored)) {
			t.Errorf("%s: RFC822.SIZE %d, BODY[] has %d octets", tc.name, msgs[0].RFC822Size, len(tc.stored))
		}
		caps := c.Caps()
		for _, want := range []imap.Cap{imap.CapUIDPlus, imap.CapMove, imap.CapBinary} {
			if !caps.Has(want) {
				t.Errorf("capability %s missing: %v", want, caps)
			}
		}
		c.Close()
	}
	// Users are separate: bob's INBOX exists and is empty.
	c := s.Dial(t, "bob")
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 0 {
		t.Errorf("bob's INBOX: %v, %+v", err, sel)
	}
	if v := s.UIDValidity(t, "alice"); v == 0 {
		t.Error("UIDVALIDITY 0")
	}
}

// A wrong password is refused, and Stop leaves no process behind (the
// cleanup waits for the process group).
func TestWrongPasswordIsRefused(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Dial(t, "alice")
	c.Close()
	s.users["alice"] = "wrong"
	defer func() { s.users["alice"] = "secret" }()
	// Dial fails the test on a refused login: check by hand.
	cl, err := dialLogin(s.IMAPAddr, "alice", "wrong")
	if err == nil {
		cl.Close()
		t.Fatal("login with a wrong password succeeded")
	}
}
