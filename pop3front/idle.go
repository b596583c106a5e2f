// idle.go holds what a connection gives back while it waits for a
// command, and takes again when one arrives: its read and write buffers.
// An idle session then holds neither, which is most of what it would hold
// (ten thousand idle sessions, 170 MiB of them). Only the connection's
// own goroutine takes and returns its buffers.

package pop3front

import (
	"bufio"
	"io"
	"net"
	"sync"
)

// The buffers of connections waiting for a command.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxAuthLine) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}
	// bigWriters: the write buffers of connections sending a large
	// message (growWriteBuffer).
	bigWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bigWriteBufferSize) }}
)

// wakeReader is what a connection's line reader reads: first the octets
// whose arrival ended an idle wait (read into first, the connection then
// holding no read buffer), then the connection itself. A command line
// fits in first, so the line reader that takes over finds it whole
// without a further system call.
type wakeReader struct {
	nc    net.Conn
	first [48]byte
	r, w  uint8 // first[r:w] is still to be read
}

func (in *wakeReader) Read(p []byte) (int, error) {
	if in.r < in.w {
		n := copy(p, in.first[in.r:in.w])
		in.r += uint8(n)
		if int(in.r) == len(in.first) {
			// The client may have sent more than first holds: what the
			// socket has of it comes along, as in one read into the
			// whole buffer. A session that ends with input unread (after
			// QUIT, a refused PROXY header) would be reset, not closed.
			n += readPending(in.nc, p[n:])
		}
		return n, nil
	}
	return in.nc.Read(p)
}

// idle returns the write buffer, flushed, while c waits for a command,
// and the read buffer if nothing is left in it (a partial line stays with
// its reader) and the connection is a bare TCP one. Through a wrapper
// (TLS, a PROXY protocol reader) readPending cannot tell what else the
// client sent: a burst of pipelined commands would be read first's size
// at a time, and answered in as many writes.
func (c *conn) idle() {
	if c.bw.Size() > writeBufferSize {
		bigWriters.Put(c.bw)
	} else {
		writers.Put(c.bw)
	}
	c.bw = nil
	if c.br.Buffered() == 0 && bareTCP(c.nc) {
		readers.Put(c.br)
		c.br = nil
	}
}

// busy takes the buffers that c does not hold, for the command that
// arrived (or, from setConn, for the greeting).
func (c *conn) busy() {
	if c.br == nil {
		c.br = readers.Get().(*bufio.Reader)
		c.br.Reset(&c.in)
	}
	if c.bw == nil {
		c.bw = writers.Get().(*bufio.Writer)
		c.bw.Reset(&c.sent)
	}
}

// awaitInput waits, without a read buffer, until the client sends
// something, under the read deadline already set, and then takes the
// buffers.
func (c *conn) awaitInput() error {
	n, err := c.nc.Read(c.in.first[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress // no conn of the net package does this
		}
		return err
	}
	// An error with data comes again from the next read.
	c.in.r, c.in.w = 0, uint8(n)
	c.busy()
	return nil
}
