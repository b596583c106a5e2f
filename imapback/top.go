package imapback

// The start of a TOP of a message larger than one range: the header and
// about as much of the text as the lines asked for, in one FETCH
// (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.G>), instead of a first range of
// the whole message that could be all header or mostly body. A smaller
// message is still fetched whole in one range: its end, checked against
// its listed size before the client sees an octet, is what tells a
// server's stand-in for a message expunged meanwhile (Courier's) from the
// message. For a larger one the FETCH asks for RFC822.SIZE too, which
// serves that check: a size other than the listed one is vetted with the
// upstream (vetSize) before the client sees an octet. The header and the text together are the message as
// BODY[] has it (RFC 3501 section 6.4.5: HEADER is the header with its
// blank line, TEXT what follows), so the reader goes on, if the client
// needs more lines than came, with BODY.PEEK[]<offset.size> ranges from
// where the text stopped, as for RETR.
//
// Both sections are read into the chunk's buffer, the header first. A
// server that sends the text first (none known does), or a header too
// large for the buffer, gets the old way: the FETCH is repeated as a
// plain first range.

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// topLineGuess is the octets per body line a TOP asks for: most mail
// keeps lines under 78 characters (RFC 5322 section 2.1.1).
const topLineGuess = 80

// topText returns how much of the text a TOP of lines body lines asks
// for with the header: 0 for none.
func (r *bodyReader) topText() int {
	return min(r.lines, len(r.bufMem())/2/topLineGuess) * topLineGuess
}

func (r *bodyReader) bufMem() []byte { return *r.bufp }

// errNoHead: the answer does not fit the header-first reading; the
// caller fetches a plain range instead.
var errNoHead = errors.New("header and text cannot be read in order")

// fetchHead runs the FETCH of a TOP's header and first text into f.mem,
// and sets f.buf to what was asked: the header's length plus the text
// asked for, so that a shorter answer ends the message as a short range
// does.
func (r *bodyReader) fetchHead(uid imap.UID, f *rangeFetch) (n int, found, spoiled bool, err error) {
	s := r.s
	text := r.topText()
	sections := []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}
	if text > 0 {
		sections = append(sections, &imap.FetchItemBodySection{
			Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: int64(text)},
		})
	}
	r.headSize = -1
	start := time.Now()
	defer func() { s.observe("UID FETCH", start, err) }()
	cmd := s.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: sections})
	return s.readChunk(cmd, f, func(m *imapclient.FetchMessageData) (int, bool, bool, error) {
		return readHead(m, f, text, &r.headSize)
	})
}

// readHead reads the header and text sections of one FETCH response into
// f.mem, publishing the octets as they come, and sets f.buf and, if the
// response has it, *size.
func readHead(m *imapclient.FetchMessageData, f *rangeFetch, text int, size *int64) (n int, found, section bool, err error) {
	header := -1 // the header's length, once read
	for item := m.Next(); item != nil; item = m.Next() {
		if sz, ok := item.(imapclient.FetchItemDataRFC822Size); ok {
			*size = sz.Size
			continue
		}
		body, ok := item.(imapclient.FetchItemDataBodySection)
		if !ok {
			continue
		}
		section = true
		isHeader := body.Section.Specifier == imap.PartSpecifierHeader
		if !isHeader && header < 0 {
			return 0, false, section, fmt.Errorf("%w: text section first", errNoHead)
		}
		if body.Literal == nil {
			if isHeader {
				return 0, false, section, nil // no message: expunged
			}
			continue // no text
		}
		lit := body.Literal.Size()
		if isHeader {
			if lit > int64(len(f.mem)-text) {
				return 0, false, section, fmt.Errorf("%w: header of %d octets", errNoHead, lit)
			}
		} else if p := body.Section.Partial; (p != nil && p.Offset != 0) || lit > int64(text) {
			return 0, true, section, fmt.Errorf("server answered BODY[TEXT]<0.%d> with %d octets", text, lit)
		}
		found = true
		end := n + int(lit)
		for n < end {
			k, rerr := body.Literal.Read(f.mem[n:end])
			n += k
			if k > 0 && n > 1 {
				f.grew(n - 1) // the last octet waits for the OK
			}
			if rerr != nil && n < end {
				if rerr == io.EOF {
					rerr = io.ErrUnexpectedEOF
				}
				return n, found, section, fmt.Errorf("%w: %v", errLiteral, rerr)
			}
		}
		if isHeader {
			header = n
			f.buf = f.mem[:header+text]
		}
	}
	return n, found, section, nil
}
