package imapback

// The batch read-ahead: the small messages a sequential client asks for
// next, fetched with one UID FETCH and served from memory. A POP3 client
// that downloads its mail asks for message n, then n+1, and so on, each
// RETR waiting for the previous one; one FETCH per message would cost an
// upstream round trip each.
//
//   - The window starts at one message (fetched as any other message
//     is: a batch holds two or more) and doubles with each batch the
//     client consumes in order (up to ReadAheadMessages), as in a file
//     system's read-ahead: a client that stops after one message costs
//     nothing extra, and one that stops early wastes at most about as
//     much as it took. The session's first batch, when the rest of the
//     mailbox fits in one (the newest mail), takes all of it at once
//     (firstWindow). A client that pipelines its commands says what it
//     wants next: then its queue drives the batch (pipelined.go).
//   - Only messages up to ChunkSize are batched, up to ReadAheadBytes in
//     all; a larger message ends the batch and is streamed in ranges.
//     The batch lives in one buffer per session, taken from a pool and
//     returned once every message in it was served or the session ends;
//     ReadAheadTotal bounds those buffers per Backend (or a shared
//     ReadAheadBudget per group of Backends), and when it is reached the
//     session simply fetches one message at a time. A large
//     message borrows the same buffer, once the batch is used up, to
//     fetch its next range ahead.
//   - Who owns the connection: the batch's FETCH is sent by a goroutine
//     of its own, from fetchBatch until the FETCH is over; its answers
//     are read beside go-imap, by go-imap's reader goroutine inside the
//     tap (rawbatch.go), at upstream speed into room reserved
//     beforehand. Each message is served as soon as
//     its literal is in: the client waits for the first message of a
//     batch, not for the whole batch. While that goroutine runs, the
//     session's goroutine sends nothing upstream (guard, Close and
//     rangeBuffer wait for it with join), and the batch's goroutine
//     neither reconnects nor sends \Seen STOREs: those stay with the
//     session's goroutine.
//   - The bodies are fetched with BODY.PEEK[], which never sets \Seen:
//     only Retrieved does, after the client received a message in full.
//   - A message missing from the batch answer (expunged by another
//     client meanwhile) is not cached; asking for it runs the ranged
//     path, which answers ErrGone. A body of another length than the
//     listed size is served only after the size check (sizecheck.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Read-ahead defaults.
const (
	DefaultReadAheadBytes    = 1 << 20
	DefaultReadAheadMessages = 128
	DefaultReadAheadTotal    = 64 << 20
)

// ReadAheadBudget bounds the read-ahead buffers of one or more Backends
// together (Options.ReadAheadShared).
type ReadAheadBudget struct {
	total int64
	inUse atomic.Int64
}

// NewReadAheadBudget returns a budget of total bytes (default
// DefaultReadAheadTotal when total <= 0).
func NewReadAheadBudget(total int) *ReadAheadBudget {
	if total <= 0 {
		total = DefaultReadAheadTotal
	}
	return &ReadAheadBudget{total: int64(total)}
}

// readAhead is one session's batch of prefetched bodies.
type readAhead struct {
	bufp  *[]byte // from Backend.raPool; nil when no batch is held
	items []raItem
	left  int // items not served yet
	// incoming delivers the bodies of the batch being fetched, in the
	// order they arrive; it is closed when the FETCH is over, after
	// firstErr is set. nil when no FETCH runs.
	incoming chan raItem
	coming   int   // bodies asked for and not received yet
	firstErr error // what became of the batch's first message, if not delivered
	// next is the message a sequential client asks for next, and window
	// the size of the batch fetched when it does.
	next, window int
	// upcoming yields the requests the client queued (SetUpcoming).
	upcoming iter.Seq2[int, int]
}

type raItem struct {
	i      int // snapshot index
	off, n int // the body's place in the buffer
	served bool
}

// readAheadEnabled reports whether this session batches at all.
func (s *Session) readAheadEnabled() bool { return s.b.opts.ReadAheadBytes > 0 }

// retrieveAhead serves message i from the batch, or fetches a new batch
// starting with i: the requests the client queued behind it
// (pipelined.go), or, without any, the messages after i when the client
// reads sequentially. It returns a nil reader and error when message i is
// not for read-ahead (the caller streams it in chunks).
func (s *Session) retrieveAhead(ctx context.Context, i, lines int) (io.ReadCloser, error) {
	ra := &s.ra
	s.topUp(ctx, i)
	if rc, err := ra.take(ctx, s, i); rc != nil || err != nil {
		ra.next = i + 1
		return rc, err
	}
	if !s.readAheadEnabled() || !s.batchable(i, lines) {
		// Streamed in chunks. A large message in a sequential run keeps
		// the run going.
		if lines < 0 && i == ra.next {
			ra.next = i + 1
		}
		return nil, nil
	}
	list, run := s.queuedBatch(i, lines)
	switch {
	case !run:
		ra.window = len(list) // what the client queued, no more
	case lines >= 0:
		return nil, nil // TOP needs only the start of a message
	case i == ra.next && ra.window > 0:
		ra.window = min(2*ra.window, s.b.opts.ReadAheadMessages)
	case ra.window == 0:
		ra.window = s.firstWindow(i) // the session's first batch
	default:
		ra.window = 1
	}
	if run {
		ra.window = max(ra.window, len(list))
		list = s.sequentialBatch(i, ra.window, int64(s.b.opts.ReadAheadBytes))
	}
	ra.release(s.b)
	if ra.window == 1 {
		// A batch of one is one FETCH, which Retrieve sends itself,
		// without a goroutine to hand the body over.
		ra.next = i + 1
		return nil, nil
	}
	if !ra.acquire(s.b) {
		return nil, nil // the Backend-wide budget is spent: no batching
	}
	if err := s.fetchBatch(ctx, i, list, *ra.bufp, 0); err != nil {
		ra.release(s.b)
		return nil, err
	}
	rc, err := ra.take(ctx, s, i)
	if rc == nil {
		if err == nil {
			err = ra.firstErr
		}
		if errors.Is(err, ErrGone) {
			// The rest of the batch is good: the run goes on past i.
			ra.next = i + 1
			return nil, err
		}
		// Not delivered (the upstream sent more than the message's size,
		// or the FETCH failed): stream it, or answer the error.
		ra.release(s.b)
		return nil, err
	}
	ra.next = i + 1
	return rc, nil
}

// firstWindow is the size of the session's first batch, starting at
// message i: the rest of the mailbox when it fits in one batch, else one
// message. A device that checks for new mail retrieves the newest
// messages, in order, and through a distant upstream each batch costs a
// round trip: the snapshot's sizes say whether all of them fit, so they
// come in one. A client that stops early leaves at most one buffer
// unread, once per session: later runs start at one message.
func (s *Session) firstWindow(i int) int {
	rest := len(s.msgs) - i
	if rest > s.b.opts.ReadAheadMessages {
		return 1
	}
	var total int64
	for _, m := range s.msgs[i:] {
		if m.Size > int64(s.b.opts.ChunkSize) {
			return 1
		}
		total += m.Size
	}
	if total > int64(s.b.opts.ReadAheadBytes) {
		return 1
	}
	return rest
}

// sequentialBatch lists up to window small messages starting with i,
// stopping at the first large one and at room octets.
func (s *Session) sequentialBatch(i, window int, room int64) []int {
	list := []int{i}
	total := s.msgs[i].Size
	for j := i + 1; j < len(s.msgs) && len(list) < window; j++ {
		if s.msgs[j].Size > int64(s.b.opts.ChunkSize) || total+s.msgs[j].Size > room {
			break
		}
		if s.Expunged(j) {
			continue
		}
		total += s.msgs[j].Size
		list = append(list, j)
	}
	return list
}

// fetchBatch starts fetching the messages of list into room, the part of
// the batch buffer that starts at offset base, in one UID FETCH. i is the
// one asked for now, or -1 for messages the client queued (a top-up,
// pipelined.go). The bodies arrive on ra.incoming (take waits for them).
func (s *Session) fetchBatch(ctx context.Context, i int, list []int, room []byte, base int) error {
	ra := &s.ra
	var uids imap.UIDSet
	uidList := make([]imap.UID, 0, len(list))
	want := make(map[imap.UID]int, len(list)) // UID -> snapshot index
	for _, j := range list {
		uids.AddNum(s.msgs[j].UID)
		uidList = append(uidList, s.msgs[j].UID)
		want[s.msgs[j].UID] = j
	}

	ra.firstErr = nil
	done, err := s.guard(ctx)
	if err != nil {
		done()
		return err
	}
	// Under the guard: waiting for a \Seen STORE is bounded too.
	s.beforeFetch(uidList...)
	done()
	ch := make(chan raItem, len(want))
	ra.incoming, ra.coming = ch, len(want)
	go func() {
		defer close(ch)
		start := time.Now()
		err, broken := s.readBatch(ctx, i, uids, want, room, base, ch)
		s.observe("UID FETCH", start, err)
		if broken {
			s.awaitClosed()
		}
		ra.firstErr = err
	}()
	return nil
}

// readBatch runs the UID FETCH of a batch in the batch's goroutine (its
// answers are read beside go-imap, rawbatch.go): the bodies go into buf,
// which starts at offset base of the batch buffer, each sent on ch as
// soon as it is in; it returns what became of message i (if i >= 0) if
// its body did not come. broken reports that the connection broke.
func (s *Session) readBatch(ctx context.Context, i int, uids imap.UIDSet, want map[imap.UID]int, buf []byte, base int, ch chan<- raItem) (err error, broken bool) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err), false
	}
	defer s.bound(ctx)()
	a := &batchAnswer{i: i, want: want, ch: ch, base: base}
	b := &bodyBatch{room: buf, to: a}
	err = s.tap.fetchBodies(uids, 0, b, s.held, s.c.Closed())
	if errors.Is(err, errNoRawFetch) {
		return fmt.Errorf("%w: UID FETCH %s BODY.PEEK[]: %v", ErrUnavailable, uids, err), false
	}
	if b.broken {
		// Whatever was read of the answer, the connection is out of
		// step or failed: close it, so that go-imap fails too.
		s.nc.Close()
	}
	if a.answered || i < 0 {
		// Whatever else went wrong shows on the next upstream command.
		return nil, b.broken
	}
	if !b.broken {
		// No FETCH data for the UID: another client expunged it.
		s.markGone(i)
		return fmt.Errorf("%w: UID %d", ErrGone, s.msgs[i].UID), false
	}
	return fmt.Errorf("%w: UID FETCH %s BODY.PEEK[]: %v", ErrUnavailable, uids, err), true
}

// batchAnswer is what the answer to a batch's FETCH held (a bodySink).
type batchAnswer struct {
	i        int              // the message asked for now, or -1
	want     map[imap.UID]int // UID -> snapshot index, of the bodies to come
	ch       chan<- raItem    // each body, as soon as it is in
	base     int              // the offset of the room in the batch buffer
	answered bool             // message i is in the answer
}

func (a *batchAnswer) keep(uid imap.UID, off, n int, fits bool) bool {
	j, ok := a.want[uid]
	if !ok {
		return false // not asked for, or sent twice
	}
	delete(a.want, uid)
	a.answered = a.answered || j == a.i
	if !fits {
		return false // too large for the buffer: streamed when asked for
	}
	a.ch <- raItem{i: j, off: a.base + off, n: n}
	return true
}

// named: another client's flag change, reported in the middle of this
// answer: the message exists.
func (a *batchAnswer) named(uid imap.UID, _ bool) {
	j, ok := a.want[uid]
	a.answered = a.answered || (ok && j == a.i)
}

func (a *batchAnswer) arriving(int, int) {}

// take returns a reader of message i if the batch holds it, waiting for
// the bodies still coming until it arrives or the FETCH is over. A body
// of another length than the listed size is served only once the
// upstream confirmed the message exists (vetBatched); the error says why
// it is not.
func (ra *readAhead) take(ctx context.Context, s *Session, i int) (io.ReadCloser, error) {
	for k := 0; ; k++ {
		if k == len(ra.items) {
			if !ra.receive() {
				return nil, nil
			}
		}
		it := ra.items[k]
		if it.i != i || it.served {
			continue
		}
		ra.items[k].served = true
		ra.left--
		// vetBatched waits for the rest of the batch, which grows
		// ra.items: it is indexed, not pointed into.
		if err := s.vetBatched(ctx, i, int64(it.n)); err != nil {
			return nil, err
		}
		return &raReader{Reader: bytes.NewReader((*ra.bufp)[it.off : it.off+it.n]), s: s}, nil
	}
}

// receive adds the next body of the running FETCH to the batch. It
// reports false when there is none, the FETCH being over.
func (ra *readAhead) receive() bool {
	if ra.incoming == nil {
		return false
	}
	it, ok := <-ra.incoming
	return ra.add(it, ok)
}

// add adds a body received from ra.incoming (ok), or notes the end of
// the FETCH (!ok).
func (ra *readAhead) add(it raItem, ok bool) bool {
	if !ok {
		ra.incoming = nil
		return false
	}
	ra.items = append(ra.items, it)
	ra.left++
	ra.coming--
	return true
}

// join waits until the running batch FETCH, if any, is over: then the
// session's goroutine may use the upstream connection again.
func (ra *readAhead) join() {
	for ra.receive() {
	}
}

// raReader reads one message from the batch. Closing the reader of the
// batch's last unserved message returns the buffer to the pool.
type raReader struct {
	*bytes.Reader
	s *Session
}

func (r *raReader) Close() error {
	// After the last body asked for, the FETCH is as good as over.
	if r.s != nil && r.s.ra.left == 0 && (r.s.ra.incoming == nil || r.s.ra.coming == 0) {
		r.s.ra.release(r.s.b)
	}
	r.s = nil
	return nil
}

func (ra *readAhead) acquire(b *Backend) bool {
	size := int64(b.opts.ReadAheadBytes)
	if b.ra.inUse.Add(size) > b.ra.total {
		b.ra.inUse.Add(-size)
		return false
	}
	ra.bufp = b.raPool.Get().(*[]byte)
	return true
}

// release drops the batch and returns its buffer, after the FETCH that
// fills it.
func (ra *readAhead) release(b *Backend) {
	ra.join()
	ra.items, ra.left = ra.items[:0], 0
	if ra.bufp == nil {
		return
	}
	b.raPool.Put(ra.bufp)
	ra.bufp = nil
	b.ra.inUse.Add(-int64(b.opts.ReadAheadBytes))
}
