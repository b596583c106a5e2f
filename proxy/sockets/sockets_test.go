package sockets

import (
	"log/slog"
	"net"
	"testing"
)

// A connection handed out by a view passes straight through to the
// accepted socket, so the POP3 server can look at the commands a client
// queued; looking marks nothing used, while a read does.
func TestHandedOffConnectionPassesThrough(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ln, slog.New(slog.DiscardHandler))
	defer s.Close()
	v := s.View()
	defer v.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := v.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	h, ok := nc.(*handoffConn)
	if !ok {
		t.Fatalf("Accept returned %T", nc)
	}
	if _, ok := h.PassThrough().(*net.TCPConn); !ok {
		t.Errorf("PassThrough returned %T, want the accepted *net.TCPConn", h.PassThrough())
	}
	if h.used.Load() {
		t.Error("the connection counts as used before any I/O")
	}
	client.Write([]byte("x"))
	if _, err := nc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if !h.used.Load() {
		t.Error("a read did not mark the connection used")
	}
}
