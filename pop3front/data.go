// data.go holds the multi-line response writer: dot-stuffing, CRLF line
// ends and the terminating line, and the cut of a message for TOP.

package pop3front

import (
	"bufio"
	"bytes"
)

// dotWriter writes the data of a multi-line response (RFC 1939 section 3):
// it byte-stuffs lines that begin with ".", sends every line end as CRLF
// (a message stored with bare LFs still needs CRLF on the wire), and Close
// ends the response with ".\r\n", first finishing an unterminated last line
// with CRLF. A bare CR is data, also at the very end: "x\r" is sent as
// "x\r\r\n", as Dovecot's POP3 server does, so that no octet is lost.
// It holds two bits of state, so a message of any size streams through.
type dotWriter struct {
	w   *bufio.Writer
	mid bool // inside a line: a "." here is data, not a line start
	cr  bool // the last byte written was CR
}

func newDotWriter(w *bufio.Writer) *dotWriter {
	return &dotWriter{w: w}
}

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n > 0 {
		if !d.mid && p[0] == '.' {
			d.w.WriteByte('.')
		}
		// Runs of ordinary lines go to the buffer in one piece; only a
		// bare LF or a line starting with "." breaks a run.
		start := 0 // p[start:] is not written yet
		for pos := 0; ; {
			i := bytes.IndexByte(p[pos:], '\n')
			if i < 0 {
				break
			}
			i += pos
			if (i == 0 && !d.cr) || (i > 0 && p[i-1] != '\r') {
				d.w.Write(p[start:i])
				d.w.Write(crlf)
				start = i + 1
			}
			pos = i + 1
			if pos < n && p[pos] == '.' {
				d.w.Write(p[start:pos])
				d.w.WriteByte('.')
				start = pos
			}
		}
		d.w.Write(p[start:])
		d.mid, d.cr = p[n-1] != '\n', p[n-1] == '\r'
	}
	// bufio.Writer errors are sticky: a failed write above shows up here.
	if _, err := d.w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// Close terminates the multi-line response. It does not flush.
func (d *dotWriter) Close() error {
	if d.mid {
		d.w.Write(crlf)
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

var crlf = []byte("\r\n")

// topCutter passes the header of a message, the blank line after it, and
// then at most n body lines (the TOP command, RFC 1939 section 7). Done
// reports when the rest of the message is not needed.
type topCutter struct {
	n        int  // body lines still to pass
	inBody   bool // the blank line ending the header was seen
	lineData bool // the current header line has content
	done     bool
}

// cut returns the prefix of p to pass on.
func (t *topCutter) cut(p []byte) []byte {
	if t.done {
		return nil
	}
	pos := 0
	for !t.inBody && pos < len(p) {
		switch p[pos] {
		case '\n':
			if !t.lineData {
				t.inBody = true
			}
			t.lineData = false
		case '\r':
		default:
			t.lineData = true
		}
		pos++
	}
	if t.inBody && t.n == 0 {
		t.done = true
		return p[:pos]
	}
	for t.inBody && pos < len(p) {
		i := bytes.IndexByte(p[pos:], '\n')
		if i < 0 {
			return p
		}
		pos += i + 1
		t.n--
		if t.n == 0 {
			t.done = true
			return p[:pos]
		}
	}
	return p
}
