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
	"strings"
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
	h := sha1.New()
	n := &hashNormaliser{h: h}
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); headerReaders.Put(br) }()
	// dropping: the current line is left out; a continuation line is
	// left out when the line before it was.
	dropping := false
	for {
		line, eol, err := readHeaderLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		if len(line) == 0 {
			if eol {
				n.write([]byte("\n")) // the end of the header
			}
			break
		}
		switch {
		case len(bytes.Trim(line, "\r")) == 0:
			return hex.EncodeToString(h.Sum(nil)), nil // a line of CRs
		case line[0] == ' ' || line[0] == '\t':
			dropping = dropping || len(bytes.Trim(line, " \t")) == 0
		default:
			colon := bytes.IndexByte(line, ':')
			name := bytes.TrimRight(line[:max(colon, 0)], " \t")
			dropping = colon < 0 || len(name) > maxHeaderName || !validHeaderName(name) ||
				hashSkipHeaders[strings.ToLower(string(name))]
		}
		if !dropping {
			n.write(line)
			if eol {
				n.write([]byte("\n"))
			}
		}
		if err != nil {
			break // a header without its blank line
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// headerReaders keeps HeaderHash's buffers: a %m snapshot hashes every
// header of the mailbox, and a buffer each was most of its garbage.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// maxHeaderName: Dovecot takes a longer name for no header at all.
const maxHeaderName = 1000

// readHeaderLine returns the next line without its LF or CRLF, and
// whether it had one. Of a line longer than maxHeaderLine only that much
// is kept: such a line is no header a mail server wrote, and the hash
// must not cost unbounded memory.
func readHeaderLine(br *bufio.Reader) (line []byte, eol bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if room := maxHeaderLine - len(line); room > 0 {
			line = append(line, frag[:min(len(frag), room)]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		eol = len(frag) > 0 && frag[len(frag)-1] == '\n'
		line = bytes.TrimSuffix(line, []byte("\n"))
		if eol {
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		return line, eol, err
	}
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
// characters, 8-bit bytes and '?' (a blank or LF ends a run).
type hashNormaliser struct {
	h        hash.Hash
	question bool // the last byte written was a '?' of a run
	out      []byte
}

func (n *hashNormaliser) write(p []byte) {
	n.out = n.out[:0]
	for _, c := range p {
		switch {
		case c == ' ' || c == '\t':
			n.question = false
		case c == '\n':
			n.out = append(n.out, c)
			n.question = false
		case c < 0x20 || c >= 0x7f || c == '?':
			if !n.question {
				n.out = append(n.out, '?')
			}
			n.question = true
		default:
			n.out = append(n.out, c)
			n.question = false
		}
	}
	n.h.Write(n.out)
}
