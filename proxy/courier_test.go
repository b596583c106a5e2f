package proxy

// Courier IMAP as the fourth real upstream (startCourierUpstream, run by
// every forEachUpstream test), and the tests of what is Courier's own:
// the stand-in body it serves for a message another client expunged, its
// folders under the "INBOX." namespace, and its LF storage.

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/couriertest"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
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
func courierRace(t *testing.T, configure func(*Config)) (c *pop3test.Client, u *upstream, before []upstreamMessage, sent *testkit.LockedBuffer) {
	u = startCourierUpstream(t)
	deliverN(t, u, 3)
	before = upstreamState(t, u)
	relay := faultrelay.New(t, u.addr)
	sent = &testkit.LockedBuffer{}
	relay.Tap(faultrelay.Up, sent)
	c = pop3test.Dial(t, startProxyAt(t, relay.Addr, configure))
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
			c, u, before, sent := courierRace(t, func(cfg *Config) {
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
