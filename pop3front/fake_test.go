package pop3front

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// fakeMsg is one message of the fake maildrop.
type fakeMsg struct {
	uid  string
	body []byte
}

type loginCall struct {
	user, pass string
	info       ConnInfo
}

type retrieveCall struct {
	i, lines int
}

var errUpstreamCut = errors.New("upstream connection reset")

// fakeBackend is an in-memory Backend that records what the server asks of
// it. Configure it before the server uses it; the recorded fields are read
// through the accessor methods, which lock.
type fakeBackend struct {
	// Configuration.
	user, pass  string
	msgs        []fakeMsg
	loginErr    error         // Login fails with this error
	noMessage   map[int]bool  // Retrieve(i) returns ErrNoMessage
	retrieveErr error         // Retrieve returns this error
	failAfter   map[int]int   // message i's reader fails after this many bytes
	readChunk   int           // > 0: readers return at most this many bytes per Read; < 0: readers are io.WriterTo
	writeWhole  bool          // an io.WriterTo reader writes the message in one piece
	commitErr   error         // Commit fails with this error
	seen        map[int]bool  // messages the snapshot reports as seen
	device      string        // what the session's Device reports
	policy      string        // what Commit does: "" removes the messages, "flag" flags them, "keep" keeps them
	noopErr     error         // Noop fails with this error
	loginCalled chan struct{} // if non-nil, receives once per Login call
	closeDelay  time.Duration // Close takes this long, as an upstream logout does
	commitGate  chan struct{} // if non-nil, Commit waits for it after recording the call

	mu        sync.Mutex
	expunged  map[int]bool
	logins    []loginCall
	retrieves []retrieveCall
	upcoming  [][]retrieveCall // what SetUpcoming's function yielded in each Retrieve
	retrieved []int
	commits   [][]int
	closes    int
	noops     int
	open      int // readers not closed yet
}

// The standard test maildrop: 3 messages, 68 octets.
const (
	body1 = "Subject: one\r\n\r\nHello\r\n" // 23 octets
	body2 = "Subject: two\r\n\r\n.dot\r\n"  // 22 octets
	body3 = "Subject: three\r\n\r\nBye\r\n" // 23 octets
)

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		user: "alice",
		pass: "secret",
		msgs: []fakeMsg{
			{"uid-one", []byte(body1)},
			{"uid-two", []byte(body2)},
			{"uid-three", []byte(body3)},
		},
	}
}

// withBodies replaces the maildrop with messages uid-1, uid-2, ...
func (b *fakeBackend) withBodies(bodies ...string) *fakeBackend {
	b.msgs = nil
	for i, body := range bodies {
		b.msgs = append(b.msgs, fakeMsg{uid: "uid-" + strconv.Itoa(i+1), body: []byte(body)})
	}
	return b
}

func (b *fakeBackend) expunge(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.expunged == nil {
		b.expunged = make(map[int]bool)
	}
	b.expunged[i] = true
}

func (b *fakeBackend) Login(ctx context.Context, user, pass string, info ConnInfo) (Session, error) {
	b.mu.Lock()
	b.logins = append(b.logins, loginCall{user, pass, info})
	b.mu.Unlock()
	if b.loginCalled != nil {
		b.loginCalled <- struct{}{}
	}
	if info.Logger != nil {
		info.Logger.Info("backend login", "user", user)
	}
	if b.loginErr != nil {
		return nil, b.loginErr
	}
	if user != b.user || pass != b.pass {
		return nil, ErrAuthFailed
	}
	s := &fakeSession{b: b}
	for i, m := range b.msgs {
		s.info = append(s.info, MessageInfo{Size: int64(len(m.body)), UID: m.uid, Seen: b.seen[i]})
	}
	return s, nil
}

// Accessors for the recorded calls: the server's goroutines record them
// while the test reads, so each is read under b.mu, and a list is copied.

func (b *fakeBackend) loginCalls() []loginCall         { return recorded(b, &b.logins) }
func (b *fakeBackend) retrieveCalls() []retrieveCall   { return recorded(b, &b.retrieves) }
func (b *fakeBackend) upcomingCalls() [][]retrieveCall { return recorded(b, &b.upcoming) }
func (b *fakeBackend) retrievedCalls() []int           { return recorded(b, &b.retrieved) }
func (b *fakeBackend) commitCalls() [][]int            { return recorded(b, &b.commits) }
func (b *fakeBackend) closeCount() int                 { return counted(b, &b.closes) }
func (b *fakeBackend) noopCount() int                  { return counted(b, &b.noops) }
func (b *fakeBackend) openReaders() int                { return counted(b, &b.open) }

// recorded returns a copy of the list *calls, one of b's fields.
func recorded[T any](b *fakeBackend, calls *[]T) []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(*calls)
}

// counted returns the count *n, one of b's fields.
func counted(b *fakeBackend, n *int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return *n
}

type fakeSession struct {
	b        *fakeBackend
	info     []MessageInfo
	upcoming iter.Seq2[int, int]
}

func (s *fakeSession) SetUpcoming(upcoming iter.Seq2[int, int]) { s.upcoming = upcoming }

func (s *fakeSession) Messages() []MessageInfo { return s.info }

func (s *fakeSession) Device() string { return s.b.device }

func (s *fakeSession) Retrieve(ctx context.Context, i int, lines int) (io.ReadCloser, error) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retrieves = append(b.retrieves, retrieveCall{i, lines})
	var next []retrieveCall
	for j, lines := range s.upcoming {
		next = append(next, retrieveCall{j, lines})
	}
	b.upcoming = append(b.upcoming, next)
	if b.noMessage[i] {
		return nil, ErrNoMessage
	}
	if b.retrieveErr != nil {
		return nil, b.retrieveErr
	}
	body := b.msgs[i].body
	var r io.Reader = bytes.NewReader(body)
	if k, ok := b.failAfter[i]; ok {
		r = io.MultiReader(bytes.NewReader(body[:k]), iotest.ErrReader(errUpstreamCut))
	}
	if b.readChunk > 0 {
		r = testkit.ChunkReader(r, b.readChunk)
	}
	b.open++
	if b.readChunk < 0 {
		return &fakeWriterTo{fakeReader{r: r, b: b}}, nil
	}
	return &fakeReader{r: r, b: b}, nil
}

func (s *fakeSession) Retrieved(i int) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.retrieved = append(s.b.retrieved, i)
}

func (s *fakeSession) Expunged(i int) bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.expunged[i]
}

func (s *fakeSession) Noop(ctx context.Context) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.noops++
	return s.b.noopErr
}

func (s *fakeSession) Commit(ctx context.Context, deleted []int) (UpdateResult, error) {
	s.b.mu.Lock()
	s.b.commits = append(s.b.commits, slices.Clone(deleted))
	s.b.mu.Unlock()
	if s.b.commitGate != nil {
		<-s.b.commitGate
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.b.commitErr != nil {
		return UpdateResult{}, s.b.commitErr
	}
	switch s.b.policy {
	case "flag":
		return UpdateResult{Flagged: len(deleted)}, nil
	case "keep":
		return UpdateResult{}, nil
	}
	return UpdateResult{Removed: len(deleted)}, nil
}

func (s *fakeSession) Close() error {
	time.Sleep(s.b.closeDelay)
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.closes++
	return nil
}

type fakeReader struct {
	r      io.Reader
	b      *fakeBackend
	closed bool
}

func (r *fakeReader) Read(p []byte) (int, error) { return r.r.Read(p) }

func (r *fakeReader) Close() error {
	if !r.closed {
		r.closed = true
		r.b.mu.Lock()
		r.b.open--
		r.b.mu.Unlock()
	}
	return nil
}

// fakeWriterTo is a message reader that also writes itself out, as
// imapback's readers do, in pieces of 3 octets.
type fakeWriterTo struct{ fakeReader }

func (r *fakeWriterTo) WriteTo(w io.Writer) (int64, error) {
	if br, ok := r.r.(*bytes.Reader); ok && r.b.writeWhole {
		return br.WriteTo(w)
	}
	var total int64
	buf := make([]byte, 3)
	for {
		n, err := r.r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// fakeState is everything a fakeBackend saw, in one comparable value.
type fakeState struct {
	Logins    []string // user/pass
	Retrieves []retrieveCall
	Retrieved []int
	Noops     int
	Commits   [][]int
	Closes    int
	Open      int // message readers not closed
}

func (b *fakeBackend) state() fakeState {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := fakeState{Retrieves: slices.Clone(b.retrieves), Retrieved: slices.Clone(b.retrieved), Noops: b.noops,
		Commits: slices.Clone(b.commits), Closes: b.closes, Open: b.open}
	for _, l := range b.logins {
		st.Logins = append(st.Logins, l.user+"/"+l.pass)
	}
	return st
}

// expectBackend waits for ts's sessions to end and checks everything its
// fakeBackend saw.
func (ts *testServer) expectBackend(t *testing.T, want fakeState) {
	t.Helper()
	ts.waitSessions(t)
	ts.srv.Backend.(*fakeBackend).expectState(t, want)
}

// expectState checks everything b saw so far.
func (b *fakeBackend) expectState(t *testing.T, want fakeState) {
	t.Helper()
	if got, want := fmt.Sprintf("%+v", b.state()), fmt.Sprintf("%+v", want); got != want {
		t.Errorf("backend saw\n %s\nwant\n %s", got, want)
	}
}
