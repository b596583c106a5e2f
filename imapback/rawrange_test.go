package imapback

// The FETCH of one range of a message, read beside go-imap by the tap:
// the body lands at its origin, what is not its answer goes on to
// go-imap, and whatever the tap cannot follow breaks the connection.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// rangeRun is what one range FETCH through a tap came to.
type rangeRun struct {
	kept     []string // "uid:body" of each body kept
	named    []string // "uid:nil" or "uid:flags" of each FETCH without a literal
	arrived  []int    // what arriving was told, in order
	passed   string   // what go-imap read
	err      error
	broken   bool
	bigAfter bool // the tap still held the big read buffer afterwards
}

// runRange serves answer to the range FETCH of UID 5, 10 octets at 4096,
// through a tap, then closes the upstream (go-imap's reader stops at the
// end of what it is given).
func runRange(t *testing.T, answer string) rangeRun {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	tap := &itemTap{Conn: client}
	go func() { // the upstream
		defer server.Close()
		line, _ := bufio.NewReader(server).ReadString('\n')
		if line != batchTag+" UID FETCH 5 (UID BODY.PEEK[]<4096.10>)\r\n" {
			server.Write([]byte("* BYE unexpected " + line))
			return
		}
		server.Write([]byte(answer))
	}()
	passed := make(chan string, 1)
	go func() { // go-imap's reader
		var got []byte
		p := make([]byte, 4096)
		for {
			n, err := tap.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				break
			}
		}
		passed <- string(got)
	}()
	var run rangeRun
	room := make([]byte, 10)
	b := &bodyBatch{room: room, origin: 4096, to: &sinkFuncs{
		keepFn: func(uid imap.UID, off, n int, fits bool) bool {
			if fits {
				run.kept = append(run.kept, fmt.Sprintf("%d:%s", uid, room[off:off+n]))
			}
			return fits
		},
		namedFn: func(uid imap.UID, nilBody bool) {
			run.named = append(run.named, fmt.Sprintf("%d:%v", uid, map[bool]string{true: "nil", false: "flags"}[nilBody]))
		},
		arrivingFn: func(got, size int) { run.arrived = append(run.arrived, got) },
	}}
	run.err = tap.fetchBodies(imap.UIDSetNum(5), 10, b, client, nil)
	run.broken = b.broken
	run.passed = <-passed
	tap.mu.Lock()
	run.bigAfter = tap.big != nil
	tap.mu.Unlock()
	return run
}

func TestTapRangeReadsTheBodyAtItsOrigin(t *testing.T) {
	run := runRange(t, "* 3 EXPUNGE\r\n* 1 FETCH (UID 5 BODY[]<4096> {10}\r\n0123456789)\r\n"+
		"* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n"+batchTag+" OK done\r\n* 4 EXISTS\r\n")
	if run.err != nil || run.broken {
		t.Fatalf("fetchBodies: %v (broken %v)", run.err, run.broken)
	}
	if len(run.kept) != 1 || run.kept[0] != "5:0123456789" {
		t.Errorf("bodies %q, want the range", run.kept)
	}
	if len(run.arrived) == 0 || run.arrived[len(run.arrived)-1] != 10 {
		t.Errorf("arriving told %v, want it to end at 10", run.arrived)
	}
	if len(run.named) != 1 || run.named[0] != "5:flags" {
		t.Errorf("named %q, want the flag change", run.named)
	}
	// The EXPUNGE before the answer and the flag change in it are
	// go-imap's, in order.
	if want := "* 3 EXPUNGE\r\n* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n* 4 EXISTS\r\n"; run.passed != want {
		t.Errorf("go-imap got %q, want %q", run.passed, want)
	}
	if run.bigAfter {
		t.Error("the big read buffer is still held after the range")
	}
}

// Past the start, NIL ends the message; the range knows it from named.
func TestTapRangeNilBodyIsNamed(t *testing.T) {
	run := runRange(t, "* 1 FETCH (UID 5 BODY[]<4096> NIL)\r\n"+batchTag+" OK done\r\n")
	if run.err != nil || run.broken || len(run.kept) != 0 {
		t.Fatalf("fetchBodies: %v (broken %v), kept %q", run.err, run.broken, run.kept)
	}
	if len(run.named) != 1 || run.named[0] != "5:nil" {
		t.Errorf("named %q, want a NIL body of UID 5", run.named)
	}
}

// A body of a range other than the one asked for, a literal cut off, and
// a body too large for the room: the connection is broken or the body
// dropped, never taken for the range or for the message gone.
func TestTapRangeBreaksOnWhatItCannotFollow(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		broken       bool
	}{
		{"another origin", "* 1 FETCH (UID 5 BODY[]<0> {10}\r\n0123456789)\r\n" + batchTag + " OK done\r\n", true},
		{"cut off", "* 1 FETCH (UID 5 BODY[]<4096> {10}\r\n01234", true},
		{"cut after the body", "* 1 FETCH (UID 5 BODY[]<4096> {10}\r\n0123456789", true},
		{"a literal after the body", "* 1 FETCH (UID 5 BODY[]<4096> {10}\r\n0123456789 BODY[HEADER] {2}\r\nab)\r\n" + batchTag + " OK\r\n", true},
		{"too large", "* 1 FETCH (UID 5 BODY[]<4096> {11}\r\n0123456789A)\r\n" + batchTag + " OK done\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := runRange(t, tc.answer)
			if len(run.kept) != 0 {
				t.Errorf("kept %q", run.kept)
			}
			if run.broken != tc.broken || (tc.broken && run.err == nil) {
				t.Errorf("broken %v, error %v; want broken %v", run.broken, run.err, tc.broken)
			}
			if tc.broken && strings.Contains(run.passed, "FETCH") {
				t.Errorf("go-imap got %q of an answer the tap could not follow", run.passed)
			}
		})
	}
}

// Two ranges on two taps (two sessions) in a row: the pooled read buffer
// the first gave back holds nothing the second takes for its own.
func TestTapRangeBufferReuseAcrossSessions(t *testing.T) {
	first := runRange(t, "* 1 FETCH (UID 5 BODY[]<4096> {10}\r\nAAAAAAAAAA)\r\n"+batchTag+" OK done\r\n")
	second := runRange(t, "* 1 FETCH (UID 5 BODY[]<4096> {10}\r\nBBBBBBBBBB)\r\n"+batchTag+" OK done\r\n")
	if len(first.kept) != 1 || len(second.kept) != 1 || first.kept[0] != "5:AAAAAAAAAA" || second.kept[0] != "5:BBBBBBBBBB" {
		t.Errorf("bodies %q then %q", first.kept, second.kept)
	}
	if bytes.Contains([]byte(second.passed), []byte("A")) {
		t.Errorf("the second session's go-imap got %q", second.passed)
	}
}
