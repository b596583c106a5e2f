package imapback

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/dovecottest"
)

// fetchCounter forwards TCP to target and counts "UID FETCH" in what the
// client sends.
type fetchCounter struct {
	addr    string
	fetches atomic.Int64
}

func startFetchCounter(t *testing.T, target string) *fetchCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := &fetchCounter{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(down, up); down.Close() }()
			go func() {
				defer wg.Done()
				defer up.Close()
				var line []byte
				buf := make([]byte, 4096)
				for {
					n, err := down.Read(buf)
					line = append(line, buf[:n]...)
					if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
						fc.fetches.Add(int64(bytes.Count(line[:i], []byte("UID FETCH"))))
						line = append(line[:0], line[i+1:]...)
					}
					if _, werr := up.Write(buf[:n]); err != nil || werr != nil {
						return
					}
				}
			}()
		}
	}()
	return fc
}

func newReadAheadBackend(t *testing.T, addr string, chunk, raBytes int) *Backend {
	t.Helper()
	b, err := New(Options{
		Address: addr, TLS: TLSNone, ChunkSize: chunk, ReadAheadBytes: raBytes,
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func retrieveAll(t *testing.T, s *Session, i int) []byte {
	t.Helper()
	rc, err := s.Retrieve(context.Background(), i, -1)
	if err != nil {
		t.Fatalf("Retrieve(%d): %v", i, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading message %d: %v", i, err)
	}
	return got
}

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
		want int64
	}{
		// Windows of 1, 2, 4, 8 messages (0-14), 16 (15-19, cut short by
		// the large message), 4 chunks for message 20, then 32 (21-39).
		{"read-ahead", 0, 4 + 1 + 4 + 1},
		{"byte budget of 1 KiB", 1024, -1}, // at most 1 KiB per batch
		{"disabled", -1, 40 + 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fc := startFetchCounter(t, startMem(t, msgs...).Addr)
			b := newReadAheadBackend(t, fc.addr, chunk, tt.raBytes)
			s := login(t, b)
			start := fc.fetches.Load()
			for i, want := range msgs {
				if got := retrieveAll(t, s, i); !bytes.Equal(got, want) {
					t.Fatalf("message %d: got %d octets, want %d", i, len(got), len(want))
				}
				s.Retrieved(i)
			}
			got := fc.fetches.Load() - start
			if tt.want >= 0 && got != tt.want {
				t.Errorf("%d UID FETCH commands, want %d", got, tt.want)
			}
			if tt.want < 0 && (got <= 10 || got >= 40) {
				// 1 KiB holds 2-9 of these messages: more FETCHes than
				// with the default budget, fewer than one per message.
				t.Errorf("%d UID FETCH commands, want between 10 and 40", got)
			}
			if n := b.raInUse.Load(); n != 0 {
				t.Errorf("%d octets of read-ahead buffers still held after the last message", n)
			}
		})
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
	s := login(t, newBackend(t, srv.Addr, 1024))
	for i := range 4 { // windows 1, 2, 4: messages 0-6 are fetched
		retrieveAll(t, s, i)
		s.Retrieved(i)
	}
	if err := s.Noop(context.Background()); err != nil { // sends the pending STORE
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		seen := false
		for _, f := range m.Flags {
			seen = seen || f == imap.FlagSeen
		}
		if seen != (i < 4) {
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
	s := login(t, newBackend(t, srv.Addr, 1024))
	for i := range 3 { // windows 1 and 2: messages 0-2 fetched
		retrieveAll(t, s, i)
	}

	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	gone := s.Messages()[3].UID
	if err := c.Store(imap.UIDSetNum(gone), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UIDExpunge(imap.UIDSetNum(gone)).Collect(); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Retrieve(context.Background(), 3, -1); !errors.Is(err, ErrGone) {
		t.Fatalf("Retrieve of the expunged message: %v, want ErrGone", err)
	}
	for i := 4; i < len(msgs); i++ {
		if got := retrieveAll(t, s, i); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %q, want %q", i, got, msgs[i])
		}
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
		if err := c.Login("alice", "secret").Wait(); err != nil {
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

	b, err := New(Options{
		Address: d.IMAPAddr, TLS: TLSNone, ChunkSize: chunk, ReadTimeout: deadline,
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := login(t, b)
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
