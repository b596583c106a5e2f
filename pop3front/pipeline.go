// pipeline.go holds what a pipelining client (RFC 2449 PIPELINING) already
// sent: the RETR and TOP commands buffered behind the one that runs, which
// a PipelinedSession may fetch together. Only the connection's goroutine
// reads them, from within Retrieve.

package pop3front

import "bytes"

var (
	kwRetr = []byte("RETR")
	kwTop  = []byte("TOP")
	kwQuit = []byte("QUIT")
)

// upcoming yields, in order, the message index and line count (-1 for
// RETR) of each RETR and TOP among the whole command lines already
// buffered after the current one. It neither blocks nor consumes: the
// lines run as commands later. A command that will fail as it stands
// (no such message, one marked deleted, bad syntax, a line too long) is
// left out, and nothing after QUIT is yielded, since it never runs. The
// buffer bounds what is looked at (maxAuthLine octets).
func (c *conn) upcoming(yield func(i, lines int) bool) {
	n := c.br.Buffered()
	if n == 0 {
		return
	}
	buf, _ := c.br.Peek(n)
	for {
		end := bytes.IndexByte(buf, '\n')
		if end < 0 {
			return // a partial line: its sender may wait for our answers
		}
		line := bytes.TrimSuffix(buf[:end], []byte{'\r'})
		buf = buf[end+1:]
		if len(line)+2 > maxLine {
			continue
		}
		kw, args, _ := bytes.Cut(line, []byte{' '})
		msg, lines := args, -1
		switch {
		case bytes.EqualFold(kw, kwRetr):
		case bytes.EqualFold(kw, kwTop):
			var err error
			if msg, lines, err = topArgs(args); err != nil {
				continue
			}
		case bytes.EqualFold(kw, kwQuit):
			return
		default:
			continue
		}
		k, ok := parseNumber(msg)
		if !ok || k < 1 || k > len(c.msgs) || c.deleted[k-1] {
			continue
		}
		if !yield(k-1, lines) {
			return
		}
	}
}
