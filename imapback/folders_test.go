package imapback

// The trash folder and the maildrop found as folders.go says, against
// Courier (personal namespace "INBOX.") and Dovecot (personal namespace
// "").

import (
	"context"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/couriertest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// trashCase is one start of a server and where the deleted message must
// end up.
type trashCase struct {
	name    string
	server  string // a raceServers name
	folder  string // Policy.TrashFolder
	create  string // a folder that exists before the session
	landsIn string
}

func TestTrashFolderIsFoundUnderThePersonalNamespace(t *testing.T) {
	for _, tc := range []trashCase{
		{name: "default, created", server: "courier", landsIn: "INBOX.Trash"},
		{name: "default, existing", server: "courier", create: "INBOX.Trash", landsIn: "INBOX.Trash"},
		{name: "configured short", server: "courier", folder: "Deleted", landsIn: "INBOX.Deleted"},
		{name: "configured in full", server: "courier", folder: "INBOX.Deleted", landsIn: "INBOX.Deleted"},
		{name: "default, created", server: "dovecot", landsIn: "Trash"},
		{name: "configured, existing", server: "dovecot", folder: "Old", create: "Old", landsIn: "Old"},
	} {
		t.Run(tc.server+"/"+tc.name, func(t *testing.T) {
			i := slices.IndexFunc(raceServers, func(s raceServer) bool { return s.name == tc.server })
			addr := startFilled(t, raceServers[i], message(100), message(200))
			if tc.create != "" {
				if err := dialAlice(t, addr).Create(tc.create, nil).Wait(); err != nil {
					t.Fatal(err)
				}
			}
			s := loginPolicy(t, newBackend(t, Options{Address: addr}), Policy{Delete: DeleteTrash, TrashFolder: tc.folder})
			if _, _, err := s.Commit(context.Background(), []int{1}); err != nil {
				t.Fatalf("QUIT with one message deleted: %v", err)
			}
			if got := mailboxFlags(t, addr, tc.landsIn); len(got) != 1 {
				t.Errorf("%s holds %v, want the one deleted message", tc.landsIn, got)
			}
			inbox := mailboxFlags(t, addr, "INBOX")
			if _, ok := inbox[imap.UID(1)]; len(inbox) != 1 || !ok {
				t.Errorf("INBOX holds %v, want UID 1 alone", inbox)
			}
		})
	}
}

// A maildrop configured without Courier's "INBOX." prefix is found with
// it.
func TestMaildropIsFoundUnderThePersonalNamespace(t *testing.T) {
	srv := couriertest.Start(t, couriertest.Options{})
	c := dialAlice(t, srv.IMAPAddr)
	if err := c.Create("INBOX.Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	app := c.Append("INBOX.Work", int64(len(message(150))), nil)
	if _, err := app.Write(message(150)); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	s := login(t, newBackend(t, Options{Address: srv.IMAPAddr, Mailbox: "Work"}))
	if got := s.Messages(); len(got) != 1 || got[0].Size != 150 {
		t.Fatalf("snapshot of Work: %+v, want the one message of INBOX.Work", got)
	}
	if got := retrieveAll(t, s, 0); string(got) != string(message(150)) {
		t.Errorf("RETR: %q", got)
	}
	// Through the snapshot cache (Courier has no ESEARCH: the SEARCH
	// lists every UID), the folder found is the one cached.
	if c.Caps().Has(imap.CapESearch) {
		t.Fatalf("Courier offers ESEARCH now: %v", c.Caps())
	}
	p := newCachedPair(t, Options{Address: srv.IMAPAddr, Mailbox: "Work"})
	p.check(t, "first", CacheMiss, Policy{}).Close()
	p.check(t, "again", CacheHit, Policy{}).Close()
	testkit.AppendAll(t, c, "INBOX.Work", message(200))
	p.check(t, "new mail", CachePartial, Policy{}).Close()
}
