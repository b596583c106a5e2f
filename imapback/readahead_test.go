package imapback

// Tests of the batch read-ahead: growing windows, \Seen left alone,
// messages expunged meanwhile, and a batch that stalls after its first
// message.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
)

func TestSequentialRetrievalFetchesSmallMessagesInGrowingBatches(t *testing.T) {
	const chunk = 1024
	var msgs [][]byte
	for i := range 40 {
		size := 100 + 10*i
		if i == 20 {
			size = 3*chunk + 5 // a large one in the middle: streamed in chunks
		}
		msgs = append(msgs, message(size))
	}
	for _, tt := range []struct {
		name    string
		raBytes int
		// want is the number of UID FETCH commands after the snapshot's.
		want int
	}{
		// Windows of 1, 2, 4, 8 messages (0-14), 16 (15-19, cut short by
		// the large message), 4 chunks for message 20, then 32 (21-39).
		{"read-ahead", 0, 4 + 1 + 4 + 1},
		{"byte budget of 1 KiB", 1024, -1}, // at most 1 KiB per batch
		{"disabled", -1, 40 + 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := tapUpstream(t, startMem(t, msgs...).Addr)
			b := newBackend(t, Options{Address: up.Addr, ChunkSize: chunk, ReadAheadBytes: tt.raBytes})
			s := login(t, b)
			start := up.count("UID FETCH")
			for i, want := range msgs {
				if got := retrieveAll(t, s, i); !bytes.Equal(got, want) {
					t.Fatalf("message %d: got %d octets, want %d", i, len(got), len(want))
				}
				s.Retrieved(i)
			}
			got := up.count("UID FETCH") - start
			if tt.want >= 0 && got != tt.want {
				t.Errorf("%d UID FETCH commands, want %d", got, tt.want)
			}
			if tt.want < 0 && (got <= 10 || got >= 40) {
				// 1 KiB holds 2-9 of these messages: more FETCHes than
				// with the default budget, fewer than one per message.
				t.Errorf("%d UID FETCH commands, want between 10 and 40", got)
			}
			if n := b.ra.inUse.Load(); n != 0 {
				t.Errorf("%d octets of read-ahead buffers still held after the last message", n)
			}
		})
	}
}

// The session's first batch takes the rest of the mailbox when it fits
// in one: a device that retrieves the newest messages gets them with one
// FETCH. A later run that does not follow on starts at one message again.
func TestFirstBatchTakesTheNewestMessagesAtOnce(t *testing.T) {
	var msgs [][]byte
	for i := range 30 {
		msgs = append(msgs, message(200+i))
	}
	up := tapUpstream(t, startMem(t, msgs...).Addr)
	s := login(t, newBackend(t, Options{Address: up.Addr, ChunkSize: 1024, ReadAheadMessages: 16}))
	start := up.count("UID FETCH")
	for i := 20; i < 30; i++ {
		if got := retrieveAll(t, s, i); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	if got := up.count("UID FETCH") - start; got != 1 {
		t.Errorf("%d UID FETCH commands for the 10 newest messages, want 1", got)
	}
	for _, i := range []int{3, 10, 11} { // 10 and 11: windows of 1 and 2
		if got := retrieveAll(t, s, i); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	if got := up.count("UID FETCH") - start; got != 4 {
		t.Errorf("%d UID FETCH commands in all, want 4 (later runs start at one message)", got)
	}
}

// Prefetched messages are not \Seen: only Retrieved sets the flag, and
// only on the messages the client received.
func TestReadAheadNeverSetsSeen(t *testing.T) {
	var msgs [][]byte
	for range 10 {
		msgs = append(msgs, message(200))
	}
	srv := startMem(t, msgs...)
	s := login(t, newBackend(t, Options{Address: srv.Addr, ChunkSize: 1024}))
	for i := range 4 { // windows 1, 2, 4: messages 0-6 are fetched
		retrieveAll(t, s, i)
		s.Retrieved(i)
	}
	if err := s.Noop(context.Background()); err != nil { // sends the pending STORE
		t.Fatal(err)
	}
	flags := mailboxFlags(t, srv.Addr, "INBOX")
	for i, m := range s.Messages() {
		if seen := slices.Contains(flags[m.UID], imap.FlagSeen); seen != (i < 4) {
			t.Errorf("message %d: \\Seen is %v, want %v", i, seen, i < 4)
		}
	}
}

// A message expunged by another client after the batch before it was
// fetched is not in the next batch: asking for it is ErrGone, and the
// messages around it still arrive intact.
func TestReadAheadAnswersErrGoneForMessageExpungedMeanwhile(t *testing.T) {
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, message(150+i))
	}
	srv := startMem(t, msgs...)
	// At most 4 a batch: the mailbox does not fit in the first.
	s := login(t, newBackend(t, Options{Address: srv.Addr, ChunkSize: 1024, ReadAheadMessages: 4}))
	for i := range 3 { // windows 1 and 2: messages 0-2 fetched
		retrieveAll(t, s, i)
	}
	expunge(t, otherDevice(t, srv.Addr), imap.UIDSetNum(s.Messages()[3].UID))

	if _, err := s.Retrieve(context.Background(), 3, -1); !errors.Is(err, ErrGone) {
		t.Fatalf("Retrieve of the expunged message: %v, want ErrGone", err)
	}
	for i := 4; i < len(msgs); i++ {
		if got := retrieveAll(t, s, i); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %q, want %q", i, got, msgs[i])
		}
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
	// At most 4 a batch: the mailbox does not fit in the first.
	b := newBackend(t, Options{Address: relay.Addr, ChunkSize: 1024, ReadAheadMessages: 4})
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
	if n := b.ra.inUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead still held after the last message", n)
	}
}
