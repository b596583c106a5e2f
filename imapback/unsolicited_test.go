package imapback

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// startFlagNoisyServer runs a scripted IMAP server whose first answer to
// each FETCH starts with a flag update for a requested message, as a
// server does when another client changed its flags meanwhile. go-imap
// takes such an update for the message's answer and drops the real one.
// With nilBody it answers the body FETCH of message 1 with NIL, as
// Dovecot does for a message another client expunged.
func startFlagNoisyServer(t *testing.T, msgs []string, nilBody bool) string {
	t.Helper()
	srv, err := testkit.ServeConns(time.Minute, func(nc net.Conn) {
		r := bufio.NewReader(nc)
		fmt.Fprintf(nc, "* OK [CAPABILITY IMAP4rev1 UIDPLUS] scripted\r\n")
		noisy := map[string]bool{"size": true, "body": true}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				return
			}
			tag, cmd := f[0], strings.ToUpper(f[1])
			switch {
			case cmd == "CAPABILITY":
				fmt.Fprintf(nc, "* CAPABILITY IMAP4rev1 UIDPLUS\r\n")
			case cmd == "SELECT":
				fmt.Fprintf(nc, "* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* FLAGS (\\Seen \\Deleted)\r\n"+
					"* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] ok\r\n", len(msgs))
			case cmd == "UID" && strings.Contains(line, "RFC822.SIZE"):
				if noisy["size"] {
					noisy["size"] = false
					fmt.Fprintf(nc, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", len(msgs), len(msgs))
				}
				for i, m := range msgs {
					uid := fmt.Sprint(i + 1)
					if f[3] == "1:*" || strings.Contains(","+f[3]+",", ","+uid+",") {
						fmt.Fprintf(nc, "* %d FETCH (UID %d RFC822.SIZE %d)\r\n", i+1, i+1, len(m))
					}
				}
			case cmd == "UID" && strings.Contains(line, "BODY.PEEK[]"):
				if noisy["body"] {
					noisy["body"] = false
					fmt.Fprintf(nc, "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n")
				}
				section := "BODY[]"
				if strings.Contains(line, "BODY.PEEK[]<0.") {
					section = "BODY[]<0>"
				}
				if nilBody {
					fmt.Fprintf(nc, "* 1 FETCH (UID 1 %s NIL)\r\n%s OK [EXPUNGEISSUED] done\r\n", section, tag)
					continue
				}
				fmt.Fprintf(nc, "* 1 FETCH (UID 1 %s {%d}\r\n%s)\r\n", section, len(msgs[0]), msgs[0])
			case cmd == "LOGOUT":
				fmt.Fprintf(nc, "* BYE bye\r\n%s OK done\r\n", tag)
				return
			}
			fmt.Fprintf(nc, "%s OK done\r\n", tag)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv.Addr
}

// Another client's flag change reported during a FETCH neither hides a
// message nor loses its size: popbridge asks again.
func TestFlagUpdatesDuringFetchLoseNothing(t *testing.T) {
	msgs := []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nsecond body\r\n"}
	// RETR in ranges (no read-ahead): the script answers only BODY[].
	b := newBackend(t, Options{Address: startFlagNoisyServer(t, msgs, false), ChunkSize: 1024, ReadAheadBytes: -1})
	s := login(t, b)
	got := s.Messages()
	if len(got) != 2 || got[0].Size != int64(len(msgs[0])) || got[1].Size != int64(len(msgs[1])) {
		t.Fatalf("snapshot = %+v, want sizes %d and %d", got, len(msgs[0]), len(msgs[1]))
	}
	rc, err := s.Retrieve(context.Background(), 0, -1)
	if err != nil {
		t.Fatalf("Retrieve after a flag update: %v", err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(body) != msgs[0] {
		t.Errorf("Retrieve = %q, %v; want %q", body, err, msgs[0])
	}
}

// A NIL body for a message, even after a flag update for it, means the
// message is gone, not that the upstream failed.
func TestNilBodyAfterFlagUpdateIsGone(t *testing.T) {
	msgs := []string{"Subject: one\r\n\r\nfirst\r\n"}
	b := newBackend(t, Options{Address: startFlagNoisyServer(t, msgs, true), ChunkSize: 1024, ReadAheadBytes: -1})
	s := login(t, b)
	if _, err := s.Retrieve(context.Background(), 0, -1); !errors.Is(err, ErrGone) {
		t.Errorf("Retrieve of a message answered with NIL: %v, want ErrGone", err)
	}
}
