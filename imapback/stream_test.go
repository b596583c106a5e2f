package imapback

// Tests of the message stream: ranges across chunk boundaries, the next
// range fetched ahead, a slow client, and messages expunged before or
// during their transfer.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/dovecottest"
)

// Whole messages arrive intact whatever their size against the chunk
// size: read with Read or written out with WriteTo (as the POP3 front end
// does), with read-ahead (batches, and the next range fetched ahead) and
// without.
func TestRetrieveReadsWholeMessagesAcrossChunkBoundaries(t *testing.T) {
	const chunk = 64
	sizes := []int{30, chunk - 1, chunk, chunk + 1, 2 * chunk, 5*chunk + 7, 3 * chunk}
	var msgs [][]byte
	for _, n := range sizes {
		msgs = append(msgs, message(n))
	}
	srv := startMem(t, msgs...)
	for _, tt := range []struct {
		name    string
		raBytes int
		write   bool
	}{
		{"Read", 0, false},
		{"WriteTo", 0, true},
		{"Read without read-ahead", -1, false},
		{"WriteTo without read-ahead", -1, true},
		{"WriteTo with read-ahead smaller than a chunk", chunk / 2, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, Options{Address: srv.Addr, ChunkSize: chunk, ReadAheadBytes: tt.raBytes})
			s := login(t, b)
			if got := len(s.Messages()); got != len(msgs) {
				t.Fatalf("snapshot has %d messages, want %d", got, len(msgs))
			}
			for i, want := range msgs {
				if s.Messages()[i].Size != int64(len(want)) {
					t.Errorf("message %d: size %d, want %d", i, s.Messages()[i].Size, len(want))
				}
				rc, err := s.Retrieve(context.Background(), i, -1)
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				if tt.write {
					var buf bytes.Buffer
					_, err = rc.(io.WriterTo).WriteTo(&buf)
					got = buf.Bytes()
				} else {
					got, err = io.ReadAll(rc)
				}
				rc.Close()
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("message of %d octets: read %d octets, err %v", len(want), len(got), err)
				}
			}
			if n := b.ra.inUse.Load(); n != 0 {
				t.Errorf("%d octets of read-ahead still held", n)
			}
		})
	}
}

// While the client is still sent one range of a large message, the next
// range is already being fetched, into the session's read-ahead buffer:
// no more read-ahead memory than a batch takes, and no third range
// before the client has read the first.
func TestNextRangeIsFetchedWhileTheClientReadsTheCurrentOne(t *testing.T) {
	t.Parallel()
	const chunk = 1024
	big := message(3*chunk + 5)
	up := tapUpstream(t, startMem(t, big, message(300)).Addr)
	b := newBackend(t, Options{Address: up.Addr, ChunkSize: chunk, ReadAheadBytes: 4096})
	s := login(t, b)
	base := up.count("UID FETCH") // the snapshot's
	fetches := func() int { return up.count("UID FETCH") - base }
	rc, err := s.Retrieve(context.Background(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing read yet: the first range is in, the second on its way.
	for deadline := time.Now().Add(5 * time.Second); fetches() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d UID FETCH commands while the first range waits for the client, want 2", fetches())
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := fetches(); n != 2 {
		t.Errorf("%d UID FETCH commands before the client read anything, want 2: no buffer is free for a third", n)
	}
	if n := b.ra.inUse.Load(); n != 4096 {
		t.Errorf("%d octets of read-ahead held during the transfer, want one buffer of 4096", n)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("got %d octets (%v), want %d", len(got), err, len(big))
	}
	if n := fetches(); n != 4 {
		t.Errorf("%d UID FETCH commands for 3 ranges and the short last one, want 4", n)
	}
	if n := b.ra.inUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead still held after the message", n)
	}
	if got := retrieveAll(t, s, 1); !bytes.Equal(got, message(300)) {
		t.Fatalf("the message after the large one: got %d octets", len(got))
	}
	if err := s.Noop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A client that reads a large message at 10 KiB/s takes far longer than
// the upstream connection's read deadline allows for one response (capped
// at 200 ms here; go-imap's own is 5 minutes per literal): the message is
// still delivered in full and the upstream connection still works,
// because each chunk is read at upstream speed, not at the client's.
func TestSlowClientDoesNotBreakTheUpstream(t *testing.T) {
	const (
		size     = 30 << 10
		chunk    = 4 << 10
		deadline = 200 * time.Millisecond
		rate     = 10 << 10 // octets per second
	)
	t.Parallel()
	d := dovecottest.Start(t, dovecottest.Options{})
	big := message(size)
	d.Deliver(t, "alice", big)
	d.Deliver(t, "alice", message(300))

	// The control: one FETCH of the whole message read at the client's
	// pace through the same capped deadline fails. Without this the test
	// would prove nothing.
	t.Run("control: one literal read slowly", func(t *testing.T) {
		nc, err := net.Dial("tcp", d.IMAPAddr)
		if err != nil {
			t.Fatal(err)
		}
		c := imapclient.New(cappedConn{nc, deadline}, nil)
		defer c.Close()
		if err := c.Login(alice.User, alice.Password).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		cmd := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		defer nc.Close() // the literal is abandoned: close before cmd.Close
		m := cmd.Next()
		if m == nil {
			t.Fatal("no FETCH response")
		}
		var err2 error
		for item := m.Next(); item != nil; item = m.Next() {
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok {
				_, err2 = io.Copy(io.Discard, &slowReader{r: body.Literal, rate: rate})
				break
			}
		}
		if err2 == nil {
			t.Fatal("reading one literal at 10 KiB/s through a 200 ms read deadline worked: the cap does not bite, so the test below proves nothing")
		}
	})

	s := login(t, newBackend(t, Options{Address: d.IMAPAddr, ChunkSize: chunk, ReadTimeout: deadline}))
	rc, err := s.Retrieve(context.Background(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := io.ReadAll(&slowReader{r: rc, rate: rate})
	rc.Close()
	if err != nil {
		t.Fatalf("slow read failed after %v: %v", time.Since(start), err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("got %d octets, want %d", len(got), len(big))
	}
	if elapsed := time.Since(start); elapsed < 5*deadline {
		t.Fatalf("the transfer took %v: not slow enough to outlast the deadline", elapsed)
	}
	s.Retrieved(0)
	if got := retrieveAll(t, s, 1); !bytes.Equal(got, message(300)) {
		t.Fatalf("the next message after the slow one: got %q", got)
	}
	if err := s.Noop(context.Background()); err != nil {
		t.Fatalf("upstream broken after the slow transfer: %v", err)
	}
}

// slowReader reads at most rate octets per second, in pieces of 1 KiB.
type slowReader struct {
	r    io.Reader
	rate int
}

func (s *slowReader) Read(p []byte) (int, error) {
	const piece = 1 << 10
	time.Sleep(time.Second * piece / time.Duration(s.rate))
	return s.r.Read(p[:min(len(p), piece)])
}

// Another client expunges a message while it is being retrieved in
// chunks: Dovecot then answers the next chunk with NIL, which must not be
// taken for the end of the message.
func TestMessageExpungedDuringTransferIsNotCutShortSilently(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	d.Deliver(t, "alice", message(5000))
	s := login(t, newBackend(t, Options{Address: d.IMAPAddr, ChunkSize: 1 << 10, ReadAheadBytes: -1}))
	rc, err := s.Retrieve(context.Background(), 0, -1) // the first 1 KiB chunk
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	expunge(t, otherDevice(t, d.IMAPAddr), imap.UIDSetNum(s.Messages()[0].UID))
	data, err := io.ReadAll(rc)
	if err == nil {
		t.Fatalf("read %d of %d octets and then a clean end: a truncated message passes for a whole one", len(data), 5000)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error: %v, want ErrUnavailable", err)
	}
}

// A message another client expunged before its RETR began is gone, not an
// upstream failure, in the chunked and the read-ahead path alike: Dovecot
// may answer its FETCH with a NIL body.
func TestMessageExpungedBeforeTransferIsGone(t *testing.T) {
	for _, readAhead := range []int{-1, DefaultReadAheadBytes} {
		t.Run(fmt.Sprintf("read-ahead=%d", readAhead), func(t *testing.T) {
			d := dovecottest.Start(t, dovecottest.Options{})
			d.Deliver(t, "alice", message(5000))
			s := login(t, newBackend(t, Options{Address: d.IMAPAddr, ChunkSize: 1 << 10, ReadAheadBytes: readAhead}))
			expunge(t, otherDevice(t, d.IMAPAddr), imap.UIDSetNum(s.Messages()[0].UID))
			rc, err := s.Retrieve(context.Background(), 0, -1)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, ErrGone) {
				t.Errorf("RETR of an expunged message: %v, want ErrGone", err)
			}
		})
	}
}
