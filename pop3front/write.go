// write.go holds how a connection writes to the client: the deadline
// that holds a client to the write timeout, and the larger buffer a large
// message goes out through. Only the connection's own goroutine writes.

package pop3front

import (
	"bufio"
	"errors"
	"net"
	"os"
	"time"
)

// growWriteBuffer gives c a write buffer of bigWriteBufferSize for a
// message of size octets, larger than the usual buffer: in writes of 16
// KiB, a 2 MiB message costs 128 system calls. The buffer goes back when
// c waits for its next command. Only an empty buffer is swapped.
func (c *conn) growWriteBuffer(size int64) {
	if size <= writeBufferSize || c.bw.Size() > writeBufferSize || c.bw.Buffered() > 0 {
		return
	}
	writers.Put(c.bw)
	c.bw = bigWriters.Get().(*bufio.Writer)
	c.bw.Reset(&c.sent)
}

// deadlineWriter holds a client to the write timeout: within it, the
// client must take a usual buffer's worth (writeBufferSize), however
// large the write, so that a client that stops reading is cut off and one
// on a slow link is not, whatever buffer a large message goes out
// through. On a plain connection a write goes out whole and its deadline
// is renewed while it makes that progress; TLS cannot resume a record cut
// by a deadline, so there each writeBufferSize gets a deadline of its own.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	tls     bool
}

func (w deadlineWriter) Write(p []byte) (written int, err error) {
	for len(p) > 0 {
		q := p
		if w.tls {
			q = p[:min(len(p), writeBufferSize)]
		}
		w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
		n, err := w.nc.Write(q)
		written += n
		p = p[n:]
		if err != nil && (w.tls || n < writeBufferSize || !errors.Is(err, os.ErrDeadlineExceeded)) {
			return written, err
		}
	}
	return written, nil
}
