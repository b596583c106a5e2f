package imapback

// Commands sent beside go-imap: identities (%g), which go-imap cannot
// parse (EMAILID, X-GM-MSGID, X-GUID: it fails the whole connection on an
// item it does not know), and the bodies of a read-ahead batch or one
// range of a message, or the headers of a %m snapshot (rawbatch.go),
// which go-imap would hand over one goroutine switch at a time.
//
// itemTap sits between go-imap and the upstream connection. Unarmed, it
// passes reads through, waiting for input before it picks the buffer
// (lateread.go), so that an answer to a command armed meanwhile lands in
// the tap's. Armed by the goroutine that then writes one UID FETCH with
// its own tag while no go-imap command waits for FETCH data, it takes the
// answers to that command out of what go-imap's reader goroutine reads,
// hands them over, and passes everything else through (an EXPUNGE, a
// flag change, a STORE's OK).

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// The tags of the tap's commands (go-imap's are "T" and a number):
// identities, and a batch's bodies.
const (
	rawTag   = "PBID"
	batchTag = "PBB"
)

// maxRawLine bounds one response line while the tap is armed.
const maxRawLine = 64 << 10

type itemTap struct {
	net.Conn // the bounded connection

	mu   sync.Mutex
	cmd  *rawFetch // armed command, or nil
	buf  []byte    // read from Conn, not yet judged or handed on
	out  []byte    // judged, to be handed to go-imap
	lit  int64     // octets of a literal still to pass through unjudged
	rerr error     // read error to report after out
	// big backs buf while a body batch is armed, so that each read
	// takes what the socket holds (rawbatch.go); nil otherwise.
	big *[]byte
	// goBuf is go-imap's buffer while readIdle waits; choose is
	// readInto, made once.
	goBuf  []byte
	choose func() []byte
}

// rawFetch is one UID FETCH of an identity item, or of a batch's bodies.
type rawFetch struct {
	tag  string // rawTag or batchTag
	item string // EMAILID, X-GM-MSGID or X-GUID; BODY[]
	got  map[imap.UID]string
	// bodies, when set, makes this the FETCH of a read-ahead batch.
	bodies *bodyBatch
	err    error
	done   chan struct{}
}

func (t *itemTap) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if len(t.out) > 0 {
			n := copy(p, t.out)
			t.out = t.out[n:]
			return n, nil
		}
		if t.rerr != nil {
			return 0, t.rerr
		}
		if t.cmd == nil && t.big != nil {
			t.endBig()
		}
		if t.cmd == nil && len(t.buf) == 0 {
			if n, err, mine := t.readIdle(p); !mine {
				return n, err
			}
		} else if !t.judge() {
			if t.cmd != nil && t.cmd.bodies != nil {
				t.readBig()
				continue
			}
			t.readSmall()
		}
	}
}

// readIdle waits for input with no command armed, with t.mu held (and
// released around the read). If a batch is armed by the time input
// comes, the input goes into the big buffer (lateread.go), and into buf
// for judging; else into p, for go-imap: mine false, and what Read
// returns.
func (t *itemTap) readIdle(p []byte) (n int, err error, mine bool) {
	if t.choose == nil {
		t.choose = t.readInto
	}
	t.goBuf = p
	t.mu.Unlock()
	q, n, err := readLate(t.Conn, t.choose)
	t.mu.Lock()
	t.goBuf = nil
	switch {
	case t.big != nil && len(q) > 0 && &q[0] == &(*t.big)[0]:
		t.buf = q[:n]
	case t.cmd == nil:
		return n, err, false
	case n > 0:
		// Armed meanwhile: what was read may hold its answers.
		t.keepRead(p[:n])
	}
	// Armed meanwhile, a failed read ends the command too: go-imap's
	// reader stops at the error, and nobody would read its answer.
	t.readFailed(err)
	return 0, nil, true
}

// readInto picks the buffer of readIdle's read, when input has come.
func (t *itemTap) readInto() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cmd == nil || t.cmd.bodies == nil {
		return t.goBuf
	}
	if t.big == nil {
		t.big = bigReads.Get().(*[]byte)
	}
	return *t.big
}

// readSmall reads up to 4 KiB, what go-imap's own reads take, into buf,
// with t.mu held (and released around the read).
func (t *itemTap) readSmall() {
	var chunk [4096]byte
	t.mu.Unlock()
	n, err := t.Conn.Read(chunk[:])
	t.mu.Lock()
	t.buf = append(t.buf, chunk[:n]...)
	t.readFailed(err)
}

// readFailed ends the armed command, if any, after a failed read.
func (t *itemTap) readFailed(err error) {
	if err != nil {
		t.rerr = err
		t.fail(err)
		t.out, t.buf = append(t.out, t.buf...), nil
	}
}

// judge moves the complete lines of buf to out, or to the armed command.
// It reports false when buf needs more octets first.
func (t *itemTap) judge() bool {
	moved := false
	for len(t.buf) > 0 {
		if t.cmd != nil && t.cmd.bodies != nil && t.cmd.bodies.left > 0 {
			t.buf = t.cmd.bodies.literal(t.buf)
			moved = true
			continue
		}
		if t.lit > 0 {
			n := min(int64(len(t.buf)), t.lit)
			t.out = append(t.out, t.buf[:n]...)
			t.buf, t.lit = t.buf[n:], t.lit-n
			moved = true
			continue
		}
		if t.cmd == nil {
			t.out, t.buf = append(t.out, t.buf...), nil
			return true
		}
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			if len(t.buf) > maxRawLine {
				t.fail(fmt.Errorf("%w: a line of more than %d octets", ErrResponseTooLarge, maxRawLine))
				return true
			}
			return moved
		}
		line := t.buf[:i+1]
		t.buf = t.buf[i+1:]
		moved = true
		if t.take(line) {
			continue
		}
		t.out = append(t.out, line...)
		t.lit = literalAtEnd(line)
	}
	return moved
}

// take consumes line if it answers the armed command.
func (t *itemTap) take(line []byte) bool {
	c := t.cmd
	if rest, ok := bytes.CutPrefix(line, []byte(c.tag+" ")); ok {
		if !bytes.HasPrefix(rest, []byte("OK")) {
			c.err = fmt.Errorf("%w: UID FETCH (%s): %s", errRawRefused, c.item, bytes.TrimSpace(rest))
		}
		t.finish()
		return true
	}
	if c.bodies != nil {
		return t.takeBody(line)
	}
	if literalAtEnd(line) > 0 || !bytes.HasPrefix(line, []byte("* ")) {
		return false
	}
	items, err := parseFetchLine(line)
	if errors.Is(err, errNotFetch) {
		return false
	}
	if err != nil {
		// A FETCH without literals that does not parse: most likely a
		// broken answer to this command, which go-imap would choke on.
		if c.err == nil {
			c.err = fmt.Errorf("UID FETCH (%s): %w in %q", c.item, err, bytes.TrimSpace(line))
		}
		return true
	}
	id, ok := items[c.item]
	if !ok {
		return false
	}
	uid, err := strconv.ParseUint(items["UID"], 10, 32)
	if err != nil || uid == 0 {
		if c.err == nil {
			c.err = fmt.Errorf("UID FETCH (%s): an answer without its UID: %q", c.item, bytes.TrimSpace(line))
		}
		return true
	}
	if err := checkIdentity(id); err != nil && c.err == nil {
		c.err = fmt.Errorf("UID FETCH (%s): UID %d: %v", c.item, uid, err)
	}
	c.got[imap.UID(uid)] = id
	return true
}

func checkIdentity(id string) error {
	if len(id) == 0 || len(id) > maxIdentityLen {
		return fmt.Errorf("identity %q is not 1 to %d characters", id, maxIdentityLen)
	}
	return checkUIDL(id)
}

func (t *itemTap) fail(err error) {
	if t.cmd != nil {
		if t.cmd.bodies != nil {
			t.cmd.bodies.broken = true
		}
		t.cmd.err = err
		t.finish()
	}
}

func (t *itemTap) finish() {
	close(t.cmd.done)
	t.cmd = nil
}

// literalAtEnd returns the size of the literal a line announces at its
// end ("{n}" or "{n+}" before CRLF), or 0.
func literalAtEnd(line []byte) int64 {
	line = bytes.TrimRight(line, "\r\n")
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(string(bytes.TrimSuffix(line[i+1:len(line)-1], []byte("+"))), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// errRawRefused: the upstream answered the tap's command NO or BAD.
var errRawRefused = errors.New("refused")

// errNoRawFetch: the tap is already armed, or the connection is closed.
var errNoRawFetch = errors.New("raw fetch not possible now")

// fetch sends "UID FETCH uids (UID item)" and returns the item's value
// per UID. It must run on the session's goroutine with no go-imap
// command pending; after timeout it closes conn, which ends the session.
// closed is closed when go-imap's reader is gone (nil: never).
func (t *itemTap) fetch(uids imap.UIDSet, item string, timeout time.Duration, conn net.Conn, closed <-chan struct{}) (map[imap.UID]string, error) {
	c := &rawFetch{tag: rawTag, item: item, got: make(map[imap.UID]string), done: make(chan struct{})}
	t.mu.Lock()
	if t.cmd != nil {
		t.mu.Unlock()
		return nil, errNoRawFetch
	}
	t.cmd = c
	t.mu.Unlock()
	line := fmt.Sprintf("%s UID FETCH %s (UID %s)\r\n", rawTag, uids.String(), item)
	if _, err := t.Conn.Write([]byte(line)); err != nil {
		t.mu.Lock()
		t.fail(err)
		t.mu.Unlock()
	}
	timer := time.AfterFunc(timeout, func() { conn.Close() })
	t.await(c, closed)
	timer.Stop()
	return c.got, c.err
}

// await waits until c is over. closed is closed when go-imap's reader
// is gone (nil: never); c then ends with it, since nobody reads its
// answer and a close of the connection would reach no reader (go-imap's
// reader may stop just before c is armed, and close the connection just
// after c went out).
func (t *itemTap) await(c *rawFetch, closed <-chan struct{}) {
	select {
	case <-c.done:
	case <-closed:
		t.mu.Lock()
		if t.cmd == c {
			t.fail(net.ErrClosed)
		}
		t.mu.Unlock()
		<-c.done
	}
}
