package testkit

// AppendAll and RecreateMailbox, for tests that fill a mailbox over IMAP
// (the server then picks its UIDs and UIDVALIDITY).

import (
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// AppendAll APPENDs msgs to mailbox, in order, and fails t on an error.
func AppendAll(t testing.TB, c *imapclient.Client, mailbox string, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		cmd := c.Append(mailbox, int64(len(m)), nil)
		if _, err := cmd.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("APPEND to %q: %v", mailbox, err)
		}
	}
}

// RecreateMailbox deletes mailbox (if it exists) and creates it anew with
// msgs, as a restore or a move to another server does: new UIDs and a new
// UIDVALIDITY for the same mail.
func RecreateMailbox(t testing.TB, c *imapclient.Client, mailbox string, msgs ...[]byte) {
	t.Helper()
	c.Delete(mailbox).Wait() // an error when it does not exist yet
	if err := c.Create(mailbox, nil).Wait(); err != nil {
		t.Fatalf("CREATE %q: %v", mailbox, err)
	}
	AppendAll(t, c, mailbox, msgs...)
}
