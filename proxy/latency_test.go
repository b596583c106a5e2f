package proxy

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
)

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
