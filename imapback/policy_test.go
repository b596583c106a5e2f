package imapback

// Tests of the seen and delete policies and of per-device and
// max-age views.

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/memimap"
)

func TestSeenQuitSetsSeenAtCommitOnly(t *testing.T) {
	srv := startMem(t, message(100), message(200))
	b := newBackend(t, Options{Address: srv.Addr})
	for _, commit := range []bool{false, true} {
		s := loginPolicy(t, b, Policy{Seen: SeenQuit})
		retrieveAll(t, s, 1)
		s.Retrieved(1)
		if err := s.Noop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if f := mailboxFlags(t, srv.Addr, "INBOX")[2]; slices.Contains(f, imap.FlagSeen) {
			t.Fatalf("seen=quit: \\Seen set before QUIT: %v", f)
		}
		if commit {
			if _, _, err := s.Commit(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		flags := mailboxFlags(t, srv.Addr, "INBOX")
		if got := slices.Contains(flags[2], imap.FlagSeen); got != commit {
			t.Errorf("seen=quit, commit %v: retrieved message \\Seen = %v", commit, got)
		}
		if slices.Contains(flags[1], imap.FlagSeen) {
			t.Errorf("seen=quit: a message not retrieved got \\Seen: %v", flags[1])
		}
	}
}

func TestTrashMovesExactlyTheDeletedMessages(t *testing.T) {
	rev1 := imap.CapSet{imap.CapIMAP4rev1: {}}
	for _, tc := range []struct {
		name string
		caps imap.CapSet
		// want are the commands that must be sent, never those that must not.
		want, never []string
		expunged    bool // the INBOX originals are gone, not just \Deleted
	}{
		{"MOVE", nil, []string{"UID MOVE"}, []string{"UID COPY", "EXPUNGE", "UID EXPUNGE"}, true},
		{"UIDPLUS without MOVE", imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
			[]string{"UID COPY", "UID STORE", "UID EXPUNGE"}, []string{"UID MOVE", "EXPUNGE"}, true},
		{"neither MOVE nor UIDPLUS", rev1,
			[]string{"UID COPY", "UID STORE"}, []string{"UID MOVE", "EXPUNGE", "UID EXPUNGE"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMemWith(t, memimap.Options{Caps: tc.caps}, message(100), message(200), message(300))
			// Another client's \Deleted mail must survive every variant.
			c := otherDevice(t, srv.Addr)
			if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			up := tapUpstream(t, srv.Addr)
			s := loginPolicy(t, newBackend(t, Options{Address: up.Addr}), Policy{Delete: DeleteTrash})
			if _, _, err := s.Commit(context.Background(), []int{0, 1}); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			s.Close()
			cmds := up.commands()
			for _, w := range tc.want {
				if !slices.Contains(cmds, w) {
					t.Errorf("commands %v lack %s", cmds, w)
				}
			}
			for _, n := range tc.never {
				if slices.Contains(cmds, n) {
					t.Errorf("commands %v include %s", cmds, n)
				}
			}
			trash := mailboxFlags(t, srv.Addr, DefaultTrashFolder)
			if len(trash) != 2 {
				t.Errorf("Trash holds %d messages, want 2 (created on demand)", len(trash))
			}
			for uid, f := range trash {
				if slices.Contains(f, imap.FlagDeleted) {
					t.Errorf("Trash UID %d is flagged \\Deleted: %v", uid, f)
				}
			}
			inbox := mailboxFlags(t, srv.Addr, "INBOX")
			if f, ok := inbox[3]; !ok || !slices.Contains(f, imap.FlagDeleted) {
				t.Errorf("another client's \\Deleted message: present %v, flags %v", ok, f)
			}
			for _, uid := range []imap.UID{1, 2} {
				f, ok := inbox[uid]
				switch {
				case tc.expunged && ok:
					t.Errorf("UID %d still in INBOX: %v", uid, f)
				case !tc.expunged && (!ok || !slices.Contains(f, imap.FlagDeleted)):
					t.Errorf("UID %d without UIDPLUS: present %v flags %v, want flagged \\Deleted and kept", uid, ok, f)
				}
			}
		})
	}
}

func TestTrashUsesTheConfiguredFolder(t *testing.T) {
	srv := startMem(t, message(100), message(200))
	s := loginPolicy(t, newBackend(t, Options{Address: srv.Addr}), Policy{Delete: DeleteTrash, TrashFolder: "Deleted Items"})
	if _, _, err := s.Commit(context.Background(), []int{1}); err != nil {
		t.Fatal(err)
	}
	if n := len(mailboxFlags(t, srv.Addr, "Deleted Items")); n != 1 {
		t.Errorf("Deleted Items holds %d messages, want 1", n)
	}
	if mailboxFlags(t, srv.Addr, DefaultTrashFolder) != nil {
		t.Errorf("the default Trash was created although a folder is configured")
	}
	if _, ok := mailboxFlags(t, srv.Addr, "INBOX")[1]; !ok {
		t.Errorf("the message not deleted left INBOX")
	}
}

func TestTrashRefusesTheMaildropItself(t *testing.T) {
	srv := startMem(t, message(100))
	s := loginPolicy(t, newBackend(t, Options{Address: srv.Addr}), Policy{Delete: DeleteTrash, TrashFolder: "inbox"})
	if _, _, err := s.Commit(context.Background(), []int{0}); err == nil {
		t.Fatal("moving INBOX mail to INBOX succeeded; the message would come back with a new UID")
	}
	if n := len(mailboxFlags(t, srv.Addr, "INBOX")); n != 1 {
		t.Errorf("INBOX holds %d messages, want 1", n)
	}
}

func TestDeviceViewHidesOnlyThatDevicesDeletes(t *testing.T) {
	srv := startMem(t, message(100), message(200), message(300))
	b := newBackend(t, Options{Address: srv.Addr})
	all := loginPolicy(t, b, Policy{})
	uidls := func(s *Session) []string {
		var u []string
		for _, m := range s.Messages() {
			u = append(u, m.UIDL)
		}
		return u
	}
	full := uidls(all)

	laptop := loginPolicy(t, b, Policy{Device: "laptop"})
	if got := uidls(laptop); !slices.Equal(got, full) {
		t.Fatalf("fresh device view %v, want %v", got, full)
	}
	if _, _, err := laptop.Commit(context.Background(), []int{0, 2}); err != nil {
		t.Fatal(err)
	}
	laptop.Close()
	flags := mailboxFlags(t, srv.Addr, "INBOX")
	if len(flags) != 3 {
		t.Fatalf("a device delete removed mail upstream: %d messages left", len(flags))
	}
	for uid, f := range flags {
		want := uid != 2
		if got := slices.Contains(f, DeviceKeyword("laptop")); got != want {
			t.Errorf("UID %d: laptop keyword %v, want %v (%v)", uid, got, want, f)
		}
		if slices.Contains(f, imap.FlagDeleted) {
			t.Errorf("UID %d flagged \\Deleted by a device view", uid)
		}
	}

	again := loginPolicy(t, b, Policy{Device: "laptop"})
	if got := uidls(again); !slices.Equal(got, full[1:2]) {
		t.Errorf("laptop view after its deletes %v, want %v (same UIDLs)", got, full[1:2])
	}
	if got := uidls(loginPolicy(t, b, Policy{Device: "scanner"})); !slices.Equal(got, full) {
		t.Errorf("scanner view %v, want all of %v", got, full)
	}
	if got := uidls(loginPolicy(t, b, Policy{})); !slices.Equal(got, full) {
		t.Errorf("plain view %v, want all of %v", got, full)
	}
}

func TestDeviceViewRemovesMailOnceEveryKnownDeviceDeletedIt(t *testing.T) {
	srv := startMem(t, message(100), message(200))
	b := newBackend(t, Options{Address: srv.Addr})
	known := []string{"laptop", "scanner"}
	laptop := loginPolicy(t, b, Policy{Device: "laptop", AllDevices: known})
	if _, _, err := laptop.Commit(context.Background(), []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	laptop.Close()
	if n := len(mailboxFlags(t, srv.Addr, "INBOX")); n != 2 {
		t.Fatalf("after one of two devices deleted: %d messages, want 2", n)
	}
	scanner := loginPolicy(t, b, Policy{Device: "scanner", AllDevices: known, Delete: DeleteTrash})
	if _, _, err := scanner.Commit(context.Background(), []int{1}); err != nil {
		t.Fatal(err)
	}
	scanner.Close()
	inbox := mailboxFlags(t, srv.Addr, "INBOX")
	if _, ok := inbox[1]; !ok || len(inbox) != 1 {
		t.Errorf("INBOX after both devices deleted UID 2: %v, want only UID 1", inbox)
	}
	trash := mailboxFlags(t, srv.Addr, DefaultTrashFolder)
	if len(trash) != 1 {
		t.Errorf("Trash %v, want the message both devices deleted", trash)
	}
}

func TestMaxAgeHidesOldMail(t *testing.T) {
	srv := startMem(t)
	c := dialAlice(t, srv.Addr)
	for _, age := range []time.Duration{400 * 24 * time.Hour, 10 * 24 * time.Hour, 0} {
		raw := message(100)
		cmd := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: time.Now().Add(-age)})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, Options{Address: srv.Addr})
	for _, tc := range []struct{ days, want int }{{0, 3}, {30, 2}, {5, 1}, {1000, 3}} {
		s := loginPolicy(t, b, Policy{MaxAgeDays: tc.days})
		if got := len(s.Messages()); got != tc.want {
			t.Errorf("max age %d days: %d messages, want %d", tc.days, got, tc.want)
		}
		s.Close()
	}
}

func TestDeviceViewNeedsPermanentKeywords(t *testing.T) {
	srv := startMemWith(t, memimap.Options{NoKeywords: true})
	b := newBackend(t, Options{Address: srv.Addr})
	if _, err := b.Login(context.Background(), alice, Policy{Delete: DeleteExpunge, Seen: SeenRetr, Device: "laptop"}); !errors.Is(err, ErrNoKeywords) {
		t.Errorf("device view without keywords: %v, want ErrNoKeywords", err)
	}
	s, err := loginAs(b, "alice", "secret")
	if err != nil {
		t.Fatalf("a login without a device must still work: %v", err)
	}
	s.Close()
}

func TestValidDevice(t *testing.T) {
	for name, want := range map[string]bool{
		"laptop": true, "erp-2": true, "a.b_c": true, strings.Repeat("x", MaxDeviceLen): true,
		"": false, "Laptop": false, "lap top": false, "a+b": false, "é": false, "a*": false,
		`a\b`: false, "a]": false, strings.Repeat("x", MaxDeviceLen+1): false,
	} {
		if got := ValidDevice(name); got != want {
			t.Errorf("ValidDevice(%q) = %v, want %v", name, got, want)
		}
	}
}

// EXPUNGE responses name messages by sequence number, counting the ones
// a view hides: expunges of hidden messages must not shift the view's
// own messages out of step.
func TestDeviceViewTracksExpungesAroundHiddenMessages(t *testing.T) {
	srv := startMem(t, message(101), message(102), message(103), message(104), message(105))
	b := newBackend(t, Options{Address: srv.Addr})
	other := loginPolicy(t, b, Policy{})
	// The laptop has deleted messages 1 and 3; its view is 2, 4, 5.
	hide := loginPolicy(t, b, Policy{Device: "laptop"})
	if _, _, err := hide.Commit(context.Background(), []int{0, 2}); err != nil {
		t.Fatal(err)
	}
	view := loginPolicy(t, b, Policy{Device: "laptop"})
	if n := len(view.Messages()); n != 3 {
		t.Fatalf("view has %d messages, want 3", n)
	}
	// Another client expunges hidden message 3, then visible message 4
	// (index 1 of the view), then hidden message 1.
	if _, _, err := other.Commit(context.Background(), []int{2, 3, 0}); err != nil {
		t.Fatal(err)
	}
	if err := view.Noop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, false} {
		if got := view.Expunged(i); got != want {
			t.Errorf("Expunged(%d) = %v, want %v", i, got, want)
		}
	}
	for _, i := range []int{0, 2} {
		rc, err := view.Retrieve(context.Background(), i, -1)
		if err != nil {
			t.Fatalf("Retrieve(%d): %v", i, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if want := int64(len(got)); view.Messages()[i].Size != want {
			t.Errorf("message %d: %d octets, listed %d", i, want, view.Messages()[i].Size)
		}
	}
}
