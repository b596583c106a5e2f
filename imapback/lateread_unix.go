//go:build unix

package imapback

// readTCPLate: the bare TCP connection of lateread.go.

import (
	"io"
	"net"
	"os"
	"syscall"
)

// readTCPLate waits, under c's read deadline, until c has input, and
// reads it into the buffer choose returns then.
func readTCPLate(c *net.TCPConn, choose func() []byte) ([]byte, int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		p := choose()
		n, err := c.Read(p)
		return p, n, err
	}
	var p []byte
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		p = choose()
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				break
			}
		}
		return rerr != syscall.EAGAIN
	})
	n = max(n, 0)
	switch {
	case err != nil: // closed, or past the deadline
		if oe, ok := err.(*net.OpError); ok {
			oe.Op = "read"
		}
		return p, 0, err
	case rerr != nil:
		return p, 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0 && len(p) > 0:
		return p, 0, io.EOF
	}
	return p, n, nil
}
