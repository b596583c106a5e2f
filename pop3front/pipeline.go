// pipeline.go holds what a pipelining client (RFC 2449 PIPELINING) already
// sent: the RETR and TOP commands behind the one that runs, which a
// PipelinedSession may fetch together. Only the connection's goroutine
// reads them, from within Retrieve.

package pop3front

import "bytes"

var (
	kwRetr = []byte("RETR")
	kwTop  = []byte("TOP")
	kwQuit = []byte("QUIT")
)

// upcoming yields, in order, the message index and line count (-1 for
// RETR) of each RETR and TOP among the whole command lines the client
// sent after the current one: those the line reader holds, then, when
// the session asks for more and the client pipelines at all, those still
// in the socket's buffer. It
// neither blocks nor consumes: the lines run as commands later. A
// command that will fail as it stands (no such message, one marked
// deleted, bad syntax, a line too long) is left out, and nothing after
// QUIT is yielded, since it never runs. At most maxUpcoming octets are
// looked at.
func (c *conn) upcoming(yield func(i, lines int) bool) {
	buf, _ := c.br.Peek(c.br.Buffered())
	last := bytes.LastIndexByte(buf, '\n') + 1
	c.pipelined = c.pipelined || len(buf) > 0
	if !c.yieldRequests(buf[:last], yield) || !c.pipelined {
		// A client that waits for each answer has nothing in the
		// socket: no system call to find that out each time.
		return
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	more := (*bp)[:maxUpcoming]
	// The socket's input continues the reader's partial last line.
	n := copy(more, buf[last:])
	n += peekSocket(c.nc, more[n:])
	c.yieldRequests(more[:n], yield)
}

// maxUpcoming bounds the input upcoming looks at past the line reader's:
// about 80 pipelined RETR commands.
const maxUpcoming = 1024

// yieldRequests yields the requests of the whole lines in buf, as
// upcoming says; false means stop: yield said so, or QUIT came.
func (c *conn) yieldRequests(buf []byte, yield func(i, lines int) bool) bool {
	for {
		end := bytes.IndexByte(buf, '\n')
		if end < 0 {
			return true // a partial line: its sender may wait for our answers
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
			return false
		default:
			continue
		}
		k, ok := parseNumber(msg)
		if !ok || k < 1 || k > len(c.msgs) || c.deleted[k-1] {
			continue
		}
		if !yield(k-1, lines) {
			return false
		}
	}
}
