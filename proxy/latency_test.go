package proxy

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/pop3test"
)

// latencyRelay forwards TCP to a target and delays every chunk by a fixed
// time in each direction, as a distant upstream would. It counts the
// command lines popbridge sends that contain a given string.
type latencyRelay struct {
	addr  string
	delay time.Duration // one way
	match []byte
	count atomic.Int64
}

func startLatencyRelay(t *testing.T, target string, rtt time.Duration, match string) *latencyRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &latencyRelay{addr: ln.Addr().String(), delay: rtt / 2, match: []byte(match)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); r.pipe(up, down, true) }()
			go func() { defer wg.Done(); r.pipe(down, up, false) }()
		}
	}()
	return r
}

// pipe copies src to dst, each chunk delay after it was read. Chunks are
// queued, so the delay adds latency without limiting throughput.
func (r *latencyRelay) pipe(dst, src net.Conn, count bool) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		var line []byte // the part of a command line not yet complete
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				if count {
					line = append(line, buf[:n]...)
					if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
						r.count.Add(int64(bytes.Count(line[:i], r.match)))
						line = append(line[:0], line[i+1:]...)
					}
				}
				q <- chunk{time.Now().Add(r.delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer dst.Close()
	defer src.Close()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			for range q {
			}
			return
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
		relay := startLatencyRelay(t, u.addr, 50*time.Millisecond, "UID FETCH")
		addr := startProxy(t, relay.addr, proxyOptions{}).addr

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
		t.Logf("%d pipelined RETRs through a 50 ms upstream took %v, with %d UID FETCH commands in all", n, time.Since(start), relay.count.Load())
		if resp := c.Quit(); resp != "+OK Logging out" {
			t.Fatalf("QUIT = %q", resp)
		}
		// Batches of 1, 2, 4, ... 128 messages: 15 FETCHes, plus the
		// snapshot's.
		if got := relay.count.Load(); got > 20 {
			t.Errorf("popbridge sent %d UID FETCH commands for %d messages, want at most 20", got, n)
		}
		for i, m := range upstreamState(t, u) {
			if !hasFlag(m.Flags, imap.FlagSeen) {
				t.Fatalf("message %d is not \\Seen after RETR", i+1)
			}
		}
	})
}
