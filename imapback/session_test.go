package imapback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/popbridge/popbridge/internal/memimap"
)

func startMem(t *testing.T, msgs ...[]byte) *memimap.Server {
	t.Helper()
	srv, err := memimap.Listen(memimap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.AddUser("alice", "secret")
	for _, m := range msgs {
		if err := srv.Append("alice", "INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

func newBackend(t *testing.T, addr string, chunk int) *Backend {
	t.Helper()
	b, err := New(Options{
		Address: addr, TLS: TLSNone, ChunkSize: chunk,
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func login(t *testing.T, b *Backend) *Session {
	t.Helper()
	s, err := b.Login(context.Background(), "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func message(size int) []byte {
	m := []byte("Subject: sized\r\n\r\n")
	for i := 0; len(m) < size; i++ {
		m = fmt.Appendf(m, "line %d\r\n", i)
	}
	m = m[:size-2]
	return append(m, '\r', '\n')
}

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
			b := newReadAheadBackend(t, srv.Addr, chunk, tt.raBytes)
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
			if n := b.raInUse.Load(); n != 0 {
				t.Errorf("%d octets of read-ahead still held", n)
			}
		})
	}
}

func TestLoginFailures(t *testing.T) {
	srv := startMem(t)
	b := newBackend(t, srv.Addr, 0)
	if _, err := b.Login(context.Background(), "alice", "wrong"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("wrong password: %v, want ErrAuthFailed", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := newBackend(t, dead, 0).Login(context.Background(), "alice", "secret"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no server: %v, want ErrUnavailable", err)
	}
	// A server that accepts and then says nothing: the dial timeout ends it.
	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); silent.Close(); <-stopped }()
	go func() {
		defer close(stopped)
		c, err := silent.Accept()
		if err == nil {
			defer c.Close()
			<-stop
		}
	}()
	start := time.Now()
	if _, err := newBackend(t, silent.Addr().String(), 0).Login(context.Background(), "alice", "secret"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("silent server: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("silent server held the login for %v", d)
	}
}

// A server that greets with PREAUTH would let any password in.
func TestLoginRefusesPreauth(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("alice", "secret")
	user.Create("INBOX", nil)
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return imapmemserver.NewUserSession(user), &imapserver.GreetingData{PreAuth: true}, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	_, err = newBackend(t, ln.Addr().String(), 0).Login(context.Background(), "alice", "anything")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("PREAUTH upstream: %v, want ErrUnavailable", err)
	}
}

func TestRetrieveOfExpungedMessageIsErrGone(t *testing.T) {
	srv := startMem(t, message(100), message(200))
	s := login(t, newBackend(t, srv.Addr, 0))
	other := login(t, newBackend(t, srv.Addr, 0))
	if _, _, err := other.Commit(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Retrieve(context.Background(), 0, -1); !errors.Is(err, ErrGone) {
		t.Fatalf("Retrieve of an expunged message: %v, want ErrGone", err)
	}
	if !s.Expunged(0) || s.Expunged(1) {
		t.Errorf("Expunged(0), Expunged(1) = %v, %v; want true, false", s.Expunged(0), s.Expunged(1))
	}
	rc, err := s.Retrieve(context.Background(), 1, -1)
	if err != nil {
		t.Fatalf("the other message: %v", err)
	}
	rc.Close()
}

func TestCancelledContextAbortsTheSession(t *testing.T) {
	srv := startMem(t, message(1000))
	s := login(t, newBackend(t, srv.Addr, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Noop(ctx); err == nil {
		t.Fatal("Noop with a cancelled context succeeded")
	}
}

func TestLoginMechanisms(t *testing.T) {
	srv := startMem(t, message(100))
	for _, mech := range []AuthMechanism{AuthAuto, AuthLogin, AuthPlain} {
		b, err := New(Options{Address: srv.Addr, TLS: TLSNone, Auth: mech, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		s, err := b.Login(context.Background(), "alice", "secret")
		if err != nil {
			t.Errorf("auth %q: %v", mech, err)
			continue
		}
		if len(s.Messages()) != 1 {
			t.Errorf("auth %q: %d messages", mech, len(s.Messages()))
		}
		s.Close()
		if _, err := b.Login(context.Background(), "alice", "wrong"); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("auth %q with a wrong password: %v", mech, err)
		}
	}
}
