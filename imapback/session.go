package imapback

// The Session and the methods the POP3 side calls on it between
// transfers: the snapshot taken at login, NOOP, Commit and Close (the
// \Seen flags are in seen.go). Retrieve and the stream it returns are in
// stream.go, which also tells which goroutine sends upstream commands
// when.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
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
// mailbox selected and a snapshot of its messages. Its methods are called
// by one goroutine at a time; go-imap's reader goroutine reports expunges
// to it, under mu.
type Session struct {
	b  *Backend
	nc net.Conn // the TCP connection, closed to abort a blocked command
	c  *imapclient.Client
	// sasl is the plaintext layer under c that turns XOAUTH2's empty
	// response into an empty line, or nil.
	sasl *saslConn
	// tokenLogin: the session logs in with OAuth2 tokens.
	tokenLogin bool

	msgs []Message
	pol  Policy // delete, seen and view policy of this session
	// mailbox is the upstream name of Options.Mailbox, found as
	// folders.go says.
	mailbox string
	// retrieved lists the messages RETR sent in full, for SeenQuit.
	retrieved []int

	mu sync.Mutex
	// seq maps the sequence numbers of the snapshot's messages still in
	// the mailbox to their indices: EXPUNGE responses name messages by
	// sequence number (snapshotbounds.go).
	seq      seqIndex
	gone     []bool // nil until the snapshot is installed
	expunges int    // EXPUNGE responses seen, to detect them during the snapshot

	// seen is an UID STORE +FLAGS (\Seen) sent but not yet waited for;
	// toSee the messages retrieved since, whose STORE goes out with the
	// next upstream command (see flushSeen).
	seen    *imapclient.FetchCommand
	seenSet imap.UIDSet // the UIDs of seen
	toSee   imap.UIDSet
	// toSeeSince is when the first of toSee was retrieved, toSeeCount
	// how many Retrieved added: they bound how long RETRs hold it.
	toSeeSince time.Time
	toSeeCount int

	ra readAhead      // the batch of small messages fetched ahead
	rc reconnectState // what logging in again after a lost connection needs
	bc *boundedConn   // bounds what the upstream sends to c
	// tap, between c and bc, fetches the items go-imap cannot parse.
	tap *itemTap
	// held, between go-imap and tap, sends a \Seen STORE together with
	// the command after it (seen.go).
	held *heldConn
	user string // the login name, for the UIDL map and the cache key
	// cache is what the snapshot took from the snapshot cache.
	cache sessionCache
	// lazy, when set, keeps what the UIDLs are made of until LoadUIDLs
	// has their header hashes (lazyuidl.go): Messages' UIDLs are empty.
	lazy *lazyUIDLs
}

// logger is the session's logger. It is made for each line, which
// few sessions log, rather than kept: a logger with attributes holds a
// copy of its handler and their text, which every idle session would.
func (s *Session) logger() *slog.Logger {
	switch {
	case s.user == "": // Probe's
		return s.b.opts.Logger
	case s.pol.Device != "":
		return s.b.opts.Logger.With("user", s.user, "device", s.pol.Device)
	}
	return s.b.opts.Logger.With("user", s.user)
}

// limitResponses puts the session's response bounds on conn, the
// plaintext connection go-imap reads.
func (s *Session) limitResponses(conn net.Conn) net.Conn {
	s.bc = newBoundedConn(conn, s.b.opts.ResponseLimits)
	s.tap = &itemTap{Conn: s.bc}
	s.held = &heldConn{Conn: s.tap}
	return s.held
}

// upstreamErr adds the bound the upstream passed, if any, to err: go-imap
// reports a failed read without its type.
func (s *Session) upstreamErr(err error) error {
	if be := s.bc.Err(); be != nil && err != nil {
		return fmt.Errorf("%w (%w)", err, be)
	}
	return err
}

// selectMaildrop selects s.mailbox (the policy's Mailbox or else
// Options.Mailbox), under the personal namespace if the upstream refuses
// it as written (folders.go), and sets s.mailbox to what it selected.
// early is the snapshot's FETCH, sent right behind the first SELECT
// (snapshotpipe.go), or nil.
func (s *Session) selectMaildrop() (sel *imap.SelectData, early *imapclient.FetchCommand, err error) {
	start := time.Now()
	cmd := s.c.Select(s.mailbox, nil)
	early = s.pipelineSnapshot()
	sel, err = cmd.Wait()
	s.observe("SELECT", start, err)
	if err != nil && early != nil {
		// Answered with BAD or NO, nothing being selected.
		early.Close()
		early, s.cache.search = nil, nil
	}
	// INBOX is the same name in every namespace (RFC 3501 section 5.1).
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code == imap.ResponseCodeInUse || strings.EqualFold(s.mailbox, "INBOX") {
		return sel, early, err
	}
	name, ferr := s.findFolder(s.mailbox)
	if ferr != nil || name == s.mailbox {
		return sel, nil, err
	}
	s.mailbox = name
	s.lookupCache()
	start = time.Now()
	sel, err = s.c.Select(s.mailbox, nil).Wait()
	s.observe("SELECT", start, err)
	return sel, nil, err
}

// snapshot selects the mailbox and records every message's UID and size
// with one UID FETCH 1:* (UID RFC822.SIZE), with the header for %m, or
// from the snapshot cache (cachesnap.go), then what the UIDL format needs
// besides (uidlfetch.go).
func (s *Session) snapshot() error {
	s.mailbox = cmp.Or(s.pol.Mailbox, s.b.opts.Mailbox)
	s.lookupCache()
	s.bc.Expect(s.selectExpectation())
	// A message expunged while the FETCH runs may or may not be in its
	// answer, so the sequence numbers of later EXPUNGEs would be ambiguous:
	// fetch again until a FETCH runs without an EXPUNGE. The first FETCH
	// may go out with the SELECT: count from before both.
	s.mu.Lock()
	before := s.expunges
	s.mu.Unlock()
	sel, early, err := s.selectMaildrop()
	defer func() {
		if early != nil { // not read: see fetchSizesOnce
			s.nc.Close()
			early.Close()
		}
	}()
	err = s.upstreamErr(err)
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code == imap.ResponseCodeInUse {
			return fmt.Errorf("%w: SELECT %q: %v", ErrInUse, s.mailbox, err)
		}
		if errors.As(err, &ie) {
			return fmt.Errorf("%w: SELECT %q: %v", ErrMailbox, s.mailbox, err)
		}
		return fmt.Errorf("%w: SELECT: %w", ErrUnavailable, err)
	}
	if err := s.checkKeywords(sel); err != nil {
		return err
	}
	var vars []UIDLVars // what the UIDLs are made of, beside UID and UIDVALIDITY
	for attempt := 0; ; attempt++ {
		msgs, seqs, cached, err := s.fetchView(sel, &early)
		if errors.Is(err, ErrMaildropTooLarge) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: snapshot: %w", ErrUnavailable, err)
		}
		if vars, err = s.uidlVars(msgs, cached); err != nil {
			return err
		}
		s.mu.Lock()
		if s.expunges == before || attempt == 3 {
			s.msgs = msgs
			s.seq = newSeqIndex(seqs)
			s.gone = make([]bool, len(msgs))
			s.mu.Unlock()
			break
		}
		before = s.expunges
		s.mu.Unlock()
	}
	if !s.deferUIDLs(vars, sel.UIDValidity) {
		if err := s.makeUIDLs(vars, sel.UIDValidity); err != nil {
			return err
		}
	}
	s.rc.uidValidity = sel.UIDValidity
	s.rememberSnapshot(sel.UIDValidity, vars)
	return nil
}

// seqMsg is a message of a size FETCH with its sequence number.
type seqMsg struct {
	seq   uint32
	sized bool   // the answer carried RFC822.SIZE
	hash  string // the header hash, if the FETCH asked for the header
	Message
}

// fetchSizes fetches UID and RFC822.SIZE of the messages in uids and
// returns them in mailbox order with their sequence numbers, and, for a
// UIDL format with %m, their header hashes (else nil; a hash missing
// from the answer is left empty, for uidlVars to fetch).
// sent, if not nil, is the first FETCH, already sent.
func (s *Session) fetchSizes(uids imap.UIDSet, sent *imapclient.FetchCommand) ([]Message, []uint32, []UIDLVars, error) {
	got, err := s.fetchSizesOnce(uids, sent)
	// A flag change by another client, reported during the FETCH, makes
	// go-imap take it for that UID's answer and drop the size that
	// follows: ask again for those.
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
			return nil, nil, nil, fmt.Errorf("FETCH gave no RFC822.SIZE for UIDs %v", missing)
		}
		var more []seqMsg
		more, err = s.fetchSizesOnce(missing, nil)
		answered := make(map[imap.UID]bool, len(more))
		for _, m := range more {
			answered[m.UID] = true
			if sm := byUID[m.UID]; sm != nil && m.sized {
				sm.Size, sm.sized, sm.hash = m.Size, true, m.hash
			}
		}
		// Not answered at all: expunged meanwhile (snapshot fetches again).
		got = slices.DeleteFunc(got, func(m seqMsg) bool { return !m.sized && !answered[m.UID] })
	}
	if err != nil {
		return nil, nil, nil, err
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
	var vars []UIDLVars
	if s.b.opts.UIDL.Needs().HeaderHash {
		vars = make([]UIDLVars, len(got))
	}
	for i := range got {
		if got[i].seq == 0 || got[i].seq > bound || i > 0 && got[i].seq == got[i-1].seq {
			return nil, nil, nil, fmt.Errorf("FETCH answered with sequence number %d (mailbox has at most %d messages)", got[i].seq, bound)
		}
		msgs[i], seqs[i] = got[i].Message, got[i].seq
		if vars != nil {
			vars[i].HeaderHash = got[i].hash
		}
	}
	return msgs, seqs, vars, nil
}

// fetchSizesOnce runs one UID FETCH of snapshotItems, or reads the
// answer to cmd, that FETCH already sent.
func (s *Session) fetchSizesOnce(uids imap.UIDSet, cmd *imapclient.FetchCommand) ([]seqMsg, error) {
	start := time.Now()
	limit := maildropBound(s.b.opts.MaxMessages)
	got := make([]seqMsg, 0, s.fetchHint(uids, limit))
	if cmd == nil {
		cmd = s.c.Fetch(uids, s.snapshotItems())
	}
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		sm := seqMsg{seq: m.SeqNum}
		for item := m.Next(); item != nil; item = m.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				sm.UID = item.UID
			case imapclient.FetchItemDataRFC822Size:
				sm.Size, sm.sized = item.Size, true
			case imapclient.FetchItemDataBodySection:
				h, err := hashSection(item)
				if err != nil {
					return nil, s.headerFailed(start, err)
				}
				sm.hash = cmp.Or(h, sm.hash) // a section that is no header keeps one hashed
			}
		}
		if sm.UID != 0 {
			got = append(got, sm)
		}
		if err := limit.checkFetched(len(got)); err != nil {
			// Closing the client would wait for its reader, which waits
			// to hand this command the next answer: close the
			// connection under it.
			s.nc.Close()
			cmd.Close()
			return nil, err
		}
	}
	err := s.upstreamErr(cmd.Close())
	s.observe("UID FETCH", start, err)
	return got, err
}

// expunged is go-imap's handler for unsolicited EXPUNGE responses.
func (s *Session) expunged(seqNum uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expunges++
	if s.gone == nil {
		return
	}
	if i := s.seq.expunge(seqNum); i >= 0 {
		s.gone[i] = true
	}
}

// Messages returns the snapshot, in mailbox order. Its UIDLs are empty
// until LoadUIDLs when the snapshot left them for it (lazyuidl.go).
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
	// A batch FETCH may still be reading: it owns the connection until
	// its last body is in.
	s.ra.join()
	if err := ctx.Err(); err != nil {
		return func() {}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := s.revive(ctx); err != nil {
		return func() {}, err
	}
	s.expectCommand()
	return s.bound(ctx), nil
}

// expectCommand bounds the responses to the commands that follow by
// what the mailbox can produce.
func (s *Session) expectCommand() {
	n := uint32(len(s.msgs))
	if mbox := s.c.Mailbox(); mbox != nil {
		n = max(n, mbox.NumMessages)
	}
	s.bc.Expect(commandExpectation(n, maildropBound(s.b.opts.MaxMessages)))
}

// bound is guard without the reconnect, for a FETCH sent by a goroutine
// other than the session's (a range or a batch read in the background):
// reconnecting replaces s.c, which only the session's goroutine may do.
func (s *Session) bound(ctx context.Context) func() {
	// A timer and a hook on ctx rather than a context of its own: this
	// runs once per message, and a derived context allocates twice as much.
	closeConn := func() { s.nc.Close() }
	timer := time.AfterFunc(s.b.opts.CommandTimeout, closeConn)
	stop := context.AfterFunc(ctx, closeConn)
	return func() { stop(); timer.Stop() }
}

// awaitClosed waits, after a background FETCH broke the connection,
// until go-imap has noticed, so that the session's next command
// reconnects (revive) instead of writing to a closed socket.
func (s *Session) awaitClosed() {
	select {
	case <-s.c.Closed():
	case <-time.After(closeTimeout):
	}
}

// Noop sends NOOP, which keeps the upstream connection alive and collects
// pending EXPUNGE responses.
func (s *Session) Noop(ctx context.Context) error {
	done, err := s.guard(ctx)
	defer done()
	if err != nil {
		return err
	}
	// The NOOP goes out right behind a pending \Seen STORE, whose
	// answer comes first: one round trip for both.
	s.flushSeen()
	start := time.Now()
	noop := s.c.Noop()
	s.waitSeen()
	err = noop.Wait()
	s.observe("NOOP", start, err)
	if err != nil {
		return fmt.Errorf("%w: NOOP: %v", ErrUnavailable, err)
	}
	return nil
}

// Commit applies the seen and delete policies to exactly
// the messages in deleted. It returns how many left the mailbox
// (expunged or moved) and how many stay in it marked deleted (\Deleted
// without an expunge, or a device's keyword); the rest were kept.
func (s *Session) Commit(ctx context.Context, deleted []int) (removed, flagged int, err error) {
	done, err := s.guard(ctx)
	defer done()
	if err != nil {
		return 0, 0, err
	}
	// The \Seen flags go out first and the UPDATE's commands right
	// behind them, without a round trip of their own. They are waited for
	// before the answer, so that a client that hears +OK finds its
	// messages \Seen (as Dovecot's POP3 does), but their failure is only
	// logged.
	s.flushSeen()
	removed, flagged, err = s.commit(deleted)
	s.waitSeen()
	return removed, flagged, err
}

// Close logs out without changing the mailbox: LOGOUT, unlike CLOSE, does
// not expunge. A pending \Seen STORE and the LOGOUT get at most the
// command timeout (and no more than closeTimeout) together: then the
// connection is closed, which ends both. The LOGOUT goes out right
// behind the STORE, which is still waited for, to log its failure.
func (s *Session) Close() error {
	stop := time.AfterFunc(min(s.b.opts.CommandTimeout, closeTimeout), func() { s.nc.Close() })
	defer stop.Stop()
	s.ra.release(s.b) // first: it waits for a batch FETCH still running
	s.flushSeen()
	start := time.Now()
	logout := s.c.Logout()
	s.waitSeen()
	err := logout.Wait()
	s.observe("LOGOUT", start, err)
	return s.c.Close()
}

// closeTimeout bounds Close: LOGOUT changes nothing, so a slow upstream
// should not hold a finished session (or a server shutdown) for long.
const closeTimeout = 5 * time.Second
