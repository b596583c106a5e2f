//go:build unix

// peek_unix.go holds peekSocket, which looks at the commands a client
// sent that are still in the kernel's socket buffer, and readPending,
// which reads them without waiting.

package pop3front

import (
	"net"
	"syscall"
)

// peekSocket copies into p what the kernel holds of the client's input,
// without consuming it and without waiting, and returns its length. Only
// a TCP connection with nothing between it and the server but
// PassThroughConns is looked at: another wrapper may hold input of its own
// (a PROXY protocol reader, TLS records), and what the kernel holds would
// then not follow what the line reader holds.
func peekSocket(nc net.Conn, p []byte) int {
	return recvNow(nc, p, syscall.MSG_PEEK)
}

// readPending is peekSocket that consumes what it copies.
func readPending(nc net.Conn, p []byte) int {
	return recvNow(nc, p, 0)
}

// bareTCP reports whether nc is a connection that peekSocket and
// readPending see the input of.
func bareTCP(nc net.Conn) bool {
	_, ok := tcpBeneath(nc)
	return ok
}

// tcpBeneath returns nc's TCP connection through PassThroughConns.
func tcpBeneath(nc net.Conn) (*net.TCPConn, bool) {
	for {
		switch c := nc.(type) {
		case *net.TCPConn:
			return c, true
		case PassThroughConn:
			nc = c.PassThrough()
		default:
			return nil, false
		}
	}
}

func recvNow(nc net.Conn, p []byte, flags int) int {
	tc, ok := tcpBeneath(nc)
	if !ok {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Read(func(fd uintptr) bool {
		k, _, err := syscall.Recvfrom(int(fd), p, flags|syscall.MSG_DONTWAIT)
		if err == nil {
			n = k
		}
		return true // never wait for input
	})
	return n
}
