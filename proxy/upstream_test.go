package proxy

import (
	"bytes"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/cyrustest"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/memimap"
)

// upstream is an IMAP server the end-to-end tests run against: go-imap's
// in-memory server or a real Dovecot, Cyrus or Courier.
type upstream struct {
	name       string
	addr       string
	user, pass string
	// nativePOP3 is the upstream's own POP3 server over the same mail, if
	// it has one (Dovecot): the reference for what a POP3 server sends.
	nativePOP3 string
	// deliver adds a message to the user's INBOX.
	deliver func(t *testing.T, raw []byte)
	// refuses, if set, reports messages the upstream cannot store as
	// given (deliver would fail the test).
	refuses func(raw []byte) bool
	// expungeLate: a message another client expunged stays readable for
	// a session until that session runs a command during which the
	// server may report the expunge, such as NOOP (Cyrus; RFC 3501
	// section 7.4.1 forbids EXPUNGE responses during FETCH, and Cyrus
	// does not send them during UID FETCH either).
	expungeLate bool
	// dial returns an independent IMAP client with INBOX selected, to
	// check what popbridge did.
	dial func(t *testing.T) *imapclient.Client
}

// upstreams lists the servers every end-to-end test runs against.
var upstreams = []struct {
	name  string
	start func(t *testing.T) *upstream
}{
	{"memimap", startMemUpstream},
	{"dovecot", startDovecotUpstream},
	{"cyrus", startCyrusUpstream},
	{"courier", startCourierUpstream},
}

// forEachUpstream runs f once per upstream kind, each with a fresh server.
func forEachUpstream(t *testing.T, f func(t *testing.T, u *upstream)) {
	for _, kind := range upstreams {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			f(t, kind.start(t))
		})
	}
}

func startMemUpstream(t *testing.T) *upstream {
	return startMemUpstreamCaps(t, nil)
}

func startMemUpstreamCaps(t *testing.T, caps imap.CapSet) *upstream {
	srv, err := memimap.Listen(memimap.Options{Caps: caps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.AddUser("alice", "secret")
	u := &upstream{name: "memimap", addr: srv.Addr, user: "alice", pass: "secret"}
	u.deliver = func(t *testing.T, raw []byte) {
		if err := srv.Append("alice", "INBOX", raw); err != nil {
			t.Fatal(err)
		}
	}
	u.dial = func(t *testing.T) *imapclient.Client { return dialIMAP(t, u) }
	return u
}

func startDovecotUpstream(t *testing.T) *upstream {
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}, POP3: true})
	u := &upstream{name: "dovecot", addr: d.IMAPAddr, user: "alice", pass: "secret", nativePOP3: d.POP3Addr}
	u.deliver = func(t *testing.T, raw []byte) { d.Deliver(t, "alice", raw) }
	u.dial = func(t *testing.T) *imapclient.Client { return dialIMAP(t, u) }
	return u
}

// startCyrusUpstream runs a private Cyrus IMAP server. Mail reaches it by
// IMAP APPEND, which Cyrus refuses for bare LF, NUL and empty messages
// (see internal/cyrustest); refuses reports such a message.
func startCyrusUpstream(t *testing.T) *upstream {
	c := cyrustest.Start(t, cyrustest.Options{Users: map[string]string{"alice": "secret"}})
	u := &upstream{name: "cyrus", addr: c.IMAPAddr, user: "alice", pass: "secret", expungeLate: true}
	u.deliver = func(t *testing.T, raw []byte) { c.Deliver(t, "alice", raw) }
	u.refuses = func(raw []byte) bool { return cyrusRefuses(raw) }
	u.dial = func(t *testing.T) *imapclient.Client { return dialIMAP(t, u) }
	return u
}

// cyrusRefuses tells which messages Cyrus's APPEND refuses: those with a
// bare LF or a NUL, the empty one, and one whose header runs to the end
// without a line end.
func cyrusRefuses(raw []byte) bool {
	if len(raw) == 0 || bytes.IndexByte(raw, 0) >= 0 {
		return true
	}
	if !bytes.Contains(raw, []byte("\r\n\r\n")) && !bytes.HasSuffix(raw, []byte("\r\n")) {
		return true
	}
	for i, b := range raw {
		if b == '\n' && (i == 0 || raw[i-1] != '\r') {
			return true
		}
	}
	return false
}

func dialIMAP(t *testing.T, u *upstream) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(u.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(u.user, u.pass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// upstreamMessage is what an independent IMAP client sees of a message.
type upstreamMessage struct {
	UID   imap.UID
	Size  int64
	Flags []imap.Flag
	Body  []byte
}

// mailboxState fetches every message of a mailbox with a fresh
// connection; nil if the mailbox does not exist or is empty.
func mailboxState(t *testing.T, u *upstream, name string) []upstreamMessage {
	t.Helper()
	c := u.dial(t)
	defer c.Close()
	// go-imap sets Mailbox() just after Select().Wait() returns: ask the
	// server instead.
	sel, err := c.Select(name, nil).Wait()
	if err != nil || sel.NumMessages == 0 {
		return nil
	}
	body := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{body},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]upstreamMessage, len(bufs))
	for i, b := range bufs {
		msgs[i] = upstreamMessage{UID: b.UID, Size: b.RFC822Size, Flags: b.Flags, Body: b.FindBodySection(body)}
	}
	return msgs
}

// upstreamState fetches every message of INBOX with a fresh connection.
func upstreamState(t *testing.T, u *upstream) []upstreamMessage {
	t.Helper()
	return mailboxState(t, u, "INBOX")
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}
