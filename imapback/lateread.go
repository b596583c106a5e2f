package imapback

// Reads whose buffer is picked when the input has come, not when the
// read starts. go-imap's reader goroutine waits for the next response in
// a read into its own 4 KiB buffer; when that response answers a FETCH
// the tap sent meanwhile (rawbatch.go), it belongs in the tap's larger
// buffer, and a read into go-imap's would take a 4 KiB message's answer
// in two system calls instead of one. On a bare TCP connection the
// reader waits for input without reading, then asks the tap where to put
// it; through TLS the buffer is picked as the read starts.

import "net"

// lateReader is a connection that can wait for input and then read it
// into the buffer choose returns at that moment. It returns that buffer
// and how much of it was read.
type lateReader interface {
	readLate(choose func() []byte) (p []byte, n int, err error)
}

// readLate reads from c into the buffer choose returns, as late as c
// allows.
func readLate(c net.Conn, choose func() []byte) ([]byte, int, error) {
	switch c := c.(type) {
	case lateReader:
		return c.readLate(choose)
	case *net.TCPConn:
		return readTCPLate(c, choose)
	}
	p := choose()
	n, err := c.Read(p)
	return p, n, err
}

func (c *boundedConn) readLate(choose func() []byte) ([]byte, int, error) {
	if e := c.err.Load(); e != nil {
		return choose(), 0, e
	}
	p, n, err := readLate(c.Conn, choose)
	if n > 0 {
		if k, e := c.sc.scan(p[:n]); e != nil {
			c.err.CompareAndSwap(nil, e)
			return p, k, c.err.Load()
		}
	}
	return p, n, err
}

func (c *saslConn) readLate(choose func() []byte) ([]byte, int, error) {
	return readLate(c.Conn, choose)
}

func (c cappedConn) readLate(choose func() []byte) ([]byte, int, error) {
	return readLate(c.Conn, choose)
}

func (c *replayConn) readLate(choose func() []byte) ([]byte, int, error) {
	if len(c.pending) > 0 {
		p := choose()
		n, err := c.Read(p)
		return p, n, err
	}
	return readLate(c.Conn, choose)
}
