package imapback

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// The attacks of a hostile upstream, each through go-imap's client on a
// boundedConn: every one must end in the bound's error, having cost the
// process little memory.

// maxAttackHeap bounds how much one attack may grow the process's heap
// (the hostile server's included): far below the hundreds of megabytes
// each attack made go-imap's client hold without bounds.
const maxAttackHeap = 32 << 20

// dialBounded connects go-imap's client to srv through a boundedConn
// and logs in.
func dialBounded(t *testing.T, srv *hostileimap.Server, lim ResponseLimits) (*imapclient.Client, *boundedConn) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	bc := newBoundedConn(nc, lim)
	c := imapclient.New(bc, nil)
	t.Cleanup(func() { c.Close() })
	if err := c.Login("user", "pass").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c, bc
}

// heapGrowth runs f and returns how far the heap grew beyond what it
// held before, at most, sampled every millisecond and at the end.
func heapGrowth(f func()) uint64 {
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	runtime.GC()
	base := heap()
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var p uint64
		for {
			p = max(p, heap())
			select {
			case <-done:
				peak <- p
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	p := max(<-peak, heap())
	if p < base {
		return 0
	}
	return p - base
}

// withinAttackHeap runs the attack f and fails t if it grew the heap by
// more than maxAttackHeap.
func withinAttackHeap(t *testing.T, f func()) {
	t.Helper()
	n := heapGrowth(f)
	t.Logf("heap growth %d octets", n)
	if n > maxAttackHeap {
		t.Errorf("the attack grew the heap by %d octets", n)
	}
}

// fetchFlood answers any FETCH with 2,000,000 FETCH responses, whatever
// it asked for and whatever EXISTS said.
var fetchFlood = hostileimap.Script{Fetch: func(w *hostileimap.Writer, _ string) {
	for i := 1; i <= 2_000_000 && w.Err() == nil; i++ {
		w.Line("* %d FETCH (UID %d RFC822.SIZE 10)", i, i)
	}
}}

// checkBound checks that err (a command's) came from passing bound.
func checkBound(t *testing.T, err error, bc *boundedConn, bound Bound) {
	t.Helper()
	if err == nil {
		t.Fatal("the command succeeded")
	}
	var be *BoundError
	if !errors.As(bc.Err(), &be) || be.Bound != bound {
		t.Fatalf("command failed with %v; the connection's bound error is %v, want a %s bound", err, bc.Err(), bound)
	}
}

// 2,000,000 FETCH responses to a FETCH of one message: stopped by the
// count the session expects (309 MB seen before the fix).
func TestBoundHostileFetchFlood(t *testing.T) {
	srv := hostileimap.Start(t, fetchFlood)
	c, bc := dialBounded(t, srv, ResponseLimits{})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bc.Expect(snapshotExpectation(1))
	var got int
	var err error
	withinAttackHeap(t, func() {
		cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			if _, err := m.Collect(); err == nil {
				got++
			}
		}
		err = cmd.Close()
	})
	checkBound(t, err, bc, BoundResponses)
	if limit := snapshotExpectation(1).Responses; int64(got) > limit {
		t.Errorf("%d FETCH responses got through a bound of %d", got, limit)
	}
}

// The attacks during SELECT, each an upstream answer go-imap's client
// would hold whole without the bound.
func TestBoundHostileSelect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attack func(w *hostileimap.Writer)
		bound  Bound
	}{
		// An unsolicited LIST with a 200 MB mailbox name: held whole by
		// go-imap's client (885 MB seen) before the bound.
		{"ListLiteral", func(w *hostileimap.Writer) {
			w.Line("* 1 EXISTS")
			w.Printf(`* LIST () "/" `)
			w.Literal(200_000_000)
			w.Printf("\r\n")
		}, BoundLiteral},
		// A response that never ends: a flag list of 100 MB.
		{"EndlessResponse", func(w *hostileimap.Writer) {
			w.Printf(`* FLAGS (\Seen`)
			for i := 0; i < 10_000_000 && w.Err() == nil; i++ {
				w.Printf(` \Flag%d`, i)
			}
			w.Line(")")
		}, BoundResponse},
		// A quoted string that never closes, across line ends, as
		// go-imap reads it.
		{"EndlessQuoted", func(w *hostileimap.Writer) {
			w.Printf(`* 1 EXISTS` + "\r\n" + `* LIST () "/" "`)
			w.Filler(100 << 20)
		}, BoundResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := hostileimap.Start(t, hostileimap.Script{Select: tc.attack})
			c, bc := dialBounded(t, srv, ResponseLimits{})
			var err error
			withinAttackHeap(t, func() { _, err = c.Select("INBOX", nil).Wait() })
			checkBound(t, err, bc, tc.bound)
		})
	}
}

// 100,000 LIST responses of 1 KB each, which go-imap collects: stopped
// by the bound of a LIST's responses together.
func TestBoundHostileListFlood(t *testing.T) {
	name := strings.Repeat("f", 1000)
	srv := hostileimap.Start(t, hostileimap.Script{Other: func(w *hostileimap.Writer, cmd, _ string) {
		for i := 0; cmd == "LIST" && i < 100_000 && w.Err() == nil; i++ {
			w.Line(`* LIST () "/" "%s%d"`, name, i)
		}
	}})
	c, bc := dialBounded(t, srv, ResponseLimits{})
	var err error
	withinAttackHeap(t, func() {
		bc.Expect(listExpectation())
		_, err = c.List("", "*", nil).Collect()
	})
	checkBound(t, err, bc, BoundOctets)
}

// A body is no literal to bound: one of 3,000,030 octets, listed at 100,
// goes through whole (the session checks and streams bodies itself).
func TestBoundHostileBodyPasses(t *testing.T) {
	const body = 3_000_030
	srv := hostileimap.Start(t, hostileimap.Script{Fetch: func(w *hostileimap.Writer, _ string) {
		w.Printf("* 1 FETCH (UID 1 RFC822.SIZE 100 BODY[] ")
		w.Literal(body)
		w.Line(")")
	}})
	c, bc := dialBounded(t, srv, ResponseLimits{})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cmd := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var size, read int64
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for item := m.Next(); item != nil; item = m.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataRFC822Size:
				size = item.Size
			case imapclient.FetchItemDataBodySection:
				read, _ = io.Copy(io.Discard, item.Literal)
			}
		}
	}
	if err := cmd.Close(); err != nil || bc.Err() != nil {
		t.Fatalf("FETCH: %v (bound: %v)", err, bc.Err())
	}
	if size != 100 || read != body {
		t.Fatalf("listed %d, read %d octets; want 100 and %d", size, read, body)
	}
}
