package imapback

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/faultrelay"
)

// While the client is still sent one range of a large message, the next
// range is already being fetched (rangeahead.go), into the session's
// read-ahead buffer: no more read-ahead memory than a batch takes.
func TestNextRangeIsFetchedWhileTheClientReadsTheCurrentOne(t *testing.T) {
	t.Parallel()
	const chunk = 1024
	big := message(3*chunk + 5)
	fc := startFetchCounter(t, startMem(t, big, message(300)).Addr)
	b := newReadAheadBackend(t, fc.addr, chunk, 4096)
	s := login(t, b)
	start := fc.fetches.Load()
	rc, err := s.Retrieve(context.Background(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing read yet: the first range is in, the second on its way.
	for deadline := time.Now().Add(5 * time.Second); fc.fetches.Load()-start < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d UID FETCH commands while the first range waits for the client, want 2", fc.fetches.Load()-start)
		}
	}
	if n := b.raInUse.Load(); n != 4096 {
		t.Errorf("%d octets of read-ahead held during the transfer, want one buffer of 4096", n)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("got %d octets (%v), want %d", len(got), err, len(big))
	}
	if n := fc.fetches.Load() - start; n != 4 {
		t.Errorf("%d UID FETCH commands for 3 ranges and the short last one, want 4", n)
	}
	if n := b.raInUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead still held after the message", n)
	}
	if got := retrieveAll(t, s, 1); !bytes.Equal(got, message(300)) {
		t.Fatalf("the message after the large one: got %d octets", len(got))
	}
	if err := s.Noop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The first message of a batch goes to the client as soon as its body is
// in, not when the whole batch is: here the upstream stalls right after
// it, and it is still delivered at once. The stalled batch then fails,
// and the next message is fetched again on a new connection.
func TestReadAheadServesTheFirstMessageOfABatchBeforeTheRestArrives(t *testing.T) {
	t.Parallel()
	var msgs [][]byte
	for i := range 8 {
		msgs = append(msgs, fmt.Appendf(nil, "Subject: %d\r\n\r\nbody of message number %d\r\n", i, i))
	}
	relay := faultrelay.New(t, startMem(t, msgs...).Addr)
	b := newReadAheadBackend(t, relay.Addr, 1024, 0)
	s := login(t, b)
	for i := range 3 { // windows 1 and 2
		if got := retrieveAll(t, s, i); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	// The next batch holds messages 3-6; the upstream stalls after 3.
	stall := relay.Arm(faultrelay.Fault{Dir: faultrelay.Down, Match: "body of message number 4", Action: faultrelay.Stall})
	start := time.Now()
	if got := retrieveAll(t, s, 3); !bytes.Equal(got, msgs[3]) {
		t.Fatalf("message 3: got %q", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("message 3 took %v: it waited for the stalled rest of the batch", d)
	}
	select {
	case <-stall.Fired():
	case <-time.After(5 * time.Second):
		t.Fatal("the stall did not fire: the test proves nothing")
	}
	relay.CutAll()
	for i := 4; i < len(msgs); i++ {
		if got := retrieveAll(t, s, i); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d after the cut: got %q", i, got)
		}
	}
	if n := b.raInUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead still held after the last message", n)
	}
}
