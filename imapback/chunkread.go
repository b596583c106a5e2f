package imapback

// Reading the answer to the FETCH of one range of a message (a chunk of
// a RETR, read beside go-imap; or TOP's header and lines, through it)
// into the range buffer, on the goroutine that sent the FETCH: which
// answer holds the section, whether the server answered the range as
// asked, and what a literal cut short leaves of the connection.

import (
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// readChunk reads the answers of cmd, a FETCH of one message (go-imap
// passes it only FETCH data that names its UID), with read until one
// holds the section asked for, and ends cmd. spoiled reports an answer
// without the section: a flag update, after which go-imap drops the
// answer.
func (s *Session) readChunk(cmd *imapclient.FetchCommand, f *rangeFetch,
	read func(*imapclient.FetchMessageData) (n int, found, section bool, err error)) (n int, found, spoiled bool, err error) {
	for !found && err == nil {
		m := cmd.Next()
		if m == nil {
			break
		}
		var section bool
		n, found, section, err = read(m)
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

// readRange runs the UID FETCH of chunk f of message uid beside go-imap
// (rawbatch.go): the tap copies the body straight into f.buf, publishing
// each piece as it comes. A body longer than f.buf fails the chunk (the
// server did not answer the range as asked). found reports a body, or,
// past the start, NIL for the end of the message. A connection that broke
// or fell out of step is closed (f.broken), its error errLiteral.
func (s *Session) readRange(uid imap.UID, f *rangeFetch) (n int, found bool, err error) {
	a := &rangeAnswer{uid: uid, f: f}
	b := &a.batch
	*b = bodyBatch{room: f.buf, origin: f.offset, to: a}
	err = s.tap.fetchBodies(imap.UIDSetNum(uid), len(f.buf), b, s.held, s.c.Closed())
	if b.broken {
		// Whatever was read of the answer, the connection is out of step
		// or failed: close it, so that go-imap fails too.
		s.nc.Close()
		f.broken = true
		return 0, false, fmt.Errorf("%w: %v", errLiteral, err)
	}
	if errors.Is(err, errRawRefused) {
		// As go-imap gives a NO: an answer, not a broken connection.
		err = &imap.Error{Type: imap.StatusResponseTypeNo, Text: err.Error()}
	}
	if err == nil {
		err = a.bad
	}
	return a.n, a.found, err
}

// rangeAnswer is what the answer to a chunk's FETCH held (a bodySink).
type rangeAnswer struct {
	uid   imap.UID
	f     *rangeFetch
	n     int   // the body's octets
	found bool  // a body, or NIL past the start
	bad   error // a body longer than asked for
	batch bodyBatch
}

func (a *rangeAnswer) keep(uid imap.UID, _, size int, fits bool) bool {
	if uid != a.uid || a.found {
		return false // not asked for, or sent twice
	}
	a.found = true
	if !fits {
		a.bad = fmt.Errorf("server answered BODY[]<%d.%d> with %d octets", a.f.offset, len(a.f.buf), size)
		return false
	}
	a.n = size
	return true
}

func (a *rangeAnswer) named(uid imap.UID, nilBody bool) {
	if uid == a.uid && nilBody && a.f.offset > 0 {
		a.found = true
	}
}

func (a *rangeAnswer) arriving(got, size int) {
	if k := min(got, size-1); k > 0 {
		a.f.grew(k) // the last octet waits for the OK
	}
}
