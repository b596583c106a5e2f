package pop3front

// UIDLSession: unique-ids the backend makes only when UIDL asks for them.

import (
	"context"
	"sync/atomic"
	"testing"
)

// lazyBackend's sessions leave the UIDs empty until LoadUIDLs; the first
// load fails.
type lazyBackend struct {
	*fakeBackend
	loads atomic.Int32
}

type lazySession struct {
	*fakeSession
	b *lazyBackend
}

func (b *lazyBackend) Login(ctx context.Context, user, pass string, info ConnInfo) (Session, error) {
	s, err := b.fakeBackend.Login(ctx, user, pass, info)
	if err != nil {
		return nil, err
	}
	fs := s.(*fakeSession)
	for i := range fs.info {
		fs.info[i].UID = ""
	}
	return &lazySession{fakeSession: fs, b: b}, nil
}

func (s *lazySession) LoadUIDLs(ctx context.Context) error {
	if s.b.loads.Add(1) == 1 {
		return ErrUnavailable
	}
	// A new slice, as a backend that makes them afresh may return.
	info := make([]MessageInfo, len(s.info))
	copy(info, s.info)
	for i, m := range s.b.msgs {
		info[i].UID = m.uid
	}
	s.info = info
	return nil
}

// UIDL loads the unique-ids before it reads them, and only UIDL does; a
// failed load is answered -ERR [SYS/TEMP] and the session goes on; a
// message number that names no message is refused without a load.
func TestUIDLLoadsUniqueIDs(t *testing.T) {
	b := &lazyBackend{fakeBackend: newFakeBackend()}
	ts := startServer(t, b)
	c := dialLogin(t, ts, "3")
	c.expect("STAT\r\nLIST\r\n", "+OK 3 68\r\n+OK 3 messages\r\n1 23\r\n2 22\r\n3 23\r\n.\r\n")
	c.expect("UIDL 9\r\n", "-ERR No such message\r\n")
	if n := b.loads.Load(); n != 0 {
		t.Fatalf("STAT, LIST and UIDL of no message loaded the UIDLs %d times", n)
	}
	c.expect("UIDL\r\n", "-ERR [SYS/TEMP] Mail server temporarily unavailable, try again later\r\n")
	c.expect("UIDL 2\r\n", "+OK 2 uid-two\r\n")
	c.expect("DELE 1\r\nUIDL\r\n", "+OK Message 1 deleted\r\n+OK Unique-ID listing follows\r\n2 uid-two\r\n3 uid-three\r\n.\r\n")
	if n := b.loads.Load(); n != 3 {
		t.Errorf("%d loads, want 3 (one failed, then one per UIDL)", n)
	}
}
