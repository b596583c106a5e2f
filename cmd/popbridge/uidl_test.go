package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/uidlmap"
)

func uidlMessage(n int) []byte {
	return fmt.Appendf(nil, "From: a@example.org\r\nTo: alice@example.org\r\nSubject: old %d\r\nMessage-ID: <old%d@example.org>\r\n\r\nbody %d\r\n", n, n, n)
}

// The import against Dovecot's own POP3 server as the old one: its INBOX
// (read over POP3, or from its maildir) is migrated into "Migrated" with
// one message lost, one altered by a header the hash ignores, two equal
// ones, and one new message. popbridge then serves the old ids for the
// migrated messages and its format for the new one.
func TestUIDLImportFromDovecotPOP3(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{POP3: true})
	old := [][]byte{uidlMessage(1), uidlMessage(2), uidlMessage(3), uidlMessage(3), uidlMessage(4)}
	for _, m := range old {
		d.Deliver(t, "alice", m)
	}
	c := d.Dial(t, "alice")
	if err := c.Create("Migrated", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	testkit.AppendAll(t, c, "Migrated", uidlMessage(1), append([]byte("Return-Path: <a@example.org>\r\n"), uidlMessage(2)...),
		uidlMessage(3), uidlMessage(3), uidlMessage(5))

	oldIDs, err := uidlmap.ReadPOP3(context.Background(), uidlmap.POP3Source{Address: d.POP3Addr, User: "alice", Password: "secret"})
	if err != nil || len(oldIDs) != len(old) {
		t.Fatalf("the old server's listing: %v, %v", oldIDs, err)
	}
	t.Setenv("POPBRIDGE_PASSWORD", "secret")
	importWith := func(source ...string) (string, []byte) {
		dir := t.TempDir()
		args := append([]string{"uidl", "import", "-user", "alice", "-imap", d.IMAPAddr, "-imap-tls", "none",
			"-mailbox", "Migrated", "-out", dir}, source...)
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitPartial {
			t.Fatalf("uidl import %v = %d, want %d (one unmatched)\n%s%s", source, code, exitPartial, stdout.String(), stderr.String())
		}
		want := fmt.Sprintf("unmatched old %s size %d", oldIDs[4].UIDL, oldIDs[4].Size)
		if !strings.Contains(stdout.String(), want) || !strings.Contains(stdout.String(), "4 matched, 1 old unmatched, 1 new") {
			t.Errorf("uidl import %v reported %q, want %q and the counts", source, stdout.String(), want)
		}
		data, err := os.ReadFile(filepath.Join(dir, "alice.uidl"))
		if err != nil {
			t.Fatal(err)
		}
		return dir, data
	}
	dir, viaPOP3 := importWith("-pop3", d.POP3Addr)
	_, viaMaildir := importWith("-dovecot-maildir", filepath.Join(d.Dir, "home", "alice", "Maildir"))
	if !bytes.Equal(viaPOP3, viaMaildir) {
		t.Errorf("maps differ: over POP3\n%s\nfrom the maildir\n%s", viaPOP3, viaMaildir)
	}

	m, err := uidlmap.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := imapback.New(imapback.Options{Address: d.IMAPAddr, TLS: imapback.TLSNone, Mailbox: "Migrated", UIDLMap: m})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Login(context.Background(), imapback.Credentials{User: "alice", Password: "secret"}, b.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs := s.Messages()
	sel, err := c.Select("Migrated", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{oldIDs[0].UIDL, oldIDs[1].UIDL, oldIDs[2].UIDL, oldIDs[3].UIDL,
		fmt.Sprintf("%08x%08x", uint32(msgs[4].UID), sel.UIDValidity)}
	for i, m := range msgs {
		if m.UIDL != want[i] {
			t.Errorf("message %d: UIDL %q, want %q", i+1, m.UIDL, want[i])
		}
	}
}
