package proxy

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/dovecottest"
	fr "github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
)

// The upstream fails between the STORE \Deleted and the UID EXPUNGE of
// UPDATE: the client gets -ERR [SYS/TEMP] and the messages stay, flagged
// \Deleted. The next session lists them again with the same numbers'
// worth of UIDLs (as Dovecot's own POP3 server does: \Deleted mail is
// still mail until someone expunges it), so a client that retries its
// deletes repairs the state, and popbridge still expunges nothing it was
// not asked to, another client's \Deleted message included
// (docs/reliability.md, "UPDATE interrupted").
func TestInterruptedUpdateIsRepairedByTheNextSession(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}, POP3: true})
	for i := 1; i <= 3; i++ {
		d.Deliver(t, "alice", testMessage(i, "body\r\n"))
	}
	other := d.Dial(t, "alice")
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uids := mailboxUIDs(t, other)
	flagDeleted(t, other, uids[2]) // another client's, not ours to expunge
	other.Close()

	relay := fr.New(t, d.IMAPAddr)
	relay.Arm(fr.Fault{Dir: fr.Up, Match: "UID EXPUNGE", Action: fr.Cut})
	addr := startProxyAt(t, relay.Addr, nil)

	c := pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	uidl := c.Multi("UIDL")
	c.OK("DELE 1")
	c.OK("DELE 2")
	if resp := c.Quit(); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
		t.Fatalf("QUIT with the upstream cut before UID EXPUNGE = %q", resp)
	}
	if got := cellState(t, d, "alice", uids); got != "1:D 2:D 3:D" {
		t.Fatalf("mailbox after the interrupted UPDATE: %q, want every message flagged \\Deleted", got)
	}

	// The next session sees the same maildrop, like Dovecot's POP3.
	c = pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	if got := c.Multi("UIDL"); string(got) != string(uidl) {
		t.Errorf("UIDL after the interrupted UPDATE = %q, want %q as before", got, uidl)
	}
	ref := pop3test.Dial(t, d.POP3Addr)
	ref.Login("alice", "secret")
	if got, want := c.OK("STAT"), ref.OK("STAT"); got != want {
		t.Errorf("STAT: popbridge %q, Dovecot's POP3 %q", got, want)
	}
	ref.Quit()

	// The client retries its deletes; this time UPDATE completes.
	c.OK("DELE 1")
	c.OK("DELE 2")
	if resp := c.Quit(); resp != "+OK Logging out, 2 messages deleted" {
		t.Fatalf("QUIT of the repairing session = %q", resp)
	}
	if got := cellState(t, d, "alice", uids); got != "1:- 2:- 3:D" {
		t.Errorf("mailbox after the repair: %q, want only the other client's \\Deleted message", got)
	}
}
