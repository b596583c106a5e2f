package imapback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/dovecottest"
	fr "github.com/popbridge/popbridge/internal/faultrelay"
)

// waitClosed waits until the session has seen its connection close, so
// that the next command reconnects instead of racing with the hangup.
func waitClosed(t *testing.T, s *Session) {
	t.Helper()
	select {
	case <-s.c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not notice the hangup")
	}
}

// A session reconnects after each hangup, up to maxReconnects times; then
// it gives up for good instead of logging in forever.
func TestReconnectsAreBounded(t *testing.T) {
	srv := startMem(t, message(100), message(200))
	relay := fr.New(t, srv.Addr)
	s := login(t, newBackend(t, relay.Addr, 1<<10))
	ctx := context.Background()
	for i := 1; i <= maxReconnects; i++ {
		relay.Hangup([]byte("* BYE idle\r\n"))
		waitClosed(t, s)
		if err := s.Noop(ctx); err != nil {
			t.Fatalf("NOOP after hangup %d: %v", i, err)
		}
	}
	rc, err := s.Retrieve(ctx, 1, -1)
	if err != nil {
		t.Fatalf("RETR after %d reconnects: %v", maxReconnects, err)
	}
	if data, err := io.ReadAll(rc); err != nil || len(data) != 200 {
		t.Errorf("RETR after reconnects: %d octets, %v", len(data), err)
	}
	rc.Close()
	relay.Hangup([]byte("* BYE idle\r\n"))
	waitClosed(t, s)
	for range 2 {
		if err := s.Noop(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("NOOP after %d hangups: %v, want ErrUnavailable", maxReconnects+1, err)
		}
	}
	if got := relay.Accepted(); got != maxReconnects+1 {
		t.Errorf("%d upstream connections, want %d", got, maxReconnects+1)
	}
}

// With NoReconnect the session keeps no password and a lost connection
// fails every later command.
func TestNoReconnectKeepsNoPassword(t *testing.T) {
	srv := startMem(t, message(100))
	relay := fr.New(t, srv.Addr)
	b := newBackend(t, relay.Addr, 1<<10)
	b.opts.NoReconnect = true
	s := login(t, b)
	if s.rc.cr.Password != "" || s.rc.cr.Token != nil || s.rc.on {
		t.Error("the session kept the password with NoReconnect")
	}
	relay.Hangup([]byte("* BYE idle\r\n"))
	waitClosed(t, s)
	if err := s.Noop(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NOOP after hangup: %v", err)
	}
	if relay.Accepted() != 1 {
		t.Errorf("%d upstream connections with NoReconnect", relay.Accepted())
	}
}

// After a reconnect the sequence numbers of later EXPUNGE responses are
// mapped onto the snapshot afresh: messages expunged while disconnected
// and those expunged afterwards are both known to be gone, and no other.
func TestReconnectMapsExpungesOntoTheSnapshot(t *testing.T) {
	srv := startMem(t, message(100), message(101), message(102), message(103))
	relay := fr.New(t, srv.Addr)
	s := login(t, newBackend(t, relay.Addr, 1<<10))
	other, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	expunge := func(i int) {
		uid := imap.UIDSetNum(s.Messages()[i].UID)
		if err := other.Store(uid, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := other.UIDExpunge(uid).Close(); err != nil {
			t.Fatal(err)
		}
	}
	relay.Hangup([]byte("* BYE idle\r\n"))
	waitClosed(t, s)
	expunge(1) // while disconnected
	ctx := context.Background()
	if err := s.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	expunge(3) // on the new connection: "* 3 EXPUNGE"
	if err := s.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, false, true} {
		if got := s.Expunged(i); got != want {
			t.Errorf("Expunged(%d) = %v, want %v", i, got, want)
		}
	}
	if _, err := s.Retrieve(ctx, 1, -1); !errors.Is(err, ErrGone) {
		t.Errorf("RETR of a message expunged while disconnected: %v", err)
	}
}

// A \Seen STORE that was sent but never answered because the connection
// died is sent again after the reconnect.
func TestReconnectResendsALostSeen(t *testing.T) {
	srv := startMem(t, message(100), message(101))
	relay := fr.New(t, srv.Addr)
	s := login(t, newBackend(t, relay.Addr, 1<<10))
	ctx := context.Background()
	rc, err := s.Retrieve(ctx, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(rc)
	rc.Close()
	s.Retrieved(0)
	// The STORE goes out ahead of the next FETCH and dies with the
	// connection.
	relay.Arm(fr.Fault{Dir: fr.Up, Match: `(\Seen)`, Action: fr.Cut})
	if _, err := s.Retrieve(ctx, 1, -1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("RETR with the connection cut: %v", err)
	}
	waitClosed(t, s)
	if err := s.Noop(ctx); err != nil {
		t.Fatalf("NOOP after the cut: %v", err)
	}
	other, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := other.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH FLAGS: %v", err)
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("flags of the retrieved message after the reconnect: %v, want \\Seen", msgs[0].Flags)
	}
}

// Another client expunges a message while it is being retrieved in
// chunks: Dovecot then answers the next chunk with NIL, which must not be
// taken for the end of the message.
func TestMessageExpungedDuringTransferIsNotCutShortSilently(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{})
	d.Deliver(t, "alice", message(5000))
	b := newBackend(t, d.IMAPAddr, 1<<10)
	b.opts.ReadAheadBytes = 0
	s, err := b.Login(context.Background(), Credentials{User: "alice", Password: "secret"}, b.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc, err := s.Retrieve(context.Background(), 0, -1) // the first 1 KiB chunk
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	other := d.Dial(t, "alice")
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uid := imap.UIDSetNum(s.Messages()[0].UID)
	if err := other.Store(uid, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.UIDExpunge(uid).Close(); err != nil {
		t.Fatal(err)
	}
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
	for _, readAhead := range []int{0, 1 << 20} {
		t.Run(fmt.Sprintf("read-ahead=%d", readAhead), func(t *testing.T) {
			d := dovecottest.Start(t, dovecottest.Options{})
			d.Deliver(t, "alice", message(5000))
			b := newBackend(t, d.IMAPAddr, 1<<10)
			b.opts.ReadAheadBytes = readAhead
			s := login(t, b)
			other := d.Dial(t, "alice")
			if _, err := other.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			uid := imap.UIDSetNum(s.Messages()[0].UID)
			if err := other.Store(uid, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := other.UIDExpunge(uid).Close(); err != nil {
				t.Fatal(err)
			}
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
