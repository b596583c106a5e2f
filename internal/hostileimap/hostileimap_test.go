package hostileimap

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
)

// The server streams a scripted literal of 100 MB exactly, without
// holding it: the process allocates a small fraction of it.
func TestHostileStreamsLiterals(t *testing.T) {
	const size = 100 << 20
	srv := Start(t, Script{Select: func(w *Writer) {
		w.Line("* 1 EXISTS")
		w.Printf(`* LIST () "/" `)
		w.Literal(size)
		w.Printf("\r\n")
	}})
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	line := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if g := line(); !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS]") {
		t.Fatalf("greeting %q", g)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fmt.Fprintf(nc, "a LOGIN u p\r\nb SELECT INBOX\r\n")
	if l := line(); l != "a OK LOGIN done\r\n" {
		t.Fatalf("LOGIN answered %q", l)
	}
	if l := line(); l != "* 1 EXISTS\r\n" {
		t.Fatalf("SELECT answered %q", l)
	}
	if l := line(); l != fmt.Sprintf("* LIST () \"/\" {%d}\r\n", size) {
		t.Fatalf("then %q", l)
	}
	n, err := io.CopyN(io.Discard, r, size)
	if err != nil {
		t.Fatalf("literal: %d octets, %v", n, err)
	}
	if l := line(); l != "\r\n" {
		t.Fatalf("after the literal %q", l)
	}
	if l := line(); l != "b OK SELECT done\r\n" {
		t.Fatalf("SELECT completed with %q", l)
	}
	runtime.ReadMemStats(&after)
	if a := after.TotalAlloc - before.TotalAlloc; a > 4<<20 {
		t.Errorf("streaming %d octets allocated %d", size, a)
	}
}

// A script that writes in a loop learns that the client left, and Close
// waits for it.
func TestHostileWriterStopsWhenClientLeaves(t *testing.T) {
	stopped := make(chan int, 1)
	srv := Start(t, Script{Fetch: func(w *Writer, _ string) {
		i := 0
		for ; i < 10_000_000 && w.Err() == nil; i++ {
			w.Line("* %d FETCH (UID %d RFC822.SIZE 10)", i+1, i+1)
		}
		stopped <- i
	}})
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(nc)
	fmt.Fprintf(nc, "a UID FETCH 1:* (UID RFC822.SIZE)\r\n")
	for range 10 { // the greeting and some answers
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	if i := <-stopped; i >= 10_000_000 {
		t.Fatal("the script wrote everything to a closed connection")
	}
	srv.Close()
}
