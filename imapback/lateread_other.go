//go:build !unix

package imapback

// readTCPLate: without the socket's descriptor, the buffer is picked as
// the read starts (lateread.go).

import "net"

func readTCPLate(c *net.TCPConn, choose func() []byte) ([]byte, int, error) {
	p := choose()
	n, err := c.Read(p)
	return p, n, err
}
