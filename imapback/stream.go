package imapback

// The message stream: Retrieve and the reader it returns, which fetches
// one message in chunks of ChunkSize octets (BODY.PEEK[]<offset.size>,
// one range per FETCH) and hands each octet to the POP3 side as soon as
// it is in. The batch of small messages that a sequential client is
// served from memory is in readahead.go, a large TOP's first FETCH in top.go.
//
// Who owns the upstream connection when. go-imap's own reader goroutine
// parses every response and calls Session.expunged (under s.mu) for
// EXPUNGEs; commands are sent by exactly one goroutine at a time:
//
//   - The session's goroutine, the caller of the Session's methods,
//     between transfers. It alone reconnects (guard) and sends \Seen
//     STOREs, NOOP, the snapshot and the UPDATE state. Retrieve does both
//     before it starts the reader's goroutine; a message that fits in
//     one chunk it fetches itself.
//   - The reader's goroutine (produce), from then until the reader's
//     Close. It sends the chunk FETCHes one after the other, each bounded
//     by the command timeout (bound), and neither reconnects nor sends a
//     STORE. A chunk's answer is read beside go-imap: its reader
//     goroutine, inside the tap, copies the body into the chunk's buffer. The session's goroutine sends nothing meanwhile: the POP3
//     side reads a message and closes it before its next command, and
//     Close returns only once produce has.
//   - A batch FETCH's goroutine, from fetchBatch until it has read the
//     last body of the batch. guard, Close and rangeBuffer wait for it
//     (ra.join) before they touch the connection.
//
// A chunk the client has not read yet never holds a literal open: the
// reader's goroutine reads each chunk at upstream speed into a buffer of
// its own (go-imap gives a literal one read deadline, which a slow client
// would otherwise outlast). With read-ahead on, a message larger than one
// chunk gets a second buffer, so the next chunk is fetched while the
// client is sent the current one.
//
// A chunk that fails ends the reader with an error: the POP3 side then
// cuts the client off without the terminating ".", so a truncated message
// is never stored as whole.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Retrieve returns a reader of message i. The first chunk is fetched
// before it returns, so that a message expunged upstream gives ErrGone,
// and an upstream that fails in the first chunk an error, instead of a
// response the client already saw start. lines >= 0 says the caller needs
// only the header and that many body lines. ctx bounds the whole
// transfer; each chunk also has the command timeout.
func (s *Session) Retrieve(ctx context.Context, i int, lines int) (io.ReadCloser, error) {
	// A sequential client's small messages come from the batch.
	if rc, err := s.retrieveAhead(ctx, i, lines); rc != nil || err != nil {
		return rc, err
	}
	r := &bodyReader{s: s, ctx: ctx, i: i, chunk: s.b.opts.ChunkSize, lines: lines}
	if lines >= 0 {
		r.chunk = min(r.chunk, topChunk)
	}
	done, err := s.guard(ctx)
	if err != nil {
		done()
		return nil, err
	}
	// Pending \Seen STOREs go out (and are waited for, if one names this
	// message) under the guard: a stalled upstream must not hold the
	// session past the command timeout.
	if lines < 0 {
		s.beforeRetr(s.msgs[i].UID)
	} else {
		s.beforeFetch(s.msgs[i].UID)
	}
	r.bufp = s.b.bufPool.Get().(*[]byte)
	r.free = make(chan []byte, 2)
	r.free <- *r.bufp
	if lines < 0 && s.msgs[i].Size >= int64(r.chunk) {
		// More than one chunk: fetch the next while the client is sent
		// this one.
		if buf := s.rangeBuffer(); buf != nil {
			r.other = buf
			r.free <- buf
		}
	}
	if r.other == nil && s.msgs[i].Size < int64(r.chunk) {
		// One chunk holds the message (a random RETR, a small message's
		// TOP): fetched right here, without a goroutine to hand it over.
		// The rest, if the upstream has more than it listed, as usual.
		r.cur = r.newFetch(0, <-r.free)
		r.fetch(r.cur, done)
		if r.cur.err == nil && r.cur.n == len(r.cur.buf) {
			r.start(func() {}, int64(r.cur.n))
		}
	} else {
		r.start(done, 0)
		if r.cur = <-r.ready; r.cur == nil {
			r.Close()
			return nil, fmt.Errorf("%w: transfer stopped", ErrUnavailable)
		}
		<-r.cur.done
	}
	if err := r.cur.err; err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// start starts the reader's goroutine at offset.
func (r *bodyReader) start(done func(), offset int64) {
	r.ready = make(chan *rangeFetch, 2)
	r.stop = make(chan struct{})
	r.exited = make(chan struct{})
	go r.produce(done, offset)
}

// rangeBuffer takes the session's read-ahead buffer as the second buffer
// of a large message, so that a session never holds more read-ahead
// memory than one batch's buffer. It returns nil when read-ahead is off,
// the batch still holds unserved messages, or the Backend-wide
// ReadAheadTotal is spent: the ranges are then fetched one after the
// other.
func (s *Session) rangeBuffer() []byte {
	if !s.readAheadEnabled() {
		return nil
	}
	// A large message asked for in a sequential run used up the batch
	// before it; a batch that still holds messages stays.
	s.ra.join()
	if s.ra.left > 0 {
		return nil
	}
	s.ra.release(s.b)
	if !s.ra.acquire(s.b) {
		return nil
	}
	return *s.ra.bufp
}

// bodyReader reads a message in chunks of BODY.PEEK[]<offset.size>. A
// goroutine of its own (produce) fetches the chunks one after the other
// into the reader's buffers, at upstream speed; the client takes each at
// its own pace, from its first octets on (but the last octet of a chunk
// only once its FETCH completed: a client cut off after the last literal
// must not have the whole message). With one buffer, a chunk is fetched
// when the client has read the one before; with two, while the client
// reads it.
type bodyReader struct {
	s        *Session
	ctx      context.Context
	i        int
	chunk    int
	lines    int              // TOP's body lines (top.go), or -1 for RETR
	headed   bool             // TOP's first FETCH ran (it may end at offset 0)
	headSize int64            // RFC822.SIZE in the answer to the first FETCH of a TOP, or -1
	bufp     *[]byte          // from bufPool
	other    []byte           // the session's read-ahead buffer, if taken
	free     chan []byte      // buffers the client is done with
	ready    chan *rangeFetch // the chunks, in order, as their FETCH starts
	stop     chan struct{}    // closed by Close
	exited   chan struct{}    // closed when produce returns
	cur      *rangeFetch
	pos      int // octets of cur read
	err      error
}

func (r *bodyReader) Read(p []byte) (int, error) {
	in, err := r.arrived()
	n := copy(p, in)
	r.pos += n
	return n, err
}

// WriteTo writes the message to w straight from the chunk buffers, as
// the octets arrive (io.WriterTo: the POP3 front end then copies nothing
// itself). It returns the error of a failed read like Read, or w's.
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		in, err := r.arrived()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(in)
		r.pos += n
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// arrived returns the octets of the message that are in and not read
// yet, waiting for some if there are none; io.EOF at the end.
func (r *bodyReader) arrived() ([]byte, error) {
	for {
		if r.err != nil {
			return nil, r.err
		}
		f := r.cur
		if avail := int(f.avail.Load()); r.pos < avail {
			// mem, not buf: a TOP's first FETCH sets buf while it runs.
			return f.mem[r.pos:avail], nil
		}
		if !f.finished() {
			select {
			case <-f.wake:
			case <-f.done:
			}
			continue
		}
		if r.pos < int(f.avail.Load()) {
			continue // the last octets came with the end
		}
		if f.err != nil {
			r.err = f.err
			return nil, f.err
		}
		if f.n < len(f.buf) {
			return nil, io.EOF // a short chunk ends the message
		}
		r.free <- f.mem
		if r.cur = <-r.ready; r.cur == nil {
			r.err = fmt.Errorf("%w: transfer stopped", ErrUnavailable)
			return nil, r.err
		}
		r.pos = 0
	}
}

// rangeFetch is one chunk of a message, read into buf by the reader's
// goroutine while the session's goroutine takes what has arrived.
type rangeFetch struct {
	offset int64
	mem    []byte        // the whole buffer
	buf    []byte        // the part asked for: len(buf) octets at offset
	avail  atomic.Int64  // octets at the start of buf the client may have
	wake   chan struct{} // signalled when avail grows
	done   chan struct{} // closed at the end, after n and err are set
	n      int
	err    error
	broken bool // the connection broke during the FETCH
}

// produce fetches the chunks of the message, each into a buffer the
// client is done with, until the last one, a failure, or Close. done ends
// the first chunk's guard; the later chunks get the command timeout
// each, but no reconnect and no \Seen STORE: those belong to the
// session's goroutine, which sends no command while a transfer is open.
func (r *bodyReader) produce(done func(), offset int64) {
	defer close(r.exited)
	defer close(r.ready)
	s := r.s
	for {
		var mem []byte
		select {
		case mem = <-r.free:
		case <-r.stop:
		}
		select {
		case <-r.stop:
			done()
			return
		default:
		}
		f := r.newFetch(offset, mem)
		r.ready <- f
		if offset > 0 {
			if err := r.ctx.Err(); err != nil {
				f.err = fmt.Errorf("%w: %v", ErrUnavailable, err)
				close(f.done)
				return
			}
			done = s.bound(r.ctx)
		}
		r.fetch(f, done)
		if f.err != nil || f.n < len(f.buf) {
			return
		}
		offset += int64(f.n)
	}
}

func (r *bodyReader) newFetch(offset int64, mem []byte) *rangeFetch {
	return &rangeFetch{
		offset: offset, mem: mem, buf: mem[:min(r.chunk, len(mem))],
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

// fetch runs the FETCH of chunk f, then ends its guard (done).
func (r *bodyReader) fetch(f *rangeFetch, done func()) {
	f.n, f.err = r.fetchRange(f)
	if f.err == nil {
		f.grew(f.n) // the last octet: the FETCH is complete
	}
	done()
	if f.broken {
		r.s.awaitClosed()
	}
	close(f.done)
}

func (f *rangeFetch) finished() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// grew publishes that the first n octets of buf are in.
func (f *rangeFetch) grew(n int) {
	f.avail.Store(int64(n))
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// fetchRange runs in the reader's goroutine: it fetches the chunk and
// returns its length.
func (r *bodyReader) fetchRange(f *rangeFetch) (int, error) {
	s := r.s
	uid := s.msgs[r.i].UID
	var n int
	var found, spoiled bool
	var err error
	// go-imap counts a UID as answered when a flag change by another
	// client arrives for it in the middle of this command, and then drops
	// the body that follows. The message is still there: ask again.
	head := r.lines >= 0 && !r.headed && s.msgs[r.i].Size > int64(r.chunk)
	r.headed = true
	for attempt := 1; ; attempt++ {
		if head {
			n, found, spoiled, err = r.fetchHead(uid, f)
			if errors.Is(err, errNoHead) && !f.broken {
				head, err = false, nil
				f.buf = f.mem[:min(r.chunk, len(f.mem))]
				continue
			}
		} else {
			n, found, spoiled, err = r.fetchChunk(uid, f)
		}
		if found || !spoiled || err != nil || attempt == maxFetchAttempts {
			break
		}
	}
	if errors.Is(err, errLiteral) {
		return 0, fmt.Errorf("%w: UID FETCH %d BODY.PEEK[]<%d>: %v", ErrUnavailable, uid, f.offset, err)
	}
	if !found {
		var ie *imap.Error
		if f.offset == 0 && !spoiled && (err == nil || errors.As(err, &ie)) {
			// No FETCH data for the UID, or a NIL body: another client
			// expunged it.
			s.markGone(r.i)
			return 0, fmt.Errorf("%w: UID %d", ErrGone, uid)
		}
		if err == nil {
			err = errors.New("no body in FETCH response")
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%w: UID FETCH %d BODY.PEEK[]<%d>: %v", ErrUnavailable, uid, f.offset, err)
	}
	if head && r.headSize >= 0 {
		// A stand-in's size, or a server's miscount (top.go).
		if err := s.vetSize(r.i, r.headSize); err != nil {
			return 0, err
		}
	}
	if err := r.checkEnd(f.offset, len(f.buf), n); err != nil {
		return 0, err
	}
	return n, nil
}

// maxFetchAttempts bounds the FETCHes of one chunk that other clients'
// flag changes can spoil (see fetchRange).
const maxFetchAttempts = 3

// fetchChunk runs one UID FETCH of the chunk f. It is never spoiled:
// read beside go-imap, a flag update in the middle of the answer drops
// nothing.
func (r *bodyReader) fetchChunk(uid imap.UID, f *rangeFetch) (n int, found, spoiled bool, err error) {
	s := r.s
	start := time.Now()
	n, found, err = s.readRange(uid, f)
	s.observe("UID FETCH", start, err)
	return n, found, false, err
}

// Close stops the transfer and releases the buffers. A transfer stopped
// early (TOP, or a client gone) leaves nothing pending upstream: the
// chunk in flight is read whole first.
func (r *bodyReader) Close() error {
	if r.stop != nil {
		close(r.stop)
		<-r.exited
		r.stop = nil
	}
	r.cur = nil
	if r.other != nil {
		r.other = nil
		r.s.ra.release(r.s.b)
	}
	if r.bufp != nil {
		r.s.b.bufPool.Put(r.bufp)
		r.bufp = nil
	}
	return nil
}
