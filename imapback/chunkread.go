package imapback

// Reading the answer to the FETCH of one range of a message (a chunk of
// a RETR, or TOP's header and lines) into the range buffer, on the
// goroutine that sent the FETCH: which answer holds the section, whether
// the server answered the range as asked, and what a literal cut short
// leaves of the connection.

import (
	"errors"
	"fmt"
	"io"

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
