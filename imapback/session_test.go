package imapback

// Tests of login and the session around the stream: failed and refused
// logins, mechanisms, expunged messages and cancelled contexts.

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

func TestLoginFailures(t *testing.T) {
	srv := startMem(t)
	b := newBackend(t, Options{Address: srv.Addr})
	if _, err := loginAs(b, "alice", "wrong"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("wrong password: %v, want ErrAuthFailed", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := loginAs(newBackend(t, Options{Address: dead}), "alice", "secret"); !errors.Is(err, ErrUnavailable) {
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
	if _, err := loginAs(newBackend(t, Options{Address: silent.Addr().String()}), "alice", "secret"); !errors.Is(err, ErrUnavailable) {
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
	_, err = loginAs(newBackend(t, Options{Address: ln.Addr().String()}), "alice", "anything")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("PREAUTH upstream: %v, want ErrUnavailable", err)
	}
}

func TestRetrieveOfExpungedMessageIsErrGone(t *testing.T) {
	srv := startMem(t, message(100), message(200))
	b := newBackend(t, Options{Address: srv.Addr})
	s, other := login(t, b), login(t, b)
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
	s := login(t, newBackend(t, Options{Address: srv.Addr}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Noop(ctx); err == nil {
		t.Fatal("Noop with a cancelled context succeeded")
	}
}

func TestLoginMechanisms(t *testing.T) {
	srv := startMem(t, message(100))
	for _, mech := range []AuthMechanism{AuthAuto, AuthLogin, AuthPlain} {
		b := newBackend(t, Options{Address: srv.Addr, Auth: mech})
		s, err := loginAs(b, "alice", "secret")
		if err != nil {
			t.Errorf("auth %q: %v", mech, err)
			continue
		}
		if len(s.Messages()) != 1 {
			t.Errorf("auth %q: %d messages", mech, len(s.Messages()))
		}
		s.Close()
		if _, err := loginAs(b, "alice", "wrong"); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("auth %q with a wrong password: %v", mech, err)
		}
	}
}
