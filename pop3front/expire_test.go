package pop3front

// EXPIRE in CAPA, exact bytes: the server's value before login (with and
// without USER), the session's after it, none when the session has none;
// and QUIT's answer counting what expired.

import (
	"context"
	"testing"
)

// expireBackend serves fakeBackend's sessions as ExpireSessions.
type expireBackend struct {
	*fakeBackend
	days    int
	ok      bool
	expired []int // Commit adds these to the client's deletes
}

type expireSession struct {
	Session
	b *expireBackend
}

func (b *expireBackend) Login(ctx context.Context, user, pass string, info ConnInfo) (Session, error) {
	s, err := b.fakeBackend.Login(ctx, user, pass, info)
	if err != nil {
		return nil, err
	}
	return &expireSession{Session: s, b: b}, nil
}

func (s *expireSession) Expire() (int, bool) { return s.b.days, s.b.ok }

func (s *expireSession) Commit(ctx context.Context, deleted []int) (UpdateResult, error) {
	res, err := s.Session.Commit(ctx, append(deleted, s.b.expired...))
	res.Expired = len(s.b.expired)
	return res, err
}

func TestCapaListsExpire(t *testing.T) {
	const (
		before = capaCommon + capaAuth
		after  = capaCommon
	)
	for _, tc := range []struct {
		name          string
		srv           Expire
		days          int
		ok            bool
		authorization string // what CAPA lists between the common lines and IMPLEMENTATION
		transaction   string
	}{
		{"none anywhere", Expire{}, 0, false, "", ""},
		{"one value for everyone", Expire{Days: 30}, 30, true, "EXPIRE 30\r\n", "EXPIRE 30\r\n"},
		{"per user: the lowest, then the user's", Expire{Days: 7, PerUser: true}, 30, true, "EXPIRE 7 USER\r\n", "EXPIRE 30\r\n"},
		{"per user: this one has none", Expire{Days: 7, PerUser: true}, 0, false, "EXPIRE 7 USER\r\n", ""},
		{"a session's value without a server-wide one", Expire{}, 14, true, "", "EXPIRE 14\r\n"},
		{"zero days is no value", Expire{Days: 0, PerUser: true}, 0, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &expireBackend{fakeBackend: newFakeBackend(), days: tc.days, ok: tc.ok}
			ts := startServer(t, b, func(s *Server) { s.Expire = tc.srv })
			c := dial(t, ts)
			c.expect("CAPA\r\n", before+tc.authorization+capaImpl)
			c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
			c.expect("CAPA\r\n", after+tc.transaction+capaImpl)
			c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
		})
	}
}

func TestQuitCountsExpiredMessages(t *testing.T) {
	b := &expireBackend{fakeBackend: newFakeBackend(), days: 30, ok: true, expired: []int{2}}
	ts := startServer(t, b)
	c := dialLogin(t, ts, "3")
	c.expect("DELE 1\r\n", "+OK Message 1 deleted\r\n")
	c.expectClosed("QUIT\r\n", "+OK Logging out, 2 messages deleted (1 of them expired)\r\n")
	if got := b.commitCalls(); len(got) != 1 || len(got[0]) != 2 || got[0][0] != 0 || got[0][1] != 2 {
		t.Errorf("Commit got %v, want [[0 2]]", got)
	}
}
