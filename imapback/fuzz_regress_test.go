package imapback

// The bugs FuzzUpstreamSession found, each as a regular test.

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

// Found by FuzzUpstreamSession's delivery check: a batch FETCH asks for
// BODY.PEEK[], and readWholeBody takes the first body section of the
// answer whatever it is. An upstream that answers with another section
// (BODY[TEXT]) or a part of the body (BODY[]<5>) of the listed length
// has it delivered as the whole message, where the ranged path
// (readBodyChunk) refuses an answer at another offset. Only BODY[] (or
// BODY[]<0>) may be taken as the message.
func TestUpstreamBatchTakesOnlyTheWholeBody(t *testing.T) {
	for _, item := range []string{"BODY[]<5>", "BODY[TEXT]"} {
		t.Run(item, func(t *testing.T) {
			// One message of 21 octets, answered with 21 other octets.
			runUpstreamSession(t, seedMax16, []byte("\x0a"),
				[]byte("BATCH\n* 1 FETCH (UID 4 "+item+" {*}XXXXXXXXXXXXXXXXXXXXX\x01)\r\n$T OK Fetch completed.\r\n"))
		})
	}
}

// Found by FuzzUpstreamSession's header check: a %m snapshot asks for
// BODY.PEEK[HEADER] beside each size, and hashed whatever body section
// the answer held. An upstream answering with another section (BODY[TEXT],
// a part, a range) had that hashed into the message's UIDL, which the
// next session, answered properly, changes: the POP3 client downloads the
// message again. Only BODY[HEADER] may be hashed; for a message without
// it the header is fetched on its own, and hashed from there.
func TestUpstreamSnapshotHashesOnlyTheHeader(t *testing.T) {
	for _, item := range []string{"BODY[TEXT]", "BODY[1]", "BODY[HEADER]<0>", "BODY[HEADER.FIELDS (X)]"} {
		t.Run(item, func(t *testing.T) {
			// Two messages (UIDs 4 and 7); the second's header answered as
			// item: its UIDL must be the hash of the header the FETCH of
			// the missing headers brings.
			runUpstreamSession(t, seedHead, []byte(seedTwo), []byte(seedSnap+seedFirst+
				"* 2 FETCH (UID 7 RFC822.SIZE 41 "+item+" {*}Subject: text\r\n\r\n\x01)\r\n"+seedOK))
		})
	}
}

// Found by FuzzUpstreamSession under the race detector: a header literal
// of a %m snapshot announced longer than the upstream sends. When the
// command times out and the connection is closed under it, the hash's
// read fails, go-imap's reader goroutine takes the connection's buffer
// back, and the session's next step (the next item, or closing the
// command) read what was left of the literal from that buffer too: a
// data race inside the client. The FETCH must end at the failed read, as
// a body literal cut short does.
func TestUpstreamSnapshotHeaderCutShort(t *testing.T) {
	runUpstreamSession(t, seedHead, []byte(seedTwo), []byte(seedSnap+seedFirst+
		"* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] {200}\r\nSubject: m1\r\n)\r\n"+seedOK))
}
