package imapback

import (
	"net"
	"slices"
	"testing"
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
