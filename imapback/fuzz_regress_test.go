package imapback

import (
	"context"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// Found by FuzzUpstreamSession: a capability list with a "(" after a
// space makes go-imap's reader goroutine (v2.0.0-beta.8 and beta.9,
// readCapabilities) spin forever on a byte it never consumes. The greeting
// here, an untagged CAPABILITY or a [CAPABILITY ...] code in LOGIN's OK
// all reach it. Closing the connection does not end the loop, so the
// login never returns, whatever its timeout, and a CPU stays busy: one
// hostile upstream (or anyone in the middle of a plaintext connection)
// takes a core and a POP3 session per login. The login must fail within
// its dial timeout instead.
func TestUpstreamCapabilityParenthesis(t *testing.T) {
	srv := hostileimap.Start(t, hostileimap.Script{Caps: "IMAP4rev1 (UIDPLUS"})
	b := newBackend(t, Options{Address: srv.Addr, Auth: AuthLogin, DialTimeout: 500 * time.Millisecond, CommandTimeout: 500 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		s, err := b.Login(context.Background(), alice, b.DefaultPolicy())
		if s != nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("login succeeded after a capability list go-imap cannot parse")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("login still running 5 s after a greeting with \"(\" in its capability list (go-imap's reader spins)")
	}
}
