//go:build !unix

// peek_other.go: without a way to look at the socket's input, only the
// lines already read are known (pipeline.go, idle.go).

package pop3front

import "net"

func peekSocket(net.Conn, []byte) int { return 0 }

func readPending(net.Conn, []byte) int { return 0 }

func bareTCP(net.Conn) bool { return false }
