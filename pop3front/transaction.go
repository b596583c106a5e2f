// transaction.go holds the handlers of the TRANSACTION state: STAT,
// LIST, UIDL, RETR, TOP, DELE, RSET, NOOP and LAST, and send, which streams a
// message to the client. DELE and RSET change marks in memory only; the
// maildrop changes at QUIT.

package pop3front

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
)

func (c *conn) handleStat(args []byte) error {
	if err := c.needBare(stateTransaction, "STAT", args); err != nil {
		return err
	}
	b := append(c.scratch[:0], "+OK "...)
	b = strconv.AppendInt(b, int64(len(c.msgs)-c.nDeleted), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, c.totalSize-c.delSize, 10)
	b = append(b, crlf...)
	c.bw.Write(b)
	return nil
}

// handleList answers LIST (sizes) and UIDL (unique ids), with or without a
// message number.
func (c *conn) handleList(args []byte, uidl bool) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	item := func(b []byte, i int) []byte {
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ' ')
		if uidl {
			b = append(b, c.msgs[i].UID...)
		} else {
			b = strconv.AppendInt(b, c.msgs[i].Size, 10)
		}
		return append(b, crlf...)
	}
	i := -1
	if len(args) > 0 {
		var err error
		if i, err = c.message(args); err != nil {
			return err
		}
	}
	if uidl {
		if err := c.loadUIDLs(); err != nil {
			return err
		}
	}
	if i >= 0 {
		c.bw.Write(item(append(c.scratch[:0], "+OK "...), i))
		return nil
	}
	if uidl {
		c.ok("Unique-ID listing follows")
	} else {
		c.ok(strconv.Itoa(len(c.msgs)-c.nDeleted) + " messages")
	}
	for i := range c.msgs {
		if !c.deleted[i] {
			c.bw.Write(item(c.scratch[:0], i))
		}
	}
	c.bw.WriteString(".\r\n")
	return nil
}

// loadUIDLs has an UIDLSession fill in the unique-ids it left out of
// the snapshot.
func (c *conn) loadUIDLs() error {
	us, ok := c.sess.(UIDLSession)
	if !ok {
		return nil
	}
	ctx, cancel := c.commandContext()
	defer cancel()
	if err := us.LoadUIDLs(ctx); err != nil {
		return err
	}
	c.msgs = c.sess.Messages()
	return nil
}

// message parses a message-number argument into an index into c.msgs. A
// syntax error is a protocol error; a number that names no message is an
// *Error.
func (c *conn) message(arg []byte) (int, error) {
	n, ok := parseNumber(arg)
	if !ok {
		return -1, badCommand("Invalid message number")
	}
	if n < 1 || n > len(c.msgs) {
		return -1, &Error{Text: "No such message"}
	}
	if c.deleted[n-1] {
		return -1, &Error{Text: "Message " + strconv.Itoa(n) + " already deleted"}
	}
	return n - 1, nil
}

// parseNumber parses a non-negative decimal number of at most 9 digits
// (larger numbers name no message and no sensible line count).
func parseNumber(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int(ch-'0')
	}
	return n, true
}

func (c *conn) handleRetr(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	i, err := c.message(args)
	if err != nil {
		return err
	}
	if err := c.send(i, -1); err != nil {
		return err
	}
	c.nRetr++
	c.lastSeen = max(c.lastSeen, i+1)
	c.sess.Retrieved(i)
	return nil
}

func (c *conn) handleTop(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	msg, n, err := topArgs(args)
	if err != nil {
		return err
	}
	i, err := c.message(msg)
	if err != nil {
		return err
	}
	if err := c.send(i, n); err != nil {
		return err
	}
	c.nTop++
	return nil
}

// topArgs splits TOP's arguments into the message number, still to be
// checked, and the line count.
func topArgs(args []byte) (msg []byte, n int, err error) {
	msg, lines, ok := bytes.Cut(args, []byte{' '})
	if !ok {
		return nil, 0, badCommand("TOP needs a message number and a line count")
	}
	n, ok = parseNumber(lines)
	if !ok {
		// A line count too large for parseNumber is as good as "all".
		if len(lines) == 0 || bytes.IndexFunc(lines, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return nil, 0, badCommand("Invalid line count")
		}
		n = int(^uint32(0) >> 1)
	}
	return msg, n, nil
}

func (c *conn) handleDele(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	i, err := c.message(args)
	if err != nil {
		return err
	}
	if c.sess.Expunged(i) {
		return errGone(i)
	}
	c.deleted[i] = true
	c.nDeleted++
	c.delSize += c.msgs[i].Size
	c.nDele++
	c.ok("Message " + strconv.Itoa(i+1) + " deleted")
	return nil
}

func (c *conn) handleRset(args []byte) error {
	if err := c.needBare(stateTransaction, "RSET", args); err != nil {
		return err
	}
	clear(c.deleted)
	c.nDeleted, c.delSize = 0, 0
	// As Dovecot does; it also removes \Seen upstream at once, which
	// would change the maildrop outside QUIT, so that part is left out.
	c.lastSeen = 0
	c.ok(strconv.Itoa(len(c.msgs)) + " messages")
	return nil
}

func (c *conn) handleNoop(args []byte) error {
	if err := c.needBare(stateTransaction, "NOOP", args); err != nil {
		return err
	}
	ctx, cancel := c.commandContext()
	defer cancel()
	if err := c.sess.Noop(ctx); err != nil {
		return err
	}
	c.ok("")
	return nil
}

// handleLast answers LAST (RFC 1460, dropped by RFC 1725 but still sent
// by the oldest clients) as Dovecot's POP3 server does: the highest
// message number that RETR sent in this session, or that was seen before
// it; RSET sets it to 0; TOP and DELE leave it.
func (c *conn) handleLast(args []byte) error {
	if err := c.needBare(stateTransaction, "LAST", args); err != nil {
		return err
	}
	c.ok(strconv.Itoa(c.lastSeen))
	return nil
}

// errGone answers a command on a message another client removed.
func errGone(i int) error {
	return &Error{Text: "Message " + strconv.Itoa(i+1) + " was removed by another client"}
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// send streams message i as a multi-line response: all of it when
// lines < 0, else the header and that many body lines. It returns nil
// when the message went out in full. If the message cannot be read in
// full, the connection is closed without the terminating line
// (errTruncated): the client must not take a truncated message for a
// whole one. An error before the first line of the answer is answered
// -ERR and the session goes on.
func (c *conn) send(i, lines int) error {
	if c.sess.Expunged(i) {
		return errGone(i)
	}
	rc, err := c.sess.Retrieve(c.ctx, i, lines)
	if errors.Is(err, ErrNoMessage) {
		return errGone(i)
	}
	if err != nil {
		return err
	}
	defer rc.Close()

	if lines < 0 {
		c.growWriteBuffer(c.msgs[i].Size)
		b := strconv.AppendInt(append(c.scratch[:0], "+OK "...), c.msgs[i].Size, 10)
		c.bw.Write(append(b, " octets\r\n"...))
	} else {
		c.ok("Top of message follows")
	}
	octets := &c.retrOctets
	if lines >= 0 {
		octets = &c.topOctets
	}
	dw := newDotWriter(c.bw)
	var rerr error
	if wt, ok := rc.(io.WriterTo); ok && lines < 0 {
		// The backend writes from its own buffers: no copy through a
		// buffer of ours.
		c.cw = clientWriter{dw: dw}
		_, rerr = wt.WriteTo(&c.cw)
		*octets += c.cw.n
		if c.cw.err != nil {
			return c.writeFailed(c.cw.err) // the client is gone
		}
	} else {
		var werr error
		if rerr, werr = c.copyMessage(dw, rc, lines, octets); werr != nil {
			return c.writeFailed(werr) // the client is gone
		}
	}
	if rerr != nil {
		c.log.Error("message transfer failed, closing connection without the terminating line",
			"user", c.authUser, "msg", i+1, "err", rerr)
		// Send what is buffered so far but never the final ".".
		c.bw.Flush()
		return abort(errTruncated)
	}
	if err := dw.Close(); err != nil {
		return c.writeFailed(err)
	}
	return nil
}

// copyMessage copies a message (or, with lines >= 0, its top) from rc to
// dw, adding what it copied to *octets. rerr is a failure to read the
// message, werr one to write it.
func (c *conn) copyMessage(dw *dotWriter, rc io.Reader, lines int, octets *int64) (rerr, werr error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	top := topCutter{n: lines}
	for {
		n, err := rc.Read(buf)
		p := buf[:n]
		if lines >= 0 {
			p = top.cut(p)
		}
		if _, werr := dw.Write(p); werr != nil {
			return nil, werr
		}
		*octets += int64(len(p))
		if err == io.EOF || top.done {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// clientWriter is where a backend's io.WriterTo writes a message: it
// keeps the client's write error apart from the backend's read error.
type clientWriter struct {
	dw  *dotWriter
	n   int64
	err error
}

func (w *clientWriter) Write(p []byte) (int, error) {
	n, err := w.dw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}
