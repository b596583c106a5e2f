package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// Several devices on one mailbox. TestMessageExpungedByAnotherClient (an
// expunge and new mail during a session) and
// TestQuitExpungesExactlyTheDeletedMessages (\Deleted set before the
// session) cover the rest.

// Another IMAP client flags a message \Deleted while a POP3 session is
// open: the message stays retrievable (it is still in the mailbox), and
// our QUIT expunges only what this session deleted.
func TestDeletedFlagSetDuringSessionIsNotExpunged(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		msgs, before, c := loginAfterDelivering(t, u, 3)

		other := u.dial(t)
		flagDeleted(t, other, before[1].UID)
		u.deliver(t, testMessage(9, "arrived during the session\r\n"))
		c.OK("NOOP")

		if got := c.Multi("RETR 2"); !bytes.Equal(got, msgs[1]) {
			t.Errorf("RETR 2 of a message another client flagged \\Deleted = %q", got)
		}
		if n, _ := c.Stat(); n != 3 {
			t.Errorf("STAT = %d messages, want the 3 of the snapshot", n)
		}
		c.OK("DELE 1")
		c.OK("DELE 3")
		if resp := c.Quit(); resp != "+OK Logging out, 2 messages deleted" {
			t.Fatalf("QUIT = %q", resp)
		}
		after := upstreamState(t, u)
		if len(after) != 2 || after[0].UID != before[1].UID || !hasFlag(after[0].Flags, imap.FlagDeleted) {
			t.Fatalf("after QUIT: %+v; want message 2 (still flagged \\Deleted) and the new one", after)
		}
	})
}

// By default two sessions of one user may be open at once, as with
// Dovecot's POP3 server: each has its own snapshot, and a message the
// first one expunges is answered -ERR in the second.
func TestConcurrentSessionsOfOneUserAreAllowedByDefault(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		msgs := deliverN(t, u, 3)
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		a := pop3test.Dial(t, addr)
		a.Login(u.user, u.pass)
		b := pop3test.Dial(t, addr)
		b.Login(u.user, u.pass)
		uidlA, uidlB := a.Multi("UIDL"), b.Multi("UIDL")
		if !bytes.Equal(uidlA, uidlB) {
			t.Errorf("the two sessions list different UIDLs: %q and %q", uidlA, uidlB)
		}
		a.OK("DELE 1")
		if resp := a.Quit(); !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("QUIT of the first session = %q", resp)
		}
		b.OK("NOOP")
		if resp := b.Cmd("RETR 1"); !strings.HasPrefix(resp, "-ERR") {
			t.Errorf("RETR of a message the other session expunged = %q", resp)
		}
		if got := b.Multi("RETR 2"); !bytes.Equal(got, msgs[1]) {
			t.Errorf("RETR 2 = %q", got)
		}
		b.OK("DELE 3")
		if resp := b.Quit(); !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("QUIT of the second session = %q", resp)
		}
		if after := upstreamState(t, u); len(after) != 1 || !bytes.Equal(after[0].Body, msgs[1]) {
			t.Fatalf("after both sessions: %d messages, want only message 2", len(after))
		}
	})
}

// With limits.lock_session a second session of the same maildrop is
// refused with [IN-USE] until the first ends; a wrong password still gets
// [AUTH], so the lock tells nothing to someone without the password.
func TestSessionLockRefusesASecondSession(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 1)
		addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Limits.LockSession = true }}).addr
		a := pop3test.Dial(t, addr)
		a.Login(u.user, u.pass)

		b := pop3test.Dial(t, addr)
		b.OK("USER " + u.user)
		if resp := b.Cmd("PASS wrong"); !strings.HasPrefix(resp, "-ERR [AUTH] ") {
			t.Errorf("wrong password while locked: %q", resp)
		}
		b.OK("USER " + u.user)
		if resp := b.Cmd("PASS " + u.pass); resp != "-ERR [IN-USE] Mailbox is in use by another session" {
			t.Errorf("second session: %q", resp)
		}
		if u.name == "dovecot" {
			// Dovecot folds user names to lower case; so does the lock.
			b.OK("USER " + strings.ToUpper(u.user))
			if resp := b.Cmd("PASS " + u.pass); !strings.HasPrefix(resp, "-ERR [IN-USE] ") {
				t.Errorf("second session as %s: %q", strings.ToUpper(u.user), resp)
			}
		}
		a.Quit()
		// The lock is released once the first session has logged out
		// upstream; retry briefly instead of guessing when that is.
		var resp string
		for range 50 {
			b.OK("USER " + u.user)
			if resp = b.Cmd("PASS " + u.pass); !strings.HasPrefix(resp, "-ERR [IN-USE]") {
				break
			}
		}
		if !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("after the first session ended: %q", resp)
		}
		if n, _ := b.Stat(); n != 1 {
			t.Errorf("STAT = %d", n)
		}
		b.Quit()
	})
}

func TestSessionLockKeys(t *testing.T) {
	st := state.NewMemory()
	ctx := context.Background()
	first, err := lockMaildrop(ctx, st, lockKey("default", "Alice", ""), storeErrors{log: slog.Default()})
	if err != nil {
		t.Fatal("first lock failed:", err)
	}
	for _, k := range []struct {
		upstream, user, device string
		free                   bool
	}{
		{"default", "alice", "", false},
		{"default", "ALICE", "", false},
		{"default", "alice", "scanner", true}, // another device view
		{"other", "alice", "", true},          // another upstream
		{"default", "bob", "", true},
	} {
		l, err := lockMaildrop(ctx, st, lockKey(k.upstream, k.user, k.device), storeErrors{log: slog.Default()})
		if (err == nil) != k.free || !k.free && !errors.Is(err, pop3front.ErrInUse) {
			t.Errorf("lock %q %q %q: %v, want free %v", k.upstream, k.user, k.device, err, k.free)
		}
		if l != nil {
			l.Release()
		}
	}
	first.Release()
	first.Release() // a second release must not free someone else's lock
	second, err := lockMaildrop(ctx, st, lockKey("default", "alice", ""), storeErrors{log: slog.Default()})
	if err != nil {
		t.Fatal("lock after release failed:", err)
	}
	first.Release()
	if _, err := lockMaildrop(ctx, st, lockKey("default", "alice", ""), storeErrors{log: slog.Default()}); err == nil {
		t.Error("an old release freed the lock of a later session")
	}
	second.Release()
}
