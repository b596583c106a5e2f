package proxy

// Tests of promises that no other test would notice breaking: the \Seen
// of the last RETR when a client drops without QUIT, the write timeout
// against a client that stops reading, and max_age_days at its boundary.
// Each drives a real POP3 connection through popbridge to a real upstream
// and checks what the upstream holds afterwards.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// waitSessionEnd waits until popbridge has closed its upstream
// connections through relay: the sign that the POP3 session is over.
func waitSessionEnd(t *testing.T, relay *faultrelay.Relay, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); relay.Open() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the session still holds its upstream connection %v later", within)
		}
	}
}

// Under seen: retr, read-ahead lets a \Seen STORE wait for the next
// upstream command, and after the last RETR there is none: a client that
// then drops the connection without QUIT must still find every message it
// retrieved \Seen, and nothing deleted.
func TestDroppedConnectionKeepsTheSeenOfTheLastRetr(t *testing.T) {
	t.Parallel()
	u := startDovecotUpstream(t)
	msgs := deliverN(t, u, 3)
	relay := faultrelay.New(t, u.addr)
	addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Seen = "retr" }}).addr

	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	for i, m := range msgs {
		if got := c.Multi(fmt.Sprintf("RETR %d", i+1)); !bytes.Equal(got, m) {
			t.Fatalf("RETR %d = %q, want %q", i+1, got, m)
		}
	}
	c.OK("DELE 1")
	c.Conn.Close()
	waitSessionEnd(t, relay, 15*time.Second)

	state := upstreamState(t, u)
	if len(state) != len(msgs) {
		t.Fatalf("%d messages upstream after a dropped connection, want all %d", len(state), len(msgs))
	}
	for i, m := range state {
		if !hasFlag(m.Flags, imap.FlagSeen) || hasFlag(m.Flags, imap.FlagDeleted) {
			t.Errorf("message %d has flags %v, want \\Seen (it was retrieved) and not \\Deleted (no QUIT)", i+1, m.Flags)
		}
	}
}

// A client that sends RETR for a message of several MiB and then reads
// nothing fills the socket buffers; each write then waits at most
// limits.write_timeout, after which popbridge closes the connection and
// the session ends: no goroutine is left, the upstream connection is
// closed, and nothing changed upstream (no \Seen, as the RETR never
// completed, and no delete, as there was no QUIT).
func TestClientThatStopsReadingIsClosedAfterTheWriteTimeout(t *testing.T) {
	// Not parallel: the goroutine check must see this test's alone.
	const writeTimeout = 500 * time.Millisecond
	u := startDovecotUpstream(t)
	big := testMessage(1, strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n", 16<<20/70))
	u.deliver(t, big)
	u.deliver(t, testMessage(2, "small\r\n"))
	relay := faultrelay.New(t, u.addr)
	addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) { c.Limits.WriteTimeout = writeTimeout }}).addr
	// A first connection makes sure the listener's accept loop runs
	// before the goroutines are counted.
	pop3test.Dial(t, addr).Conn.Close()
	before := goleak.IgnoreCurrent()

	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	c.OK("DELE 2")
	c.Send("RETR 1")
	sent := time.Now()
	waitSessionEnd(t, relay, writeTimeout+15*time.Second)
	// Each write may wait the whole timeout, so the last one, which
	// came after the RETR, cannot have given up sooner.
	if d := time.Since(sent); d < writeTimeout {
		t.Errorf("the session ended %v after RETR, before the write timeout of %v", d, writeTimeout)
	}

	// What reached the client is a cut transfer followed by the close.
	// The socket buffers on both sides hold a few MiB at most (a
	// receive buffer grows only while its reader reads), much less than
	// the message.
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c.Conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the client connection is still open after the session ended (%d octets read)", len(got))
	}
	if len(got) >= len(big) || bytes.HasSuffix(got, []byte("\r\n.\r\n")) {
		t.Errorf("the client got %d octets of a %d-octet message, ending %q: want a cut transfer", len(got), len(big), got[max(len(got)-5, 0):])
	}
	goleak.VerifyNone(t, before)

	state := upstreamState(t, u)
	if len(state) != 2 {
		t.Fatalf("%d messages upstream, want both", len(state))
	}
	for i, m := range state {
		if len(m.Flags) != 0 {
			t.Errorf("message %d has flags %v, want none", i+1, m.Flags)
		}
	}
}

// max_age_days N shows mail whose internal date falls on the UTC day N
// days before today or later: popbridge sends SEARCH SINCE that date,
// which the server compares with the date of each internal date in its
// own time zone (UTC for both upstreams here). Mail exactly N days old,
// and from the first second of that day, is served; mail N+1 days old,
// and from the last second of the day before, is not.
func TestMaxAgeDaysAtItsBoundary(t *testing.T) {
	const days = 7
	for _, kind := range upstreams[:2] { // memimap and Dovecot
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			// A test that runs across midnight UTC sees the boundary move:
			// run it again then.
			for range 2 {
				if maxAgeBoundary(t, kind.start(t), days) {
					return
				}
			}
			t.Fatal("the date changed during both runs")
		})
	}
}

// maxAgeBoundary runs one round of TestMaxAgeDaysAtItsBoundary; false
// means that the date changed meanwhile and nothing was checked.
func maxAgeBoundary(t *testing.T, u *upstream, days int) bool {
	now := time.Now().UTC()
	y, m, d := now.Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	ages := []struct {
		name string
		date time.Time
		kept bool
	}{
		{"now", now, true},
		{"exactly N days old", now.Add(-time.Duration(days) * 24 * time.Hour), true},
		{"first second N days ago", today.AddDate(0, 0, -days), true},
		{"last second N+1 days ago", today.AddDate(0, 0, -days).Add(-time.Second), false},
		{"exactly N+1 days old", now.Add(-time.Duration(days+1) * 24 * time.Hour), false},
	}
	imc := u.dial(t)
	var want []string
	for i, a := range ages {
		raw := testMessage(i+1, a.name+"\r\n")
		cmd := imc.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: a.date})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if a.kept {
			want = append(want, a.name)
		}
	}
	addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.MaxAgeDays = days }}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	n, _ := c.Stat()
	var got []string
	for i := 1; i <= n; i++ {
		_, body, _ := bytes.Cut(c.Multi(fmt.Sprintf("TOP %d 1", i)), []byte("\r\n\r\n"))
		got = append(got, strings.TrimSpace(string(body)))
	}
	c.Quit()
	if time.Now().UTC().YearDay() != now.YearDay() {
		return false
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("max_age_days %d served %q, want %q", days, got, want)
	}
	return true
}
