package proxy

// What an idle authenticated session holds in popbridge's process.

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// idleSessions is how many sessions the measurement opens: enough that
// the heap's noise (a few KiB) vanishes per session.
const idleSessions = 1000

// An idle POP3 session, logged in and answered STAT, holds at most
// maxIdleSessionBytes of heap and stack in popbridge (issue 19: 10,000
// of them in one process). The in-memory upstream runs in the same
// process, so what its side of the connections holds is measured alone
// with as many direct IMAP sessions and taken off.
func TestIdleSessionMemory(t *testing.T) {
	u := startMemUpstream(t)
	deliverN(t, u, 10)
	// All from one address, and more than a low descriptor limit allows.
	addr := startProxy(t, u.addr, proxyOptions{noLogs: true, configure: func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP, c.Limits.MaxConnections = -1, -1
	}}).addr

	upstreamOnly := heldPerSession(t, func() (net.Conn, error) {
		return openIdleConn(u.addr, "a LOGIN alice secret\r\nb SELECT INBOX\r\nc UID FETCH 1:* (UID RFC822.SIZE)\r\n", "c OK")
	})
	through := heldPerSession(t, func() (net.Conn, error) {
		return openIdleConn(addr, "USER alice\r\nPASS secret\r\nSTAT\r\n", "+OK 10 ")
	})
	per := through - upstreamOnly
	t.Logf("idle session: %d octets held in popbridge (%d with the upstream's side, %d that side alone)", per, through, upstreamOnly)
	limit := int64(maxIdleSessionBytes)
	if testkit.Race {
		limit = maxIdleSessionBytesRace
	}
	if per > limit {
		t.Errorf("an idle session holds %d octets, want at most %d", per, limit)
	}
}

// The bound, and the bound under the race detector, which makes
// allocations and stacks larger (34 KiB there, 25 KiB without). A
// session holding the 16 KiB write buffer of its POP3 connection while
// idle passes neither; each leaves 2 KiB or more above what one holds.
const (
	maxIdleSessionBytes     = 27 << 10
	maxIdleSessionBytesRace = 40 << 10
)

// heldPerSession opens idleSessions connections with open and returns
// the heap and stack in use they add, per connection.
func heldPerSession(t *testing.T, open func() (net.Conn, error)) int64 {
	t.Helper()
	before := inUse(false)
	conns := make([]net.Conn, 0, idleSessions)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idleSessions {
		c, err := open()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond) // the sessions' goroutines settle
	return (inUse(true) - before) / idleSessions
}

// inUse returns the heap and stacks in use after a collection, or, with
// asIdle, the stacks before it: a collection shrinks the stacks that grew
// deep and then went idle, which an idle process, where none runs, keeps.
func inUse(asIdle bool) int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	stacks := ms.StackInuse
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if !asIdle {
		stacks = ms.StackInuse
	}
	return int64(ms.HeapInuse + stacks)
}

// openIdleConn sends script and reads lines up to one that starts with
// last.
func openIdleConn(addr, script, last string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(script)); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, 256)
	for range 100 {
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.HasPrefix(line, last) {
			c.SetDeadline(time.Time{})
			return c, nil
		}
	}
	c.Close()
	return nil, fmt.Errorf("no line starting with %q", last)
}
