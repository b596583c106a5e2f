package pop3front

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// After an idle wait the line reader gets, in its first read, what the
// octets that ended the wait left in the socket, as one read into the
// whole buffer would have: a pipelining client's burst is read at once,
// and answered in one write.
func TestWakeReaderTakesWhatTheSocketHolds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	burst := strings.Repeat("STAT\r\nNOOP\r\n", 50) // 600 octets
	if _, err := client.Write([]byte(burst)); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	in := wakeReader{nc: server}
	// The socket holds all of it before the wait ends (loopback).
	for deadline := time.Now().Add(5 * time.Second); peekSocket(server, make([]byte, len(burst))) < len(burst) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	n, err := server.Read(in.first[:])
	if err != nil || n != len(in.first) {
		t.Fatalf("first read: %d, %v", n, err)
	}
	in.w = uint8(n)
	br := bufio.NewReaderSize(&in, maxAuthLine)
	line, err := br.ReadSlice('\n')
	if err != nil || string(line) != "STAT\r\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if got, want := br.Buffered(), len(burst)-len(line); got != want {
		t.Errorf("after the first line %d octets buffered, want %d", got, want)
	}
}
