package retention

// A Session over a fake maildrop and an in-process store whose clock the
// test moves: stamps only at QUIT, removal N days later with the client's
// deletes, nothing on a dropped session or a store that cannot be asked.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/state"
)

// fakeDrop is the fake upstream: the messages still in it.
type fakeDrop struct {
	uidls     []string
	commitErr error
}

type fakeSession struct {
	m         *fakeDrop
	msgs      []pop3front.MessageInfo
	committed [][]int
	device    string
}

func (m *fakeDrop) open() *fakeSession {
	s := &fakeSession{m: m, device: "laptop"}
	for _, u := range m.uidls {
		s.msgs = append(s.msgs, pop3front.MessageInfo{UID: u, Size: 1})
	}
	return s
}

func (s *fakeSession) Messages() []pop3front.MessageInfo { return s.msgs }
func (s *fakeSession) Retrieve(context.Context, int, int) (io.ReadCloser, error) {
	return nil, errors.New("not used")
}
func (s *fakeSession) Retrieved(int)              {}
func (s *fakeSession) Expunged(int) bool          { return false }
func (s *fakeSession) Noop(context.Context) error { return nil }
func (s *fakeSession) Close() error               { return nil }
func (s *fakeSession) Device() string             { return s.device }
func (s *fakeSession) Commit(_ context.Context, deleted []int) (pop3front.UpdateResult, error) {
	s.committed = append(s.committed, slices.Clone(deleted))
	if s.m.commitErr != nil {
		return pop3front.UpdateResult{}, s.m.commitErr
	}
	var left []string
	for i, u := range s.m.uidls {
		if !slices.Contains(deleted, i) {
			left = append(left, u)
		}
	}
	s.m.uidls = left
	return pop3front.UpdateResult{Removed: len(deleted)}, nil
}

// failingStore is a store that cannot be asked.
type failingStore struct{ state.Stamper }

func (failingStore) Stamp(context.Context, string, []string, time.Duration) (map[string]time.Time, time.Time, error) {
	return nil, time.Time{}, state.ErrUnavailable
}

type rig struct {
	t      *testing.T
	clock  time.Time
	k      *Keeper
	m      *fakeDrop
	errors int
}

func newRig(t *testing.T, uidls ...string) *rig {
	r := &rig{t: t, clock: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), m: &fakeDrop{uidls: uidls}}
	st := state.NewMemoryWithClock(func() time.Time { return r.clock })
	r.k = New(st, func(string, error) { r.errors++ })
	return r
}

// session opens a session of the laptop with a retention of 7 days,
// retrieves retr (message indices) and, when quit, QUITs with dele.
func (r *rig) session(retr []int, quit bool, dele ...int) (pop3front.UpdateResult, *fakeSession) {
	r.t.Helper()
	inner := r.m.open()
	s := r.k.Wrap(inner, "default", "Alice", imapback.Policy{Device: "laptop", RetentionDays: 7}, slog.New(slog.DiscardHandler))
	for _, i := range retr {
		s.Retrieved(i)
	}
	if !quit {
		s.Close()
		return pop3front.UpdateResult{}, inner
	}
	res, err := s.Commit(context.Background(), dele)
	if err != nil && r.m.commitErr == nil {
		r.t.Fatal(err)
	}
	return res, inner
}

func TestRemovedRetentionDaysAfterTheQuitThatRetrievedThem(t *testing.T) {
	r := newRig(t, "a", "b", "c")
	r.session([]int{0, 1}, true) // a and b retrieved
	r.clock = r.clock.Add(3 * day)
	r.session([]int{1, 2}, true) // b again (its first stamp stays), c for the first time
	r.clock = r.clock.Add(4*day - time.Minute)
	if res, _ := r.session(nil, true); res.Expired != 0 || len(r.m.uidls) != 3 {
		t.Fatalf("a minute before 7 days: expired %d, maildrop %v", res.Expired, r.m.uidls)
	}
	r.clock = r.clock.Add(time.Minute)
	res, inner := r.session(nil, true)
	if res.Expired != 2 || !slices.Equal(r.m.uidls, []string{"c"}) || !slices.Equal(inner.committed[0], []int{0, 1}) {
		t.Fatalf("7 days after: expired %d, committed %v, maildrop %v; want a and b gone", res.Expired, inner.committed, r.m.uidls)
	}
	r.clock = r.clock.Add(3 * day)
	// Due, and DELE'd by the client too: one removal, the client's.
	if res, inner := r.session(nil, true, 0); res.Expired != 0 || len(r.m.uidls) != 0 || !slices.Equal(inner.committed[0], []int{0}) {
		t.Errorf("c, due and DELE'd: expired %d, committed %v, maildrop %v; want it removed once", res.Expired, inner.committed, r.m.uidls)
	}
}

func TestDroppedSessionStartsNoClock(t *testing.T) {
	r := newRig(t, "a", "b")
	r.session([]int{0, 1}, false) // dropped before QUIT
	r.clock = r.clock.Add(30 * day)
	if res, _ := r.session(nil, true); res.Expired != 0 || len(r.m.uidls) != 2 {
		t.Errorf("retrievals of a dropped session expired %d messages", res.Expired)
	}
}

func TestClientDeletesAndExpiredGoInOneCommit(t *testing.T) {
	r := newRig(t, "a", "b", "c")
	r.session([]int{0}, true)
	r.clock = r.clock.Add(8 * day)
	res, inner := r.session([]int{2}, true, 1)
	if !slices.Equal(inner.committed[0], []int{1, 0}) || res.Removed != 2 || res.Expired != 1 {
		t.Errorf("committed %v, result %+v; want the DELE'd 1 and the expired 0 together", inner.committed, res)
	}
	if got := inner.committed; len(got) != 1 {
		t.Errorf("%d commits, want one", len(got))
	}
}

func TestFailedUpdateKeepsTheStamps(t *testing.T) {
	r := newRig(t, "a")
	r.session([]int{0}, true)
	r.clock = r.clock.Add(8 * day)
	r.m.commitErr = errors.New("upstream gone")
	if _, inner := r.session(nil, true); !slices.Equal(inner.committed[0], []int{0}) {
		t.Fatalf("committed %v", inner.committed)
	}
	r.m.commitErr = nil
	if res, _ := r.session(nil, true); res.Expired != 1 || len(r.m.uidls) != 0 {
		t.Errorf("after a failed UPDATE the next QUIT expired %d, maildrop %v", res.Expired, r.m.uidls)
	}
}

func TestStoreUnavailableRemovesOnlyTheClientsDeletes(t *testing.T) {
	r := newRig(t, "a", "b")
	r.session([]int{0, 1}, true)
	r.clock = r.clock.Add(8 * day)
	r.k.st = failingStore{r.k.st}
	res, inner := r.session(nil, true, 1)
	if !slices.Equal(inner.committed[0], []int{1}) || res.Expired != 0 || r.errors != 1 {
		t.Errorf("committed %v, expired %d, errors reported %d; want only the DELE, one error", inner.committed, res.Expired, r.errors)
	}
}

func TestSessionStatesExpireAndItsDevice(t *testing.T) {
	r := newRig(t, "a")
	inner := r.m.open()
	if s := r.k.Wrap(inner, "default", "alice", imapback.Policy{Delete: imapback.DeleteKeep, RetentionDays: 30}, nil); s != pop3front.Session(inner) {
		t.Error("a retention that can remove nothing wrapped the session")
	}
	s := r.k.Wrap(inner, "default", "alice", imapback.Policy{RetentionDays: 30}, nil)
	if days, ok := s.(pop3front.ExpireSession).Expire(); days != 30 || !ok {
		t.Errorf("Expire() = %d, %v", days, ok)
	}
	if d := s.(pop3front.DeviceSession).Device(); d != "laptop" {
		t.Errorf("Device() = %q, want the wrapped session's", d)
	}
}

func TestMaildropKeys(t *testing.T) {
	a := maildrop{Upstream: "default", User: "Alice", Device: "laptop"}
	if b := (maildrop{Upstream: "default", User: "alice", Device: "laptop"}); a.key() != b.key() {
		t.Error("user names that differ in case only have different stamps")
	}
	for _, other := range []maildrop{
		{Upstream: "other", User: "alice", Device: "laptop"},
		{Upstream: "default", User: "alice", Device: "scanner"},
		{Upstream: "default", User: "alice"},
		{Upstream: "default", User: "alice", Device: "laptop", Mailbox: "Scans"},
	} {
		if other.key() == a.key() {
			t.Errorf("%+v shares the stamps of %+v", other, a)
		}
	}
}

func TestStampsOfMailThatLeftAreForgotten(t *testing.T) {
	r := newRig(t, "a", "b", "c")
	key := maildrop{Upstream: "default", User: "Alice", Device: "laptop"}.key()
	stamped := func() []string {
		got, _, _ := r.k.st.Stamp(context.Background(), key, nil, stampTTL(7))
		var names []string
		for n := range got {
			names = append(names, n)
		}
		slices.Sort(names)
		return names
	}
	r.session([]int{0, 1, 2}, true, 0) // a DELE'd, b and c kept
	if got := stamped(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("stamps %v after a was deleted, want b and c", got)
	}
	r.m.uidls = []string{"c"} // b expunged by another client
	r.clock = r.clock.Add(2 * day)
	r.session(nil, true)
	if got := stamped(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("stamps %v: b's went before it was as old as the retention", got)
	}
	r.clock = r.clock.Add(5 * day) // c expires, b is an old orphan
	r.session(nil, true)
	if got := stamped(); len(got) != 0 {
		t.Errorf("stamps %v, want none", got)
	}
}
