package imapback

// The header hash behind %m UIDLs: the SHA-1 that Dovecot's pop3_migration
// plugin computes of a message's header to match the messages of an old
// POP3 server with those of a new IMAP one. It is built to come out the
// same whether the header was read by POP3 TOP or IMAP BODY[HEADER], from
// servers that each alter headers a little.

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"slices"
	"sync"
)

// hashSkipHeaders are left out of the hash: servers add, drop or rewrite
// them between POP3 and IMAP, or between one store and another.
var hashSkipHeaders = map[string]bool{
	"content-length": true, "return-path": true, "status": true,
	"x-imap": true, "x-imapbase": true, "x-keywords": true,
	"x-message-flag": true, "x-status": true, "x-uid": true,
	"x-uidl": true, "x-yahoo-newman-property": true,
}

// maxHeaderLine bounds one header line read for the hash.
const maxHeaderLine = 64 << 10

// HeaderHash returns the hash, as 40 lower-case hex digits, of the header
// that r reads (a message's header, or the whole message: reading stops at
// the blank line that ends the header).
//
// What is hashed, as Dovecot's pop3_migration does it: each header line
// without its line end, followed by LF, and the blank line that ends the
// header. Left out are the headers in hashSkipHeaders, lines that are not
// "name: value" nor a continuation, continuation lines of only blanks,
// headers whose name has a control, space or 8-bit byte, a continuation
// line after one left out, and everything from a line of only CRs on
// (servers disagree on whether it ends the header). Then spaces and tabs are removed, and each run of control
// characters, 8-bit bytes and '?' becomes one '?'.
func HeaderHash(r io.Reader) (string, error) {
	hh := headerHashers.Get().(*headerHasher)
	defer headerHashers.Put(hh)
	return hh.hash(r)
}

// headerHasher holds what one HeaderHash needs: a %m snapshot hashes
// every header of the mailbox, and fresh buffers for each (a reader, a
// hash state, the lines, the normalised bytes) were most of its garbage.
type headerHasher struct {
	br   *bufio.Reader
	rd   bytes.Reader // what hashBytes reads
	h    hash.Hash
	n    hashNormaliser
	line []byte // a line longer than br's buffer, put together
	sum  [sha1.Size]byte
	// dropping: the current line is left out; a continuation line is
	// left out when the line before it was.
	dropping bool
}

var headerHashers = sync.Pool{New: func() any {
	h := sha1.New()
	return &headerHasher{br: bufio.NewReaderSize(nil, 4096), h: h, n: hashNormaliser{h: h}}
}}

// hashBytes is HeaderHash of a header in memory, its lines cut where
// they are: no line can be longer than maxHeaderLine there, so the
// lines are those readLine would give.
func (hh *headerHasher) hashBytes(p []byte) string {
	if len(p) > maxHeaderLine {
		hh.rd.Reset(p)
		h, _ := hh.hash(&hh.rd) // a bytes.Reader fails with nothing but EOF
		return h
	}
	hh.start()
	for {
		line, rest, eol := bytes.Cut(p, newline)
		if eol {
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if hh.feed(line, eol) || !eol {
			break
		}
		p = rest
	}
	return hh.hex()
}

func (hh *headerHasher) hash(r io.Reader) (string, error) {
	hh.br.Reset(r)
	defer hh.br.Reset(nil)
	hh.start()
	for {
		line, eol, err := hh.readLine()
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		if hh.feed(line, eol) || err != nil {
			break // the end of the header, or a header without one
		}
	}
	return hh.hex(), nil
}

// start readies hh for a header.
func (hh *headerHasher) start() {
	hh.h.Reset()
	hh.n.question = false
	hh.n.out = hh.n.out[:0]
	hh.dropping = false
}

// feed hashes one line of the header, without its line end (eol: it had
// one), and reports whether the header ended with it.
func (hh *headerHasher) feed(line []byte, eol bool) (end bool) {
	if len(line) == 0 {
		if eol {
			hh.n.write(newline) // the end of the header
		}
		return true
	}
	switch c := line[0]; {
	case c == '\r' && len(bytes.TrimLeft(line, "\r")) == 0:
		return true // a line of CRs
	case c == ' ' || c == '\t':
		hh.dropping = hh.dropping || len(bytes.Trim(line, " \t")) == 0
	default:
		hh.dropping = !hashedField(line)
	}
	if !hh.dropping {
		hh.n.write(line)
		if eol {
			hh.n.write(newline)
		}
	}
	return false
}

var newline = []byte("\n")

// hashedField reports whether a line that starts a header field is
// hashed: "name:" with a valid name (blanks before the colon aside) that
// is not one of hashSkipHeaders.
func hashedField(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return false
	}
	name := line[:colon]
	for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
		name = name[:len(name)-1]
	}
	return len(name) <= maxHeaderName && validHeaderName(name) && !skipHeader(name)
}

// hex returns the hash as 40 lower-case hex digits.
func (hh *headerHasher) hex() string {
	hh.n.flush()
	var digits [2 * sha1.Size]byte
	hex.Encode(digits[:], hh.h.Sum(hh.sum[:0]))
	return string(digits[:])
}

// skipHeader reports whether the header name is one of hashSkipHeaders,
// in any case.
func skipHeader(name []byte) bool {
	var lower [maxSkipName]byte
	if len(name) == 0 || len(name) > len(lower) || skipShapes[len(name)]&letterBit(name[0]) == 0 {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return hashSkipHeaders[string(lower[:len(name)])]
}

// maxSkipName is the longest name in hashSkipHeaders.
const maxSkipName = len("x-yahoo-newman-property")

// skipShapes holds, by length, the first letters of the names in
// hashSkipHeaders (as letterBit's bits): they rule out most names
// before a lookup.
var skipShapes = func() (t [maxSkipName + 1]uint32) {
	for name := range hashSkipHeaders {
		t[len(name)] |= letterBit(name[0])
	}
	return t
}()

// letterBit is the bit of letter c, in any case, or 0 for no letter.
func letterBit(c byte) uint32 {
	c |= 'a' - 'A'
	if c < 'a' || c > 'z' {
		return 0
	}
	return 1 << (c - 'a')
}

// maxHeaderName: Dovecot takes a longer name for no header at all.
const maxHeaderName = 1000

// readLine returns the next line without its LF or CRLF, and whether it
// had one; the line is valid until the next read. Of a line longer than
// maxHeaderLine only that much is kept: such a line is no header a mail
// server wrote, and the hash must not cost unbounded memory.
func (hh *headerHasher) readLine() (line []byte, eol bool, err error) {
	frag, err := hh.br.ReadSlice('\n')
	line = frag
	if err == bufio.ErrBufferFull {
		hh.line = append(hh.line[:0], frag...)
		for err == bufio.ErrBufferFull {
			frag, err = hh.br.ReadSlice('\n')
			if room := maxHeaderLine - len(hh.line); room > 0 {
				hh.line = append(hh.line, frag[:min(len(frag), room)]...)
			}
		}
		line = hh.line
	}
	eol = len(frag) > 0 && frag[len(frag)-1] == '\n'
	line = bytes.TrimSuffix(line, newline)
	if eol {
		line = bytes.TrimSuffix(line, []byte("\r"))
	}
	return line, eol, err
}

func validHeaderName(name []byte) bool {
	for _, c := range name {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// hashNormaliser feeds a hash what Dovecot's header hash (its version 4)
// feeds it: no spaces or tabs, and one '?' for each run of control
// characters, 8-bit bytes and '?' (a blank or LF ends a run). It gathers
// what it feeds in out, up to hashChunk and a line, so that the hash
// takes a header of small lines in one or a few writes.
type hashNormaliser struct {
	h        hash.Hash
	question bool   // the last byte written was a '?' of a run
	out      []byte // normalised, not yet fed to h
}

const hashChunk = 4 << 10

// flush feeds h what out holds.
func (n *hashNormaliser) flush() {
	n.h.Write(n.out)
	n.out = n.out[:0]
}

// What hashNormaliser does with each byte: a table, as it looks at every
// byte of every header of a %m snapshot.
const (
	hashKeep     = iota // written as it is
	hashBlank           // left out; ends a run of '?'
	hashQuestion        // one '?' for a run
)

var hashClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == ' ' || c == '\t':
			t[c] = hashBlank
		case c == '\n':
			t[c] = hashKeep
		case c < 0x20 || c >= 0x7f || c == '?':
			t[c] = hashQuestion
		}
	}
	return t
}()

func (n *hashNormaliser) write(p []byte) {
	if len(n.out) >= hashChunk {
		n.flush()
	}
	j := len(n.out)
	if cap(n.out)-j < len(p) {
		n.out = slices.Grow(n.out, len(p))
	}
	out := n.out[:j+len(p)]
	question := n.question
	for _, c := range p {
		switch hashClass[c] {
		case hashKeep:
			out[j] = c
			j++
			question = false
		case hashBlank:
			question = false
		default:
			if !question {
				out[j] = '?'
				j++
			}
			question = true
		}
	}
	n.question = question
	n.out = out[:j]
}
