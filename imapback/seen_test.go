package imapback

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// writeLog records each Write as one segment.
type writeLog struct {
	net.Conn
	writes []string
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// A held command goes out in one write with the next one, in order; a
// release sends it alone; without holding, writes pass straight through.
func TestHeldConnSendsTheHeldCommandWithTheNext(t *testing.T) {
	log := &writeLog{}
	c := &heldConn{Conn: log}
	c.hold()
	for _, part := range []string{"T1 UID STORE 4 ", "+FLAGS.SILENT (\\Seen)\r\n"} {
		if n, err := c.Write([]byte(part)); n != len(part) || err != nil {
			t.Fatalf("held write: %d, %v", n, err)
		}
	}
	c.unhold()
	if len(log.writes) != 0 {
		t.Fatalf("sent while held: %q", log.writes)
	}
	fetch := "T2 UID FETCH 7 (UID BODY.PEEK[])\r\n"
	if n, err := c.Write([]byte(fetch)); n != len(fetch) || err != nil {
		t.Fatalf("write behind the held command: %d, %v (want %d)", n, err, len(fetch))
	}
	c.Write([]byte("T3 NOOP\r\n"))
	c.hold()
	c.Write([]byte("T4 UID STORE 7 +FLAGS.SILENT (\\Seen)\r\n"))
	c.unhold()
	if err := c.release(); err != nil {
		t.Fatal(err)
	}
	c.release() // nothing held: no write
	want := []string{
		"T1 UID STORE 4 +FLAGS.SILENT (\\Seen)\r\n" + fetch,
		"T3 NOOP\r\n",
		"T4 UID STORE 7 +FLAGS.SILENT (\\Seen)\r\n",
	}
	if !slices.Equal(log.writes, want) {
		t.Errorf("writes:\n%q\nwant\n%q", log.writes, want)
	}
}

// RETRs in a row, at random, keep their \Seen flags back: the next
// command that is not a RETR's (a TOP here) carries one STORE for all of
// them, and no more than seenHoldCount messages wait for it.
func TestRetrsInARowShareOneSeenStore(t *testing.T) {
	msgs := make([][]byte, seenHoldCount+6)
	for i := range msgs {
		msgs[i] = message(100 + i)
	}
	srv := startMem(t, msgs...)
	u := tapUpstream(t, srv.Addr)
	s := login(t, newBackend(t, Options{Address: u.Addr}))
	read := func(i, lines int) {
		t.Helper()
		rc, err := s.Retrieve(context.Background(), i, lines)
		if err != nil {
			t.Fatalf("Retrieve(%d, %d): %v", i, lines, err)
		}
		if _, err := io.ReadAll(rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if lines < 0 {
			s.Retrieved(i)
		}
	}
	for _, i := range []int{4, 0, 2} {
		read(i, -1)
	}
	if n := u.count("UID STORE"); n != 0 {
		t.Fatalf("%d STOREs sent with RETRs in a row, want none yet", n)
	}
	read(1, 0)
	if n := u.count("UID STORE"); n != 1 {
		t.Fatalf("%d STOREs after the TOP, want one for the three RETRs", n)
	}
	flags := mailboxFlags(t, srv.Addr, "INBOX")
	for i, want := range []bool{true, false, true, false, true} {
		if got := slices.Contains(flags[s.Messages()[i].UID], imap.FlagSeen); got != want {
			t.Errorf("message %d \\Seen: %v, want %v", i, got, want)
		}
	}
	// Backwards, so that no read-ahead batch takes them: the RETR after
	// seenHoldCount held ones carries their STORE.
	for i := len(msgs) - 1; i > len(msgs)-1-seenHoldCount-1; i-- {
		read(i, -1)
	}
	if n := u.count("UID STORE"); n != 2 {
		t.Errorf("%d STOREs after %d more RETRs, want 2", n, seenHoldCount+1)
	}
}
