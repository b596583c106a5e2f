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
// a bare TCP connection is looked at: a wrapper may hold input of its own
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
	_, ok := nc.(*net.TCPConn)
	return ok
}

func recvNow(nc net.Conn, p []byte, flags int) int {
	tc, ok := nc.(*net.TCPConn)
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
