package imapback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Message is one message of a snapshot.
type Message struct {
	UID  imap.UID
	Size int64  // RFC822.SIZE
	UIDL string // the POP3 unique-id
}

// Session is one user's maildrop: an authenticated IMAP connection with the
// mailbox selected and a snapshot of its messages. It is used by one
// goroutine at a time; go-imap's reader goroutine reports expunges to it.
type Session struct {
	b   *Backend
	log *slog.Logger
	nc  net.Conn // the TCP connection, closed to abort a blocked command
	c   *imapclient.Client
	// sasl is the plaintext layer under c, or nil (oauth.go).
	sasl *saslConn
	// tokenLogin: the session logs in with OAuth2 tokens.
	tokenLogin bool

	msgs []Message
	pol  Policy // delete, seen and view policy of this session (policy.go)
	// retrieved lists the messages RETR sent in full, for SeenQuit.
	retrieved []int

	mu sync.Mutex
	// seq lists the snapshot indices of the messages still in the
	// mailbox in sequence-number order: EXPUNGE responses name messages
	// by sequence number. -1 stands for a message a view leaves out.
	seq      []int
	gone     []bool // nil until the snapshot is installed
	expunges int    // EXPUNGE responses seen, to detect them during the snapshot

	// seen is an UID STORE +FLAGS (\Seen) sent but not yet waited for;
	// toSee the messages retrieved since, whose STORE goes out with the
	// next upstream command (see flushSeen).
	seen    *imapclient.FetchCommand
	seenSet imap.UIDSet // the UIDs of seen
	toSee   imap.UIDSet

	ra readAhead
	rc reconnectState // reconnect.go
}

// snapshot selects the mailbox and records every message's UID and size
// with one UID FETCH 1:* (UID RFC822.SIZE).
func (s *Session) snapshot() error {
	o := &s.b.opts
	start := time.Now()
	sel, err := s.c.Select(o.Mailbox, nil).Wait()
	s.observe("SELECT", start, err)
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code == imap.ResponseCodeInUse {
			return fmt.Errorf("%w: SELECT %q: %v", ErrInUse, o.Mailbox, err)
		}
		if errors.As(err, &ie) {
			return fmt.Errorf("%w: SELECT %q: %v", ErrMailbox, o.Mailbox, err)
		}
		return fmt.Errorf("%w: SELECT: %v", ErrUnavailable, err)
	}
	if err := s.checkKeywords(sel); err != nil {
		return err
	}
	// A message expunged while the FETCH runs may or may not be in its
	// answer, so the sequence numbers of later EXPUNGEs would be ambiguous:
	// fetch again until a FETCH runs without an EXPUNGE.
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		before := s.expunges
		s.mu.Unlock()
		msgs, seqs, err := s.fetchView(sel.NumMessages)
		if err != nil {
			return fmt.Errorf("%w: snapshot: %v", ErrUnavailable, err)
		}
		s.mu.Lock()
		if s.expunges == before || attempt == 3 {
			s.msgs = msgs
			// Slots up to the last message in the view; an EXPUNGE
			// beyond it moves no message of the view.
			s.seq = make([]int, 0, len(msgs))
			for i, n := range seqs {
				for uint32(len(s.seq)) < n-1 {
					s.seq = append(s.seq, -1)
				}
				s.seq = append(s.seq, i)
			}
			s.gone = make([]bool, len(msgs))
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
	}
	for i := range s.msgs {
		s.msgs[i].UIDL = o.UIDL.Format(uint32(s.msgs[i].UID), sel.UIDValidity)
	}
	s.rc.uidValidity = sel.UIDValidity
	return nil
}

// seqMsg is a message of a size FETCH with its sequence number.
type seqMsg struct {
	seq   uint32
	sized bool // the answer carried RFC822.SIZE
	Message
}

// fetchSizes fetches UID and RFC822.SIZE of the messages in uids and
// returns them in mailbox order with their sequence numbers.
func (s *Session) fetchSizes(uids imap.UIDSet) ([]Message, []uint32, error) {
	got, err := s.fetchSizesOnce(uids)
	// A flag change by another client, reported during the FETCH, makes
	// go-imap drop the size that follows for that UID (see
	// bodyReader.fill): ask again for those.
	for attempt := 1; err == nil; attempt++ {
		var missing imap.UIDSet
		byUID := make(map[imap.UID]*seqMsg)
		for i := range got {
			if !got[i].sized {
				missing.AddNum(got[i].UID)
				byUID[got[i].UID] = &got[i]
			}
		}
		if len(missing) == 0 {
			break
		}
		if attempt == maxFetchAttempts {
			return nil, nil, fmt.Errorf("FETCH gave no RFC822.SIZE for UIDs %v", missing)
		}
		var more []seqMsg
		more, err = s.fetchSizesOnce(missing)
		answered := make(map[imap.UID]bool, len(more))
		for _, m := range more {
			answered[m.UID] = true
			if sm := byUID[m.UID]; sm != nil && m.sized {
				sm.Size, sm.sized = m.Size, true
			}
		}
		// Not answered at all: expunged meanwhile (snapshot fetches again).
		got = slices.DeleteFunc(got, func(m seqMsg) bool { return !m.sized && !answered[m.UID] })
	}
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(got, func(a, b seqMsg) int { return int(a.seq) - int(b.seq) })
	// The snapshot keeps a slot per sequence number: a number beyond the
	// mailbox or given twice is a server bug, not a reason to allocate
	// without bound or misnumber EXPUNGEs. No number seen so far can
	// exceed the messages now plus those expunged since the login (plus
	// one that go-imap may have counted and not yet reported to us).
	bound := uint32(1)
	if mbox := s.c.Mailbox(); mbox != nil {
		bound += mbox.NumMessages
	}
	s.mu.Lock()
	bound += uint32(s.expunges)
	s.mu.Unlock()
	msgs := make([]Message, len(got))
	seqs := make([]uint32, len(got))
	for i := range got {
		if got[i].seq == 0 || got[i].seq > bound || i > 0 && got[i].seq == got[i-1].seq {
			return nil, nil, fmt.Errorf("FETCH answered with sequence number %d (mailbox has at most %d messages)", got[i].seq, bound)
		}
		msgs[i], seqs[i] = got[i].Message, got[i].seq
	}
	return msgs, seqs, nil
}

// fetchSizesOnce runs one UID FETCH (UID RFC822.SIZE).
func (s *Session) fetchSizesOnce(uids imap.UIDSet) ([]seqMsg, error) {
	var got []seqMsg
	start := time.Now()
	cmd := s.c.Fetch(uids, &imap.FetchOptions{UID: true, RFC822Size: true})
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		sm := seqMsg{seq: m.SeqNum}
		for item := m.Next(); item != nil; item = m.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				sm.UID = item.UID
			case imapclient.FetchItemDataRFC822Size:
				sm.Size, sm.sized = item.Size, true
			}
		}
		if sm.UID != 0 {
			got = append(got, sm)
		}
	}
	err := cmd.Close()
	s.observe("UID FETCH", start, err)
	return got, err
}

// expunged is go-imap's handler for unsolicited EXPUNGE responses.
func (s *Session) expunged(seqNum uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expunges++
	if s.gone == nil || seqNum == 0 || int(seqNum) > len(s.seq) {
		return // a message that arrived after the snapshot
	}
	if i := s.seq[seqNum-1]; i >= 0 {
		s.gone[i] = true
	}
	s.seq = slices.Delete(s.seq, int(seqNum-1), int(seqNum))
}

// Messages returns the snapshot, in mailbox order.
func (s *Session) Messages() []Message { return s.msgs }

// Expunged reports whether the upstream said message i was expunged.
func (s *Session) Expunged(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone[i]
}

func (s *Session) markGone(i int) {
	s.mu.Lock()
	s.gone[i] = true
	s.mu.Unlock()
}

// guard bounds one upstream exchange: when ctx ends or the command timeout
// passes, the connection is closed, which unblocks the waiting command.
// The session is useless afterwards, as it must be: the state of the
// interrupted command is unknown. A ctx that is already done is an error
// before anything is sent.
func (s *Session) guard(ctx context.Context) (func(), error) {
	// A batch FETCH of read-ahead may still be reading (readahead.go).
	s.ra.join()
	if err := ctx.Err(); err != nil {
		return func() {}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := s.revive(ctx); err != nil {
		return func() {}, err
	}
	return s.bound(ctx), nil
}

// bound is guard without the reconnect, for a range fetched in the
// background (rangeahead.go), which must leave the connection to the
// session's goroutine.
func (s *Session) bound(ctx context.Context) func() {
	ctx, cancel := context.WithTimeout(ctx, s.b.opts.CommandTimeout)
	stop := context.AfterFunc(ctx, func() { s.nc.Close() })
	return func() { stop(); cancel() }
}

// Noop sends NOOP, which keeps the upstream connection alive and collects
// pending EXPUNGE responses.
func (s *Session) Noop(ctx context.Context) error {
	done, err := s.guard(ctx)
	defer done()
	if err != nil {
		return err
	}
	s.settle()
	start := time.Now()
	err = s.c.Noop().Wait()
	s.observe("NOOP", start, err)
	if err != nil {
		return fmt.Errorf("%w: NOOP: %v", ErrUnavailable, err)
	}
	return nil
}

// Retrieved marks message i \Seen (unless configured not to). The STORE
// goes out with the next upstream command and nobody waits for it then, so
// that messages served from read-ahead cost no round trip each.
func (s *Session) Retrieved(i int) {
	switch s.pol.Seen {
	case SeenNever:
		return
	case SeenQuit:
		s.retrieved = append(s.retrieved, i)
		return
	}
	s.toSee.AddNum(s.msgs[i].UID)
}

// flushSeen sends one UID STORE +FLAGS.SILENT (\Seen) for the messages
// retrieved since the last one, without waiting for its answer.
func (s *Session) flushSeen() {
	if len(s.toSee) == 0 {
		return
	}
	s.waitSeen()
	s.seen = s.c.Store(s.toSee, &imap.StoreFlags{
		Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen},
	}, nil)
	s.seenSet, s.toSee = s.toSee, nil
}

// beforeFetch sends pending \Seen flags ahead of a FETCH of uids. go-imap
// hands a FETCH response to the first pending command whose UID set holds
// its UID, so a STORE still pending for one of uids would take the body
// meant for the FETCH: then the STORE is waited for first.
func (s *Session) beforeFetch(uids ...imap.UID) {
	s.flushSeen()
	if s.seen == nil {
		return
	}
	for _, uid := range uids {
		if s.seenSet.Contains(uid) {
			s.waitSeen()
			return
		}
	}
}

// settle sends and waits for pending \Seen STOREs. Their failure is
// logged, not returned: the message was delivered, only the flag is
// missing.
func (s *Session) settle() {
	s.flushSeen()
	s.waitSeen()
}

func (s *Session) waitSeen() {
	if s.seen == nil {
		return
	}
	if err := s.seen.Close(); err != nil {
		s.log.Warn("setting \\Seen failed", "err", err)
	}
	s.seen = nil
}

// Commit applies the seen and delete policies (policy.go) to exactly
// the messages in deleted. It returns how many left the mailbox
// (expunged or moved) and how many stay in it marked deleted (\Deleted
// without an expunge, or a device's keyword); the rest were kept.
func (s *Session) Commit(ctx context.Context, deleted []int) (removed, flagged int, err error) {
	done, err := s.guard(ctx)
	defer done()
	if err != nil {
		return 0, 0, err
	}
	s.settle()
	return s.commit(deleted)
}

// Close logs out without changing the mailbox: LOGOUT, unlike CLOSE, does
// not expunge. A pending \Seen STORE and the LOGOUT get at most the
// command timeout (and no more than closeTimeout) together: then the
// connection is closed, which ends both.
func (s *Session) Close() error {
	stop := time.AfterFunc(min(s.b.opts.CommandTimeout, closeTimeout), func() { s.nc.Close() })
	defer stop.Stop()
	s.ra.release(s.b) // first: it waits for a batch FETCH still running
	s.settle()
	start := time.Now()
	err := s.c.Logout().Wait()
	s.observe("LOGOUT", start, err)
	return s.c.Close()
}

// closeTimeout bounds Close: LOGOUT changes nothing, so a slow upstream
// should not hold a finished session (or a server shutdown) for long.
const closeTimeout = 5 * time.Second

// Retrieve returns a reader of message i. The first chunk is fetched
// before it returns, so that a message expunged upstream gives ErrGone,
// and an upstream that fails in the first chunk an error, instead of a
// response the client already saw start. lines >= 0 says the caller needs
// only the header and that many body lines. ctx bounds the whole
// transfer; each chunk also has the command timeout.
func (s *Session) Retrieve(ctx context.Context, i int, lines int) (io.ReadCloser, error) {
	if rc, err := s.retrieveAhead(ctx, i, lines); rc != nil || err != nil {
		return rc, err
	}
	r := &bodyReader{s: s, ctx: ctx, i: i, chunk: s.b.opts.ChunkSize}
	if lines >= 0 {
		r.chunk = min(r.chunk, 64<<10)
	}
	done, err := s.guard(ctx)
	if err != nil {
		done()
		return nil, err
	}
	// Pending \Seen STOREs go out (and are waited for, if one names this
	// message) under the guard: a stalled upstream must not hold the
	// session past the command timeout.
	s.beforeFetch(s.msgs[i].UID)
	r.bufp = s.b.bufPool.Get().(*[]byte)
	r.free = make(chan []byte, 2)
	r.free <- *r.bufp
	if lines < 0 && s.msgs[i].Size >= int64(r.chunk) {
		// More than one chunk: fetch the next while the client is sent
		// this one (rangeahead.go).
		if buf := s.rangeBuffer(); buf != nil {
			r.other = buf
			r.free <- buf
		}
	}
	r.ready = make(chan *rangeFetch, 2)
	r.stop = make(chan struct{})
	r.exited = make(chan struct{})
	go r.produce(done)
	if r.cur = <-r.ready; r.cur == nil {
		r.Close()
		return nil, fmt.Errorf("%w: transfer stopped", ErrUnavailable)
	}
	<-r.cur.done
	if err := r.cur.err; err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// bodyReader reads a message in chunks of BODY.PEEK[]<offset.size>. A
// goroutine of its own (produce) fetches the chunks one after the other
// into the reader's buffers, at upstream speed; the client takes each at
// its own pace, from its first octets on (but the last octet of a chunk
// only once its FETCH completed: a client cut off after the last literal
// must not have the whole message). With one buffer, a chunk is fetched
// when the client has read the one before; with two, while the client
// reads it (rangeahead.go).
type bodyReader struct {
	s      *Session
	ctx    context.Context
	i      int
	chunk  int
	bufp   *[]byte          // from bufPool
	other  []byte           // the session's read-ahead buffer, if taken
	free   chan []byte      // buffers the client is done with
	ready  chan *rangeFetch // the chunks, in order, as their FETCH starts
	stop   chan struct{}    // closed by Close
	exited chan struct{}    // closed when produce returns
	cur    *rangeFetch
	pos    int // octets of cur read
	err    error
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
			return f.buf[r.pos:avail], nil
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
func (r *bodyReader) produce(done func()) {
	defer close(r.exited)
	defer close(r.ready)
	s := r.s
	offset := int64(0)
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
		f := &rangeFetch{
			offset: offset, mem: mem, buf: mem[:min(r.chunk, len(mem))],
			wake: make(chan struct{}, 1), done: make(chan struct{}),
		}
		r.ready <- f
		if offset > 0 {
			if err := r.ctx.Err(); err != nil {
				f.err = fmt.Errorf("%w: %v", ErrUnavailable, err)
				close(f.done)
				return
			}
			done = s.bound(r.ctx)
		}
		f.n, f.err = r.fetchRange(f)
		if f.err == nil {
			f.grew(f.n) // the last octet: the FETCH is complete
		}
		done()
		if f.broken {
			s.awaitClosed()
		}
		close(f.done)
		if f.err != nil || f.n < len(f.buf) {
			return
		}
		offset += int64(f.n)
	}
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

// fetchRange runs in the chunk's goroutine: it fetches the chunk and
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
	for attempt := 1; ; attempt++ {
		n, found, spoiled, err = r.fetchChunk(uid, f)
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
	if err := r.checkEnd(f.offset, len(f.buf), n); err != nil {
		return 0, err
	}
	return n, nil
}

// maxFetchAttempts bounds the FETCHes of one chunk that other clients'
// flag changes can spoil (see fetchRange).
const maxFetchAttempts = 3

// fetchChunk runs one UID FETCH of the chunk f.
// spoiled reports that FETCH data for uid came without a body section:
// a flag update, after which go-imap drops the answer.
func (r *bodyReader) fetchChunk(uid imap.UID, f *rangeFetch) (n int, found, spoiled bool, err error) {
	s := r.s
	section := &imap.FetchItemBodySection{
		Peek:    true,
		Partial: &imap.SectionPartial{Offset: f.offset, Size: int64(len(f.buf))},
	}
	start := time.Now()
	defer func() { s.observe("UID FETCH", start, err) }()
	cmd := s.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{section},
	})
	// go-imap passes this command only FETCH data that names uid.
	for !found && err == nil {
		m := cmd.Next()
		if m == nil {
			break
		}
		var section bool
		n, found, section, err = readBodyChunk(m, f)
		spoiled = spoiled || !section
	}
	if errors.Is(err, errLiteral) {
		// After a failed literal read go-imap's reader goroutine owns the
		// connection's buffer again, and closing the command would read
		// the literal once more, racing with it. The connection is broken
		// anyway: close it, which ends the command.
		s.nc.Close()
		f.broken = true
		return n, found, spoiled, err
	}
	cerr := cmd.Close()
	f.broken = ConnectionError(cerr)
	if err == nil {
		err = cerr
	}
	return n, found, spoiled, err
}

var errLiteral = errors.New("literal cut short")

// readBodyChunk copies the body section of a FETCH response into f.buf,
// publishing each piece as it comes. It checks that the server answered
// the partial FETCH as asked: a server that sent another range or more
// than asked would corrupt the message. section reports whether the
// response had a body section at all, found whether it holds data (or,
// past the start, NIL for the end of the message).
func readBodyChunk(m *imapclient.FetchMessageData, f *rangeFetch) (n int, found, section bool, err error) {
	for item := m.Next(); item != nil; item = m.Next() {
		body, ok := item.(imapclient.FetchItemDataBodySection)
		if !ok || section {
			continue
		}
		section, found = true, true
		if body.Literal == nil {
			// NIL: past the end of the message, or no message at all.
			return 0, f.offset > 0, true, nil
		}
		var got int64 // a response without <offset> is the whole body
		if p := body.Section.Partial; p != nil {
			got = p.Offset
		}
		size := body.Literal.Size()
		if got != f.offset || size > int64(len(f.buf)) {
			return 0, found, section, fmt.Errorf("server answered BODY[]<%d> with %d octets at offset %d", f.offset, size, got)
		}
		// Read exactly the announced size: a literal cut short is a broken
		// connection, not the end of the message.
		for n < int(size) {
			// As much as the connection has: smaller reads cost more
			// system calls and hand-overs (10% more CPU with 64 KiB).
			k, rerr := body.Literal.Read(f.buf[n:size])
			n += k
			if k > 0 && min(n, int(size)-1) > 0 {
				f.grew(min(n, int(size)-1)) // the last octet waits for the OK
			}
			if rerr != nil && n < int(size) {
				if rerr == io.EOF {
					rerr = io.ErrUnexpectedEOF
				}
				return n, found, section, fmt.Errorf("%w: %v", errLiteral, rerr)
			}
		}
	}
	return n, found, section, nil
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
