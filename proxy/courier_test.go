package proxy

// Courier IMAP as the fourth real upstream (startCourierUpstream, run by
// every forEachUpstream test), and the tests of what is Courier's own:
// the stand-in body it serves for a message another client expunged, its
// folders under the "INBOX." namespace, and its LF storage.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/couriertest"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// startCourierUpstream runs a private Courier IMAP server. Mail reaches
// it as a delivery agent writes it, CRLF stored as LF. A message another
// client expunged is reported only at the next NOOP, but meanwhile
// Courier serves a stand-in instead of the message, which popbridge
// answers with -ERR: so expungeLate is false.
func startCourierUpstream(t *testing.T) *upstream {
	s := couriertest.Start(t, couriertest.Options{Users: map[string]string{"alice": "secret"}})
	u := &upstream{name: "courier", addr: s.IMAPAddr, user: "alice", pass: "secret"}
	u.deliver = func(t *testing.T, raw []byte) { s.Deliver(t, "alice", raw) }
	u.dial = func(t *testing.T) *imapclient.Client { return dialIMAP(t, u) }
	return u
}

// courierRace delivers three messages, logs a POP3 client in through
// popbridge (whose upstream commands are recorded in sent), and has
// another IMAP client expunge message 2: Courier will not tell
// popbridge's session until its next NOOP.
func courierRace(t *testing.T, configure func(*config.Config)) (c *pop3test.Client, u *upstream, before []upstreamMessage, sent *testkit.LockedBuffer) {
	u = startCourierUpstream(t)
	deliverN(t, u, 3)
	before = upstreamState(t, u)
	relay := faultrelay.New(t, u.addr)
	sent = &testkit.LockedBuffer{}
	relay.Tap(faultrelay.Up, sent)
	c = pop3test.Dial(t, startProxy(t, relay.Addr, proxyOptions{configure: configure}).addr)
	c.Login(u.user, u.pass)
	other := u.dial(t)
	flagDeleted(t, other, before[1].UID)
	if err := other.UIDExpunge(imap.UIDSetNum(before[1].UID)).Close(); err != nil {
		t.Fatal(err)
	}
	return c, u, before, sent
}

// RETR and TOP of a message another client expunged answer -ERR, never
// Courier's stand-in; with seen: retr nothing is marked \Seen for it;
// the session goes on; and QUIT deletes exactly what was marked.
func TestCourierExpungeRaceAnswersERR(t *testing.T) {
	for _, readAhead := range []bool{true, false} {
		name := "read-ahead"
		if !readAhead {
			name = "no read-ahead"
		}
		t.Run(name, func(t *testing.T) {
			c, u, before, sent := courierRace(t, func(cfg *config.Config) {
				cfg.Policy.Seen = "retr"
				if !readAhead {
					cfg.Performance.ReadAheadBytes = -1
				}
			})
			for _, cmd := range []string{"RETR 2", "TOP 2 0", "RETR 2"} {
				if resp := c.Cmd(cmd); !strings.HasPrefix(resp, "-ERR") {
					t.Fatalf("%s of the expunged message = %q, want -ERR", cmd, resp)
				}
			}
			if got := c.Multi("RETR 3"); !bytes.Equal(got, before[2].Body) {
				t.Errorf("RETR 3 = %q", got)
			}
			c.OK("DELE 1")
			c.Quit()
			for _, line := range strings.Split(sent.String(), "\r\n") {
				if strings.Contains(line, "STORE") && strings.Contains(line, "\\Seen") && strings.Contains(line, " 2 ") {
					t.Errorf("popbridge marked the expunged message seen: %q", line)
				}
			}
			after := upstreamState(t, u)
			if len(after) != 1 || after[0].UID != before[2].UID || !hasFlag(after[0].Flags, imap.FlagSeen) {
				t.Errorf("after QUIT: %+v, want message 3 alone, \\Seen", after)
			}
		})
	}
}

// trashFolder is where delete: trash puts mail with the default
// trash_folder: "Trash", which Courier keeps under its personal namespace.
func (u *upstream) trashFolder() string {
	if u.name == "courier" {
		return "INBOX." + imapback.DefaultTrashFolder
	}
	return imapback.DefaultTrashFolder
}

// What a POP3 client sees of the message files Courier serves, as a
// delivery agent may have written them: the LIST size is always the
// octets Courier serves, and popbridge adds the final CRLF that POP3
// needs where Courier serves none (docs/interop.md).
func TestCourierStorageAsAPOP3ClientSeesIt(t *testing.T) {
	s := couriertest.Start(t, couriertest.Options{Users: map[string]string{"alice": "secret"}})
	for _, tc := range []struct {
		file, retr string
		listed     int
	}{
		{"Subject: lf\n\nline\n", "Subject: lf\r\n\r\nline\r\n", 21},
		{"Subject: no final\n\nlast line", "Subject: no final\r\n\r\nlast line\r\n", 30},
		{"Subject: bare cr\n\na\rb\n", "Subject: bare cr\r\n\r\na\rb\r\n", 25},
		// A CR that ends the file is left out (and not counted).
		{"Subject: cr at end\n\nlast\r", "Subject: cr at end\r\n\r\nlast\r\n", 26},
		// Each LF of the file is served as CRLF, so a CRLF as CR CR LF.
		{"Subject: crlf\r\n\r\nx\r\n", "Subject: crlf\r\r\n\r\r\nx\r\r\n", 23},
		{"Subject: nul\n\na\x00b\n", "Subject: nul\r\n\r\na\x00b\r\n", 21},
		{"Subject: 8bit \xe9\n\nx\n", "Subject: 8bit \xe9\r\n\r\nx\r\n", 22},
		{"Subject: header only", "Subject: header only\r\n", 20},
		{"", "", 0},
	} {
		t.Run(fmt.Sprintf("%q", tc.file), func(t *testing.T) {
			s.DeliverRaw(t, "alice", []byte(tc.file))
			u := &upstream{name: "courier", addr: s.IMAPAddr, user: "alice", pass: "secret"}
			c := pop3test.Dial(t, startProxy(t, u.addr, proxyOptions{}).addr)
			c.Login(u.user, u.pass)
			n, _ := c.Stat()
			var listed int
			fmt.Sscanf(c.OK(fmt.Sprint("LIST ", n)), "+OK %d %d", &n, &listed)
			if got := c.Multi(fmt.Sprint("RETR ", n)); string(got) != tc.retr || listed != tc.listed {
				t.Errorf("file %q: LIST %d, RETR %q; want %d, %q", tc.file, listed, got, tc.listed, tc.retr)
			}
			c.OK(fmt.Sprint("DELE ", n))
			c.Quit()
		})
	}
}

// A large message expunged by another client while popbridge streams it
// in ranges: Courier still serves the real octets of the file its session
// holds open, so the client gets the message whole; never a stand-in's
// octets followed by the terminating line. (Courier answers each ranged
// FETCH some 40 ms late, so the 1 MiB in 16 KiB ranges take seconds and
// the expunge surely comes in the middle.)
func TestCourierExpungeDuringTransfer(t *testing.T) {
	u := startCourierUpstream(t)
	big := testMessage(1, strings.Repeat("0123456789 the quick brown fox jumps over the lazy dog\r\n", 20000))
	u.deliver(t, big)
	before := upstreamState(t, u)
	relay := faultrelay.New(t, u.addr)
	sent := &testkit.LockedBuffer{}
	relay.Tap(faultrelay.Up, sent)
	c := pop3test.Dial(t, startProxy(t, relay.Addr, proxyOptions{configure: func(cfg *config.Config) { cfg.Performance.ChunkSize = 16 << 10 }}).addr)
	c.Conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	c.Login(u.user, u.pass)
	c.OK("RETR 1")
	first := make([]byte, 4096)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	other := u.dial(t)
	flagDeleted(t, other, before[0].UID)
	if err := other.UIDExpunge(imap.UIDSetNum(before[0].UID)).Close(); err != nil {
		t.Fatal(err)
	}
	mark := len(sent.String())
	// Up to the terminating line, or until popbridge closes the
	// connection.
	c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := first
	buf := make([]byte, 64<<10)
	var err error
	for !bytes.HasSuffix(got, []byte("\r\n.\r\n")) && err == nil {
		var n int
		n, err = c.Read(buf)
		got = append(got, buf[:n]...)
	}
	want := append(bytes.ReplaceAll(big, []byte("\r\n."), []byte("\r\n..")), ".\r\n"...)
	if !bytes.Equal(got, want) {
		t.Errorf("received %d octets (%v), differing from the message at %d; want the whole message, as Courier serves the file it holds open", len(got), err, commonPrefix(got, want))
	}
	if !strings.Contains(sent.String()[mark:], "UID FETCH") {
		t.Errorf("every range was fetched before the expunge: the test saw no race")
	}
}
