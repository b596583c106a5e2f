package proxy

// Sessions through an upstream 50 ms away: the typical session of a
// device that checks for new mail (how many times popbridge waits for the
// upstream, and how long the session takes), and a client that pipelines
// RETR for many messages (fetched in batches).

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// maxDistantRoundTrips is what the typical session may cost (issue 19).
// popbridge waits for the greeting, the login (AUTHENTICATE PLAIN with
// an initial response), the SELECT and the snapshot's FETCH sent
// together, the batch of the 20 messages, and QUIT's \Seen STORE; then
// it sends LOGOUT, after the client's QUIT answer.
const maxDistantRoundTrips = 5

// A device logs in, lists the unique-ids, retrieves the 20 newest of
// 1,000 messages one RETR at a time and quits, through Dovecot 50 ms
// away. Every message arrives whole, exactly those 20 are \Seen, and
// popbridge waits for the upstream at most maxDistantRoundTrips times
// (faultrelay.RoundTrips: each time it sent after hearing from the
// upstream), the LOGOUT after the client's QUIT answer included. The
// time the client saw is logged, not asserted: the machine may be busy.
func TestTypicalSessionThroughDistantUpstreamTakesFewRoundTrips(t *testing.T) {
	u := startDovecotUpstream(t)
	const n, newest = 1000, 20
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = testMessage(i+1, fmt.Sprintf("Body %d.\r\n%s\r\n", i+1, strings.Repeat("y", 200+i%2000)))
		u.deliver(t, msgs[i])
	}
	u.dial(t) // Dovecot indexes the new mail now, not in the session timed
	relay := faultrelay.New(t, u.addr)
	relay.SetLatency(25 * time.Millisecond) // each way
	// Forwarding the client address (upstream.forward_client_address, on
	// by default) adds the IMAP ID exchange before the login: one round
	// trip more, which go-imap cannot pipeline with the login yet.
	noForward := false
	addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.ForwardClientAddress = &noForward
	}}).addr

	start := time.Now()
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	if uidl := c.Multi("UIDL"); bytes.Count(uidl, []byte("\r\n")) != n {
		t.Fatalf("UIDL listed %d messages, want %d", bytes.Count(uidl, []byte("\r\n")), n)
	}
	for i := n - newest; i < n; i++ {
		if got := c.Multi("RETR " + strconv.Itoa(i+1)); !bytes.Equal(got, msgs[i]) {
			t.Fatalf("RETR %d = %q, want %q", i+1, got, msgs[i])
		}
	}
	if resp := c.Quit(); resp != "+OK Logging out" {
		t.Fatalf("QUIT = %q", resp)
	}
	elapsed := time.Since(start)
	waitClosedUpstream(t, relay)
	total := relay.RoundTrips()
	t.Logf("typical session through a 50 ms upstream: %v until QUIT's answer, %d upstream round trips", elapsed, total)
	if total > maxDistantRoundTrips {
		t.Errorf("the session cost %d upstream round trips, want at most %d", total, maxDistantRoundTrips)
	}
	for i, m := range upstreamState(t, u) {
		if want := i >= n-newest; hasFlag(m.Flags, imap.FlagSeen) != want {
			t.Errorf("message %d: \\Seen is %v, want %v", i+1, !want, want)
		}
	}

	// The same device deletes what it downloaded: the UPDATE's UID STORE
	// and UID EXPUNGE go out together, and exactly those 20 go.
	before := relay.RoundTrips()
	c = pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	for i := n - newest; i < n; i++ {
		c.OK("DELE " + strconv.Itoa(i+1))
	}
	if resp := c.Quit(); resp != fmt.Sprintf("+OK Logging out, %d messages deleted", newest) {
		t.Fatalf("QUIT = %q", resp)
	}
	waitClosedUpstream(t, relay)
	// The greeting, the login, the snapshot and the UPDATE, then the
	// LOGOUT: a STORE waited for before the EXPUNGE would make 5.
	if got := relay.RoundTrips() - before; got > 4 {
		t.Errorf("the deleting session cost %d upstream round trips, want at most 4", got)
	}
	left := upstreamState(t, u)
	if len(left) != n-newest {
		t.Fatalf("%d messages left upstream, want %d", len(left), n-newest)
	}
	for i, m := range left {
		if !bytes.Equal(m.Body, msgs[i]) {
			t.Fatalf("message %d left upstream is not the one delivered %d-th", i+1, i+1)
		}
	}
}

// waitClosedUpstream waits until the session's upstream connection is
// closed: its LOGOUT comes after the client's QUIT answer.
func waitClosedUpstream(t *testing.T, relay *faultrelay.Relay) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); relay.Open() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upstream connection is still open 10 s after QUIT")
		}
	}
}

// A client that pipelines RETR for 1,000 small messages through an
// upstream 50 ms away gets every message byte for byte, and popbridge
// fetches them with a few batched UID FETCH commands, not one per message
// (which alone would take 1,000 round trips: over 50 s). How fast it is
// is measured by the benchmark (BENCHMARKS.md), not asserted here.
func TestPipelinedRetrievalThroughDistantUpstreamIsBatched(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		const n = 1000
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = testMessage(i+1, fmt.Sprintf("Body %d.\r\n.dot line\r\n%s\r\n", i+1, strings.Repeat("x", i%300)))
			u.deliver(t, msgs[i])
		}
		// 25 ms each way: an upstream 50 ms away.
		relay := faultrelay.New(t, u.addr)
		relay.SetLatency(25 * time.Millisecond)
		fetches := relay.Count(faultrelay.Up, "UID FETCH")
		addr := startProxy(t, relay.Addr, proxyOptions{}).addr

		start := time.Now()
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		var cmds strings.Builder
		for i := 1; i <= n; i++ {
			cmds.WriteString("RETR " + strconv.Itoa(i) + "\r\n")
		}
		c.Send(strings.TrimSuffix(cmds.String(), "\r\n"))
		for i := range msgs {
			if status := c.Line(); !strings.HasPrefix(status, "+OK") {
				t.Fatalf("RETR %d: %s", i+1, status)
			}
			if got := c.Data(); !bytes.Equal(got, msgs[i]) {
				t.Fatalf("RETR %d = %q, want %q", i+1, got, msgs[i])
			}
		}
		t.Logf("%d pipelined RETRs through a 50 ms upstream took %v, with %d UID FETCH commands in all", n, time.Since(start), fetches.Load())
		if resp := c.Quit(); resp != "+OK Logging out" {
			t.Fatalf("QUIT = %q", resp)
		}
		// Batches of 1, 2, 4, ... 128 messages: 15 FETCHes, plus the
		// snapshot's.
		if got := fetches.Load(); got > 20 {
			t.Errorf("popbridge sent %d UID FETCH commands for %d messages, want at most 20", got, n)
		}
		for i, m := range upstreamState(t, u) {
			if !hasFlag(m.Flags, imap.FlagSeen) {
				t.Fatalf("message %d is not \\Seen after RETR", i+1)
			}
		}
	})
}
