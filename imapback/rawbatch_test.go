package imapback

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"unsafe"

	"github.com/emersion/go-imap/v2"
)

// The head and closing lines of a batch's FETCH responses, in the forms
// servers write them: the usual one, the UID after the body, other items
// around it; and what is not the batch's.
func TestParseBodyHead(t *testing.T) {
	for _, tc := range []struct {
		line     string
		header   bool // the batch asks for BODY[HEADER]
		uid      imap.UID
		size     int
		origin   int64
		body     bool
		err      error // errNotFetch or errNoLiteral
		wantFail bool
	}{
		{line: "* 1 FETCH (UID 7 BODY[] {4096}\r\n", uid: 7, size: 4096, body: true},
		{line: "* 1 FETCH (UID 7 BODY[] {0}\n", uid: 7, size: 0, body: true},
		{line: "* 12 fetch (uid 9 body[] {12}\r\n", uid: 9, size: 12, body: true},
		{line: "* 1 FETCH (BODY[] {5}\r\n", uid: 0, size: 5, body: true},
		{line: "* 1 FETCH (FLAGS (\\Seen \\Recent) UID 3 BODY[]<0> {5}\r\n", uid: 3, size: 5, body: true},
		{line: "* 1 FETCH (UID 3 BODY[HEADER] {5}\r\n", uid: 3, size: 5, body: false},
		{line: "* 1 FETCH (UID 7 BODY[]<1048576> {4096}\r\n", uid: 7, size: 4096, origin: 1 << 20, body: true},
		{line: "* 1 FETCH (FLAGS () UID 7 BODY[]<65536> {3}\r\n", uid: 7, size: 3, origin: 65536, body: true},
		{line: "* 1 FETCH (UID 7 BODY[]<x> {3}\r\n", uid: 7, size: 3, body: false},
		{line: "* 1 FETCH (UID 7 BODY[]<5 {3}\r\n", uid: 7, size: 3, body: false},
		{line: "* 1 FETCH (UID 3 BODY[]<0> NIL)\r\n", err: errNoLiteral},
		{line: "* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n", err: errNoLiteral},
		{line: "* 3 EXISTS\r\n", err: errNotFetch},
		{line: "1 FETCH (UID 7 BODY[] {5}\r\n", err: errNotFetch},
		{line: "* 1 FETCH (UID 0 BODY[] {5}\r\n", wantFail: true},
		{line: "* 1 FETCH (UID 3 BODY[] {5} X}\r\n", wantFail: true},
		{line: "* 1 FETCH (UID 3 BODY[HEADER] {5}\r\n", header: true, uid: 3, size: 5, body: true},
		{line: "* 1 fetch (flags () body[header] {5}\n", header: true, uid: 0, size: 5, body: true},
		{line: "* 1 FETCH (UID 3 BODY[] {5}\r\n", header: true, uid: 3, size: 5, body: false},
		{line: "* 1 FETCH (UID 3 BODY[HEADER]<0> {5}\r\n", header: true, uid: 3, size: 5, body: false},
		{line: "* 1 FETCH (UID 3 BODY[TEXT] {5}\r\n", header: true, uid: 3, size: 5, body: false},
		{line: "* 1 FETCH (UID 3 BODY[HEADER] NIL)\r\n", header: true, err: errNoLiteral},
		{line: "* 1 FETCH (UID 3 BODY[] {99999999999}\r\n", wantFail: true},
	} {
		uid, size, origin, body, err := parseBodyHead([]byte(tc.line), tc.header)
		switch {
		case tc.wantFail:
			if err == nil {
				t.Errorf("%q: parsed as UID %d, %d octets; want an error", tc.line, uid, size)
			}
		case tc.err != nil:
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: error %v, want %v", tc.line, err, tc.err)
			}
		case err != nil || uid != tc.uid || size != tc.size || origin != tc.origin || body != tc.body:
			t.Errorf("%q: UID %d, %d octets at %d, body %v, %v; want UID %d, %d octets at %d, body %v",
				tc.line, uid, size, origin, body, err, tc.uid, tc.size, tc.origin, tc.body)
		}
	}
}

func TestParseBodyTail(t *testing.T) {
	for _, tc := range []struct {
		line string
		uid  imap.UID
		ok   bool
	}{
		{")\r\n", 0, true},
		{")\n", 0, true},
		{" UID 7)\r\n", 7, true},
		{" FLAGS (\\Seen) UID 8)\r\n", 8, true},
		{") junk\r\n", 0, false},
		{" BODY[HEADER] {3}\r\n", 0, false},
		{"\r\n", 0, false},
	} {
		uid, err := parseBodyTail([]byte(tc.line))
		if (err == nil) != tc.ok || uid != tc.uid {
			t.Errorf("%q: UID %d, %v; want UID %d, ok %v", tc.line, uid, err, tc.uid, tc.ok)
		}
	}
}

// A batch read through the tap: the bodies land in the room in order,
// what is not the batch's goes on to go-imap, and once the batch is over
// nothing the tap holds still points into the pooled read buffer, which
// the next batch (of any session) takes.
func TestTapBatchReadsBodiesAndGivesBackItsBuffer(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	tap := &itemTap{Conn: client}
	go func() { // the upstream
		br := bufio.NewReader(server)
		line, _ := br.ReadString('\n')
		if line != batchTag+" UID FETCH 5:6 (UID BODY.PEEK[])\r\n" {
			server.Write([]byte("* BYE unexpected " + line))
			return
		}
		server.Write([]byte("* 1 FETCH (UID 5 BODY[] {5}\r\nhello)\r\n* 2 EXISTS\r\n" +
			"* 2 FETCH (BODY[] {3}\r\nabc UID 6)\r\n" + batchTag + " OK done\r\n"))
		server.Write([]byte("* 3 EXISTS\r\n"))
	}()
	passed := make(chan string, 1)
	var big *[]byte
	go func() { // go-imap's reader
		var got []byte
		p := make([]byte, 4096)
		for !bytes.Contains(got, []byte("* 3 EXISTS\r\n")) {
			n, err := tap.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				break
			}
			tap.mu.Lock()
			if tap.big != nil {
				big = tap.big
			}
			tap.mu.Unlock()
		}
		passed <- string(got)
	}()
	room := make([]byte, 16)
	var kept []string
	b := &bodyBatch{room: room, to: &sinkFuncs{
		keepFn: func(uid imap.UID, off, n int, fits bool) bool {
			kept = append(kept, fmt.Sprintf("%d:%s", uid, room[off:off+n]))
			return fits
		},
	}}
	var uids imap.UIDSet
	uids.AddRange(5, 6)
	if err := tap.fetchBodies(uids, 0, b, client, nil); err != nil || b.broken {
		t.Fatalf("fetchBodies: %v (broken %v)", err, b.broken)
	}
	if want := []string{"5:hello", "6:abc"}; !slices.Equal(kept, want) {
		t.Errorf("bodies %q, want %q", kept, want)
	}
	if got := <-passed; got != "* 2 EXISTS\r\n* 3 EXISTS\r\n" {
		t.Errorf("go-imap got %q", got)
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	if big == nil {
		t.Fatal("the batch did not read through the big buffer")
	}
	if tap.big != nil {
		t.Error("the big buffer is still held after the batch")
	}
	if start, end := &(*big)[0], &(*big)[len(*big)-1]; cap(tap.buf) > 0 {
		if p := &tap.buf[:1][0]; uintptr(unsafe.Pointer(p)) >= uintptr(unsafe.Pointer(start)) &&
			uintptr(unsafe.Pointer(p)) <= uintptr(unsafe.Pointer(end)) {
			t.Error("the tap's input still points into the big buffer it gave back")
		}
	}
}

// sinkFuncs is a bodySink of functions, each optional.
type sinkFuncs struct {
	keepFn     func(uid imap.UID, off, n int, fits bool) bool
	namedFn    func(uid imap.UID, nilBody bool)
	arrivingFn func(got, size int)
}

func (f *sinkFuncs) keep(uid imap.UID, off, n int, fits bool) bool {
	return f.keepFn != nil && f.keepFn(uid, off, n, fits)
}

func (f *sinkFuncs) named(uid imap.UID, nilBody bool) {
	if f.namedFn != nil {
		f.namedFn(uid, nilBody)
	}
}

func (f *sinkFuncs) arriving(got, size int) {
	if f.arrivingFn != nil {
		f.arrivingFn(got, size)
	}
}
