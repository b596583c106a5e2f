package uidlmap

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// Dovecot's own pop3_migration plugin is the reference for the header
// hash and the matching: a second Dovecot, holding copies of the old
// server's mail that servers and migrations alter in ways the hash
// forgives, serves the old server's ids through pop3_migration. Ours must
// match exactly the same messages to exactly the same old ids.
func TestMatchAgreesWithDovecotPOP3Migration(t *testing.T) {
	hdr := func(n int, extra string) string {
		return fmt.Sprintf("From: a@example.org\r\nMessage-ID: <mig%d@example.org>\r\n%s", n, extra)
	}
	type pair struct{ old, new string } // "" : only on one side
	pairs := []pair{
		{hdr(1, "Subject: same\r\n\r\nbody\r\n"), hdr(1, "Subject: same\r\n\r\nbody\r\n")},
		{hdr(2, "Subject: x\r\n\r\nbody\r\n"), "Return-Path: <a@example.org>\r\n" + hdr(2, "Subject: x\r\n\r\nbody\r\n")},
		{hdr(3, "Subject: trailing   \r\n\r\nbody\r\n"), hdr(3, "Subject: trailing\r\n\r\nbody, longer\r\n")},
		{hdr(4, "Subject: caf\xc3\xa9\r\n\r\nbody\r\n"), hdr(4, "Subject: caf?\r\n\r\nbody\r\n")},
		{hdr(5, "X-UIDL: 123abc\r\nStatus: RO\r\n\r\nbody\r\n"), hdr(5, "\r\nbody\r\n")},
		{hdr(6, "Subject:\tx\r\n\r\nbody\r\n"), hdr(6, "Subject: x\r\n\r\nbody\r\n")},
		{hdr(7, "Subject: a\r\n folded\r\n\r\nbody\r\n"), hdr(7, "Subject: a folded\r\n\r\nbody\r\n")},
		{hdr(8, "Subject: dup\r\n\r\nbody\r\n"), hdr(8, "Subject: dup\r\n\r\nbody\r\n")},
		{hdr(8, "Subject: dup\r\n\r\nbody\r\n"), hdr(8, "Subject: dup\r\n\r\nbody\r\n")},
		{hdr(9, "Subject: changed\r\n\r\nbody\r\n"), hdr(9, "Subject: changed!\r\n\r\nbody\r\n")},
		{hdr(10, "Subject: only old\r\n\r\nbody\r\n"), ""},
		{"", hdr(11, "Subject: only new\r\n\r\nbody\r\n")},
	}
	// Ids of the old server's own shape, so that they cannot be taken for
	// the ids the migrated server makes of its own UIDs.
	old := dovecottest.Start(t, dovecottest.Options{POP3: true, ExtraConfig: "pop3_uidl_format = old%08Xu\n"})
	for _, p := range pairs {
		if p.old != "" {
			old.Deliver(t, "alice", []byte(p.old))
		}
	}
	_, oldPort, _ := net.SplitHostPort(old.POP3Addr)
	migrated := dovecottest.Start(t, dovecottest.Options{POP3: true, ExtraConfig: fmt.Sprintf(`
namespace inbox {
  inbox = yes
  separator = /
}
namespace migration {
  prefix = POP3-MIGRATION-NS/
  location = pop3c:
  list = no
  hidden = yes
  separator = /
}
protocol pop3 {
  mail_plugins = $mail_plugins pop3_migration
}
plugin {
  pop3_migration_mailbox = POP3-MIGRATION-NS/INBOX
  pop3_migration_ignore_missing_uidls = yes
  pop3_migration_ignore_extra_uidls = yes
}
pop3c_host = 127.0.0.1
pop3c_port = %s
pop3c_user = %%u
pop3c_password = secret
pop3c_ssl = no
`, oldPort)})
	c := migrated.Dial(t, "alice")
	for _, p := range pairs {
		if p.new != "" {
			testkit.AppendAll(t, c, "INBOX", []byte(p.new))
		}
	}
	ctx := context.Background()
	oldMsgs, err := ReadPOP3(ctx, POP3Source{Address: old.POP3Addr, User: "alice", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	// What Dovecot serves: the old id where pop3_migration matched.
	served, err := ReadPOP3(ctx, POP3Source{Address: migrated.POP3Addr, User: "alice", Password: "secret"})
	if err != nil {
		t.Fatalf("%v\n%s", err, migrated.Log())
	}
	_, fresh, err := ReadIMAP(c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(served) != len(fresh) {
		t.Fatalf("Dovecot's POP3 lists %d messages, IMAP %d", len(served), len(fresh))
	}
	// Dovecot lists migrated mail in the old server's order, so messages
	// are compared by content (header hash and size); equal ones as a
	// group, since either may take either old id.
	type content struct {
		hash string
		size int64
	}
	theirs := make(map[content][]string)
	matched := 0
	for _, m := range served {
		id := ""
		if strings.HasPrefix(m.UIDL, "old") {
			id = m.UIDL
			matched++
		}
		k := content{m.Hash, m.Size}
		theirs[k] = append(theirs[k], id)
	}
	r := Match(oldMsgs, fresh)
	mine := make(map[content][]string)
	for _, m := range fresh {
		k := content{m.Hash, m.Size}
		mine[k] = append(mine[k], r.UIDLs[m.UID])
	}
	for k, ids := range theirs {
		slices.Sort(ids)
		slices.Sort(mine[k])
		if !slices.Equal(ids, mine[k]) {
			t.Errorf("header hash %s, size %d: our old ids %q, pop3_migration's %q", k.hash, k.size, mine[k], ids)
		}
	}
	if matched < 8 {
		t.Errorf("pop3_migration matched only %d messages: the test proves little\n%s", matched, migrated.Log())
	}
}
