package imapback

// Tests of reconnecting after a lost upstream connection: bounded
// attempts, no password kept without it, expunges mapped afresh, and a
// lost \Seen sent again.

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

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
	s := login(t, newBackend(t, Options{Address: relay.Addr, ChunkSize: 1 << 10}))
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
	b := newBackend(t, Options{Address: relay.Addr, ChunkSize: 1 << 10})
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
	s := login(t, newBackend(t, Options{Address: relay.Addr, ChunkSize: 1 << 10}))
	other := otherDevice(t, srv.Addr)
	relay.Hangup([]byte("* BYE idle\r\n"))
	waitClosed(t, s)
	expunge(t, other, imap.UIDSetNum(s.Messages()[1].UID)) // while disconnected
	ctx := context.Background()
	if err := s.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	expunge(t, other, imap.UIDSetNum(s.Messages()[3].UID)) // on the new connection: "* 3 EXPUNGE"
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
	// One message a batch: the second is fetched after the first.
	s := login(t, newBackend(t, Options{Address: relay.Addr, ChunkSize: 1 << 10, ReadAheadMessages: 1}))
	ctx := context.Background()
	retrieveAll(t, s, 0)
	s.Retrieved(0)
	// The STORE goes out ahead of the next FETCH that is not a RETR's
	// (a TOP's) and dies with the connection.
	relay.Arm(fr.Fault{Dir: fr.Up, Match: `(\Seen)`, Action: fr.Cut})
	if _, err := s.Retrieve(ctx, 1, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("TOP with the connection cut: %v", err)
	}
	waitClosed(t, s)
	if err := s.Noop(ctx); err != nil {
		t.Fatalf("NOOP after the cut: %v", err)
	}
	if f := mailboxFlags(t, srv.Addr, "INBOX")[s.Messages()[0].UID]; !slices.Contains(f, imap.FlagSeen) {
		t.Errorf("flags of the retrieved message after the reconnect: %v, want \\Seen", f)
	}
}
