package imapback

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testkit"
)

// TOP of a large message fetches its header and about as much text as
// the lines asked for, in one FETCH: not a range of the whole message
// that holds mostly body. A client that reads further gets the rest of
// the message from where the text stopped, byte for byte.
func TestTopFetchesHeaderAndFirstLinesInOneFetch(t *testing.T) {
	msg := message(300 << 10)
	relay := faultrelay.New(t, startMem(t, msg).Addr)
	var up, down testkit.LockedBuffer
	relay.Tap(faultrelay.Up, &up)
	relay.Tap(faultrelay.Down, &down)
	s := login(t, newBackend(t, Options{Address: relay.Addr}))
	sentBefore, gotBefore := len(up.String()), len(down.String())

	rc, err := s.Retrieve(context.Background(), 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 200)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if !bytes.Equal(head, msg[:200]) {
		t.Fatalf("TOP read %q, want %q", head, msg[:200])
	}
	cmds := up.String()[sentBefore:]
	if strings.Count(cmds, "FETCH") != 1 || !strings.Contains(cmds, "BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.240>") {
		t.Errorf("TOP 3 sent %q, want one FETCH of the header and 240 octets of text", cmds)
	}
	if got := len(down.String()) - gotBefore; got > 1024 {
		t.Errorf("TOP 3 of a message of %d octets received %d octets, want under 1 KiB", len(msg), got)
	}

	// Reading on crosses from the first text into ranges of BODY[].
	rc, err = s.Retrieve(context.Background(), 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(all, msg) {
		t.Fatalf("reading the TOP stream to its end gave %d octets (%v), want the %d of the message", len(all), err, len(msg))
	}
}

// A TOP of a large message that another client expunged meanwhile gives
// nothing but the message's own header: Courier's stand-in, whose size
// is not the listed one, and Dovecot's NIL make it gone before the client
// sees an octet; Cyrus serves the real octets.
func TestTopOfLargeMessageExpungedMeanwhile(t *testing.T) {
	first, second := message(200<<10), message(300)
	header := first[:bytes.Index(first, []byte("\r\n\r\n"))+4]
	for _, srv := range raceServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := startFilled(t, srv, first, second)
			s := login(t, newBackend(t, Options{Address: addr}))
			expunge(t, otherDevice(t, addr), imap.UIDSetNum(s.Messages()[0].UID))
			rc, err := s.Retrieve(context.Background(), 0, 0)
			var got []byte
			if err == nil {
				got = make([]byte, len(header))
				_, err = io.ReadFull(rc, got)
				rc.Close()
			}
			if srv.name == "cyrus" {
				if err != nil || !bytes.Equal(got, header) {
					t.Errorf("TOP 0 of the expunged message: %v, %q; want its header", err, got)
				}
			} else if !errors.Is(err, ErrGone) {
				t.Errorf("TOP 0 of the expunged message: %v, %q; want ErrGone", err, got)
			}
			if got := retrieveAll(t, s, 1); !bytes.Equal(got, second) {
				t.Errorf("the next message: %q", got)
			}
		})
	}
}
