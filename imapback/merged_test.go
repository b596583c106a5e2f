package imapback

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/memimap"
)

func TestMergeUIDLs(t *testing.T) {
	junk := folderTag("Junk")
	long := strings.Repeat("a", 70)
	tests := []struct {
		name    string
		folders []string
		ids     [][]string
		want    []string
	}{
		{"first folder unchanged, second tagged", []string{"INBOX", "Junk"},
			[][]string{{"0000000100000005", "0000000200000005"}, {"0000000100000005"}},
			[]string{"0000000100000005", "0000000200000005", "0000000100000005" + junk}},
		{"same id in both folders (a copy under %m)", []string{"INBOX", "Junk"},
			[][]string{{"hash"}, {"hash"}},
			[]string{"hash", "hash" + junk}},
		{"an imported id that ends like the tag", []string{"INBOX", "Junk"},
			[][]string{{"x" + junk}, {"x"}},
			[]string{"x" + junk, "x" + junk + "-2"}},
		{"too long for the tag", []string{"INBOX", "Junk"},
			[][]string{{long}, {long, long[:69] + "b"}},
			[]string{long, long[:61] + junk, long[:61] + junk[:7] + "-2"}},
		{"an empty folder", []string{"INBOX", "Junk", "Spam"},
			[][]string{{"1"}, nil, {"1"}},
			[]string{"1", "1" + folderTag("Spam")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeUIDLs(tt.folders, tt.ids)
			for i := range got {
				if len(got[i]) > 70 || checkUIDL(got[i]) != nil {
					t.Errorf("id %q not a valid unique-id", got[i])
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFolderTag(t *testing.T) {
	if folderTag("inbox") != folderTag("INBOX") {
		t.Error("INBOX's tag depends on its case")
	}
	if folderTag("junk") == folderTag("Junk") {
		t.Error("folders other than INBOX are case-sensitive in IMAP; their tags should differ")
	}
	if tag := folderTag("Ünïcode/Ordner"); len(tag) != 9 || checkUIDL(tag) != nil {
		t.Errorf("tag %q: want 9 printable ASCII characters", tag)
	}
}

func TestCheckMailboxes(t *testing.T) {
	for _, tt := range []struct {
		names []string
		ok    bool
	}{
		{nil, true},
		{[]string{"INBOX", "Junk"}, true},
		{[]string{"INBOX", "inbox"}, false},
		{[]string{"INBOX", "Ju*nk"}, false},
		{[]string{"a", "b", "c", "d", "e"}, false},
	} {
		if err := CheckMailboxes(tt.names); (err == nil) != tt.ok {
			t.Errorf("CheckMailboxes(%q) = %v, want ok %v", tt.names, err, tt.ok)
		}
	}
}

// openMergedMem opens alice's INBOX and Junk on a memory upstream, one
// message in each, with reconnects off.
func openMergedMem(t *testing.T) (*memimap.Server, *Merged) {
	t.Helper()
	srv := startMem(t, message(100))
	if err := dialAlice(t, srv.Addr).Create("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Append(alice.User, "Junk", message(200)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, Options{Address: srv.Addr, NoReconnect: true, Mailboxes: []string{"INBOX", "Junk"}})
	md, err := b.Open(context.Background(), alice, b.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	m, ok := md.(*Merged)
	if !ok {
		t.Fatalf("Open of two folders returned a %T", md)
	}
	return srv, m
}

// A folder whose upstream connection is gone at QUIT fails alone: the
// other folder's delete stands and is counted, the error names the
// folder that failed, and its message stays.
func TestMergedCommitOneFolderFails(t *testing.T) {
	srv, m := openMergedMem(t)
	if got := m.Messages(); len(got) != 2 || got[0].Size != 100 || got[1].Size != 200 {
		t.Fatalf("snapshot %+v, want INBOX's 100 octets then Junk's 200", got)
	}
	m.parts[1].nc.Close() // Junk's connection
	<-m.parts[1].c.Closed()
	removed, flagged, err := m.Commit(context.Background(), []int{0, 1})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `folder "Junk"`) || strings.Contains(err.Error(), `"INBOX"`) {
		t.Errorf("Commit error %v, want Junk's ErrUnavailable alone", err)
	}
	if removed != 1 || flagged != 0 {
		t.Errorf("removed %d, flagged %d; want INBOX's 1 removed", removed, flagged)
	}
	if n := len(mailboxFlags(t, srv.Addr, "INBOX")); n != 0 {
		t.Errorf("INBOX holds %d messages after its commit, want 0", n)
	}
	if f := mailboxFlags(t, srv.Addr, "Junk"); len(f) != 1 {
		t.Errorf("Junk holds %d messages after its failed commit, want 1", len(f))
	}
}

// Each folder commits its own messages only, and one without any
// deleted still commits (its seen policy).
func TestMergedCommitPerFolder(t *testing.T) {
	srv, m := openMergedMem(t)
	if removed, _, err := m.Commit(context.Background(), []int{1}); err != nil || removed != 1 {
		t.Fatalf("Commit of Junk's message: removed %d, %v", removed, err)
	}
	if n := len(mailboxFlags(t, srv.Addr, "INBOX")); n != 1 {
		t.Errorf("INBOX holds %d messages, want its 1 untouched", n)
	}
	if n := len(mailboxFlags(t, srv.Addr, "Junk")); n != 0 {
		t.Errorf("Junk holds %d messages, want 0", n)
	}
}

// A wrong password fails the first folder's login and no other is tried.
func TestMergedWrongPasswordOneLogin(t *testing.T) {
	srv := startMem(t)
	u := tapUpstream(t, srv.Addr)
	b := newBackend(t, Options{Address: u.Addr, Mailboxes: []string{"INBOX", "Junk", "Spam"}})
	_, err := b.Open(context.Background(), Credentials{User: "alice", Password: "wrong"}, b.DefaultPolicy())
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Open with a wrong password: %v", err)
	}
	if n := u.count("AUTHENTICATE") + u.count("LOGIN"); n != 1 {
		t.Errorf("%d login attempts upstream, want 1", n)
	}
}
