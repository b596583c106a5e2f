package imapback

// The UID FETCH of a read-ahead batch, of one range of a message
// (stream.go), or of the headers a %m snapshot hashes, sent and read beside go-imap by the itemTap (rawfetch.go). Through go-imap every body would cross two
// goroutines and several channels, and its reader takes 4 KiB from the
// socket at a time: for small messages that was most of popbridge's
// processor time per message. Here go-imap's reader goroutine, inside
// the tap's Read, copies each body literal straight into the batch
// buffer (or the range buffer) from reads as large as the socket holds,
// and hands the session its place; go-imap sees only what is not this command's (an EXPUNGE, a
// flag change, the answer to a \Seen STORE that went out first).
//
//   - A response of this command is "* n FETCH (... BODY[] {size}" (or
//     BODY[]<origin>, the offset asked for; or BODY[HEADER]) with the
//     literal last on its line, then the rest of its items and ")".
//     A literal of any other form while the command runs means the
//     tap and the upstream disagree on where responses start: the
//     connection is closed (never a message taken for gone or cut).
//   - A FETCH without a literal that names a UID (a flag change in the
//     middle of the answer, or BODY[] NIL) goes on to go-imap, and only
//     notes that the message exists, or that its body is NIL.
//   - Reads take the read deadline go-imap gives a response; when the
//     command is over, the connection is left without one, as go-imap
//     leaves it between responses. CommandTimeout bounds the whole.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// bodyBatch is the state of one batch FETCH, touched by the tap under
// its mutex while the command runs and by the sender once it is done.
type bodyBatch struct {
	room []byte // where the bodies go, one after another
	off  int    // room[:off] holds the bodies kept so far
	// origin is the offset the bodies must start at: a range's, or 0.
	origin int64
	// header makes the section BODY[HEADER], whole, instead of BODY[]
	// (the headers of a %m snapshot): its origin is 0.
	header bool
	to     bodySink // told what the answers hold

	uid    imap.UID // the current body's, once known
	size   int      // the current body's
	got    int      // octets of the current body read
	left   int      // octets of the current body still to come
	inBody bool     // past the current head line, before its closing line
	broken bool     // the connection failed or fell out of step
}

// bodySink is told, by go-imap's reader goroutine under the tap's mutex,
// what the answers to a body FETCH hold. One value per FETCH, rather
// than a closure per event kind: this runs once per message.
type bodySink interface {
	// keep is told of each body: its UID, its place in room, and
	// whether it fit there (fits false: it was read and dropped). It
	// reports whether the body stays, which moves off past it.
	keep(uid imap.UID, off, n int, fits bool) bool
	// named is told of a FETCH without a literal that names uid; bare
	// reports that it holds the section without a literal: BODY[] as
	// NIL, BODY[HEADER] as a string.
	named(uid imap.UID, bare bool)
	// arriving is told how much of a body that fits is in, as it comes.
	arriving(got, size int)
}

// respTimeout is the read deadline of each read of a batch: go-imap's
// per response.
const respTimeout = 30 * time.Second

// bigReads holds the read buffers of running batches.
var bigReads = sync.Pool{New: func() any { b := make([]byte, bigReadSize); return &b }}

const bigReadSize = 64 << 10

// fetchBodies sends "UID FETCH uids (UID BODY.PEEK[])", or with
// size > 0 "(UID BODY.PEEK[]<b.origin.size>)", or for b.header
// "(UID BODY.PEEK[HEADER])", through w (the connection
// below go-imap's writer, behind any \Seen STORE held back for it) and
// reads the answers into b until the tagged answer or a failure. It must
// not run while another raw command does; go-imap's reader goroutine
// reads the answers.
func (t *itemTap) fetchBodies(uids imap.UIDSet, size int, b *bodyBatch, w net.Conn, closed <-chan struct{}) error {
	c := &rawFetch{tag: batchTag, item: b.item(), bodies: b, done: make(chan struct{})}
	t.mu.Lock()
	if t.cmd != nil {
		t.mu.Unlock()
		return errNoRawFetch
	}
	t.cmd = c
	t.mu.Unlock()
	line := make([]byte, 0, 80)
	line = append(line, batchTag+" UID FETCH "...)
	line = append(line, uids.String()...)
	line = append(line, " (UID BODY.PEEK["...)
	line = append(line, c.item[len("BODY["):]...)
	if size > 0 {
		line = append(line, '<')
		line = strconv.AppendInt(line, b.origin, 10)
		line = append(line, '.')
		line = strconv.AppendInt(line, int64(size), 10)
		line = append(line, '>')
	}
	line = append(line, ")\r\n"...)
	if _, err := w.Write(line); err != nil {
		// go-imap's reader may be reading into b.room: end the command
		// through it, as the closed connection fails its read.
		t.Conn.Close()
	}
	t.await(c, closed)
	return c.err
}

// item is the name of the batch's section in the answers.
func (b *bodyBatch) item() string {
	if b.header {
		return "BODY[HEADER]"
	}
	return "BODY[]"
}

// readBig reads into the spare room of the big buffer while a batch
// runs, with t.mu held (and released around the read).
func (t *itemTap) readBig() {
	if t.big == nil {
		t.big = bigReads.Get().(*[]byte)
	}
	big := *t.big
	t.Conn.SetReadDeadline(time.Now().Add(respTimeout))
	if b := t.cmd.bodies; len(t.buf) == 0 && b.left > directRead && b.fits() {
		// Most of a large body still to come: read it straight into its
		// place, as much at a time as the socket holds, not through big
		// and a copy. fetchBodies returns only once this read is over
		// (a write that fails closes the connection and waits).
		t.mu.Unlock()
		n, err := t.Conn.Read(b.room[b.off+b.got : b.off+b.got+b.left])
		t.mu.Lock()
		b.took(n)
		t.readFailed(err)
		return
	}
	if len(t.buf) > len(big)/2 {
		// A line longer than half the buffer (up to maxRawLine): the
		// small reads' way.
		t.readSmall()
		return
	}
	n0 := copy(big, t.buf) // buf may be a tail of big: copy moves down
	t.buf = big[:n0]
	t.mu.Unlock()
	n, err := t.Conn.Read(big[n0:])
	t.mu.Lock()
	t.buf = big[:n0+n]
	t.readFailed(err)
}

// keepRead keeps p, read for go-imap before a command was armed, for
// judging: in the big buffer if a batch is armed (the copy most answers
// start with, which would otherwise be a new slice per message), else in
// buf.
func (t *itemTap) keepRead(p []byte) {
	if t.cmd.bodies == nil || t.big != nil || len(t.buf) > 0 || len(p) > bigReadSize/2 {
		t.buf = append(t.buf, p...)
		return
	}
	t.big = bigReads.Get().(*[]byte)
	t.buf = (*t.big)[:copy(*t.big, p)]
}

// endBig gives the big buffer back once the batch is over and what it
// held went on to go-imap (judge copies it to out), and leaves the
// connection without a read deadline, as go-imap leaves it between
// responses.
func (t *itemTap) endBig() {
	// Not even an empty slice of big may stay: appending to it would
	// write into the buffer of whichever batch takes big next.
	t.buf = append([]byte(nil), t.buf...)
	bigReads.Put(t.big)
	t.big = nil
	t.Conn.SetReadDeadline(time.Time{})
}

// literal copies the start of p, up to the rest of the current body,
// into the batch buffer (or drops it, for a body too large), and returns
// what follows.
func (b *bodyBatch) literal(p []byte) []byte {
	n := min(len(p), b.left)
	if b.fits() {
		copy(b.room[b.off+b.got:], p[:n])
	}
	b.took(n)
	return p[n:]
}

// directRead is the least of a body still to come that is read straight
// into the batch buffer: below it, the body's end and the lines after it
// come in one read.
const directRead = 4 << 10

// fits reports whether the current body fits in the rest of the room.
func (b *bodyBatch) fits() bool { return b.size <= len(b.room)-b.off }

// took counts n more octets of the current body in.
func (b *bodyBatch) took(n int) {
	b.got += n
	b.left -= n
	if n > 0 && b.fits() {
		b.to.arriving(b.got, b.size)
	}
}

// takeBody takes line if it belongs to the armed batch: the head of a
// body, or the line that closes one. A FETCH without a literal goes on
// to go-imap (false), noted if it names a UID.
func (t *itemTap) takeBody(line []byte) bool {
	b := t.cmd.bodies
	if b.inBody {
		uid, err := parseBodyTail(line)
		if err != nil || (uid != 0 && b.uid != 0 && uid != b.uid) {
			t.outOfStep(fmt.Errorf("after a body: %q: %v", clip(line), err))
			return true
		}
		if b.uid == 0 {
			b.uid = uid
		}
		fits := b.size <= len(b.room)-b.off
		if b.to.keep(b.uid, b.off, b.size, fits) {
			b.off += b.size
		}
		b.inBody, b.uid, b.size, b.got = false, 0, 0, 0
		return true
	}
	if !bytes.HasPrefix(line, []byte("* ")) {
		return false
	}
	uid, size, origin, body, err := parseBodyHead(line, b.header)
	switch {
	case errors.Is(err, errNotFetch):
		return false
	case err == nil && !body:
		return false // FETCH data, but no body: go-imap's
	case errors.Is(err, errNoLiteral):
		// Most are flag changes without a UID: no error built for them.
		if items, err := parseFetchLine(line); err == nil && items["UID"] != "" {
			if u, err := strconv.ParseUint(items["UID"], 10, 32); err == nil && u > 0 {
				b.to.named(imap.UID(u), bareSection(line, items, b.header))
			}
		}
		return false
	case err != nil:
		t.outOfStep(fmt.Errorf("%q: %v", clip(line), err))
		return true
	case origin != b.origin:
		t.outOfStep(fmt.Errorf("%q: a body at offset %d, not %d", clip(line), origin, b.origin))
		return true
	}
	b.uid, b.size, b.left, b.got, b.inBody = uid, size, size, 0, true
	return true
}

// outOfStep ends the batch on a response it cannot follow: go-imap would
// not follow it either, so the connection fails.
func (t *itemTap) outOfStep(err error) {
	err = fmt.Errorf("%w: UID FETCH %s: %v", ErrUnavailable, t.cmd.item, err)
	t.rerr = err
	t.buf = nil // nothing more for go-imap, whose next read fails
	t.fail(err)
}

var errNoLiteral = errors.New("FETCH without a literal")

// bareSection reports whether a FETCH response (line, its items parsed)
// holds the section without a literal: BODY[] (with an origin or not)
// as NIL, or with header BODY[HEADER] as a string. The items hold NIL
// and "" alike; a line that may hold "" counts as a string.
func bareSection(line []byte, items map[string]string, header bool) bool {
	if header {
		v, ok := items["BODY[HEADER]"]
		return ok && (v != "" || bytes.Contains(bytes.ToUpper(line), []byte(`BODY[HEADER] ""`)))
	}
	for name, v := range items {
		if strings.HasPrefix(name, "BODY[]") && v == "" {
			return true
		}
	}
	return false
}

// parseBodyHead parses the line that starts a FETCH response up to the
// literal at its end: "* n FETCH (UID u ... BODY[] {size}" and CRLF. body
// reports that the literal is BODY[] or BODY[]<origin> (with header:
// BODY[HEADER], and no origin); uid is 0 when the UID comes after it.
// errNoLiteral: the line ends without one.
func parseBodyHead(line []byte, header bool) (uid imap.UID, size int, origin int64, body bool, err error) {
	if uid, size, origin, ok := parseUsualHead(line, header); ok {
		return uid, size, origin, true, nil
	}
	p := fetchParser{s: line}
	if !p.lit("* ") || p.atom() == "" || !p.lit(" ") || !strings.EqualFold(p.atom(), "FETCH") || !p.lit(" (") {
		return 0, 0, 0, false, errNotFetch
	}
	if !bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("}")) {
		return 0, 0, 0, false, errNoLiteral
	}
	for first := true; ; first = false {
		if !first && !p.lit(" ") {
			return 0, 0, 0, false, fmt.Errorf("expected a space at %d", p.i)
		}
		name := strings.ToUpper(p.atom())
		if name == "" || !p.lit(" ") {
			return 0, 0, 0, false, fmt.Errorf("expected an item at %d", p.i)
		}
		if p.i < len(p.s) && p.s[p.i] == '{' {
			n, ok := literalSize(p.s[p.i:])
			if !ok {
				return 0, 0, 0, false, fmt.Errorf("a literal not at the end of the line")
			}
			if header {
				return uid, n, 0, name == "BODY[HEADER]", nil
			}
			origin, body := bodyOrigin(name)
			return uid, n, origin, body, nil
		}
		v, err := p.value(0)
		if err != nil {
			return 0, 0, 0, false, err
		}
		if name == "UID" {
			u, err := strconv.ParseUint(v, 10, 32)
			if err != nil || u == 0 {
				return 0, 0, 0, false, fmt.Errorf("UID %q", v)
			}
			uid = imap.UID(u)
		}
	}
}

// bodyOrigin reports whether an item name is BODY[] or BODY[]<origin>,
// and the origin.
func bodyOrigin(name string) (origin int64, body bool) {
	rest, ok := strings.CutPrefix(name, "BODY[]")
	if !ok || rest == "" {
		return 0, ok
	}
	b := []byte(rest)
	if b[0] != '<' || b[len(b)-1] != '>' {
		return 0, false
	}
	n, rest2, ok := cutNumber(b[1 : len(b)-1])
	if !ok || len(rest2) > 0 {
		return 0, false
	}
	return int64(n), true
}

// parseUsualHead parses the head as Dovecot and most servers write it,
// "* n FETCH (UID u BODY[] {size}" (or BODY[]<origin>; with header
// BODY[HEADER]) and CRLF, without allocating (once per message); ok
// false: parseBodyHead's general way decides.
func parseUsualHead(line []byte, header bool) (uid imap.UID, size int, origin int64, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return 0, 0, 0, false
	}
	if _, rest, ok = cutNumber(rest); !ok {
		return 0, 0, 0, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(" FETCH (UID ")); !ok {
		return 0, 0, 0, false
	}
	u, rest, ok := cutNumber(rest)
	if !ok || u == 0 || u > 1<<32-1 {
		return 0, 0, 0, false
	}
	if header {
		rest, ok = bytes.CutPrefix(rest, []byte(" BODY[HEADER]"))
	} else {
		rest, ok = bytes.CutPrefix(rest, []byte(" BODY[]"))
	}
	if !ok {
		return 0, 0, 0, false
	}
	var o uint64
	if r, ok := bytes.CutPrefix(rest, []byte("<")); ok && !header {
		if o, r, ok = cutNumber(r); !ok {
			return 0, 0, 0, false
		}
		if rest, ok = bytes.CutPrefix(r, []byte(">")); !ok {
			return 0, 0, 0, false
		}
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(" {")); !ok {
		return 0, 0, 0, false
	}
	n, rest, ok := cutNumber(rest)
	if !ok || n > 1<<31-1 || (string(rest) != "}\r\n" && string(rest) != "}\n") {
		return 0, 0, 0, false
	}
	return imap.UID(u), int(n), int64(o), true
}

// cutNumber cuts a decimal number of 1 to 10 digits off the start of b.
func cutNumber(b []byte) (n uint64, rest []byte, ok bool) {
	k := 0
	for k < len(b) && k < 11 && b[k] >= '0' && b[k] <= '9' {
		n = n*10 + uint64(b[k]-'0')
		k++
	}
	if k == 0 || k > 10 {
		return 0, b, false
	}
	return n, b[k:], true
}

// literalSize parses "{n}" and the line end, the whole of s.
func literalSize(s []byte) (int, bool) {
	s = bytes.TrimSuffix(bytes.TrimSuffix(s, []byte("\n")), []byte("\r"))
	if len(s) < 3 || s[0] != '{' || s[len(s)-1] != '}' || len(s) > 12 {
		return 0, false
	}
	n, err := strconv.Atoi(string(s[1 : len(s)-1]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// parseBodyTail parses the line after a body literal: the response's
// remaining items and ")". uid is 0 when it names none.
func parseBodyTail(line []byte) (uid imap.UID, err error) {
	p := fetchParser{s: line}
	for !p.lit(")") {
		if !p.lit(" ") {
			return 0, fmt.Errorf("expected a space at %d", p.i)
		}
		name := strings.ToUpper(p.atom())
		if name == "" || !p.lit(" ") {
			return 0, fmt.Errorf("expected an item at %d", p.i)
		}
		v, err := p.value(0)
		if err != nil {
			return 0, err
		}
		if name == "UID" {
			u, err := strconv.ParseUint(v, 10, 32)
			if err != nil || u == 0 {
				return 0, fmt.Errorf("UID %q", v)
			}
			uid = imap.UID(u)
		}
	}
	if !p.lit("\r\n") && !p.lit("\n") || p.i != len(p.s) {
		return 0, fmt.Errorf("text after the item list at %d", p.i)
	}
	return uid, nil
}
