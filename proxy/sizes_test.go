package proxy

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/popbridge/popbridge/internal/hostileimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// wrongSizeUpstream serves one message of actual octets that it lists
// with RFC822.SIZE listed, as a server whose sizes are estimates does.
func wrongSizeUpstream(t *testing.T, listed, actual int64) *hostileimap.Server {
	partial := regexp.MustCompile(`BODY\.PEEK\[\]<(\d+)\.(\d+)>`)
	return hostileimap.Start(t, hostileimap.Script{Fetch: func(w *hostileimap.Writer, args string) {
		switch m := partial.FindStringSubmatch(args); {
		case m != nil:
			off, _ := strconv.ParseInt(m[1], 10, 64)
			n, _ := strconv.ParseInt(m[2], 10, 64)
			k := max(0, min(n, actual-off))
			w.Printf("* 1 FETCH (UID 1 BODY[]<%d> {%d}\r\n", off, k)
			w.Filler(k)
			w.Line(")")
		case strings.Contains(args, "BODY.PEEK[]"):
			w.Printf("* 1 FETCH (UID 1 BODY[] {%d}\r\n", actual)
			w.Filler(actual)
			w.Line(")")
		case strings.Contains(args, "RFC822.SIZE"):
			w.Line("* 1 FETCH (UID 1 RFC822.SIZE %d)", listed)
		case strings.Contains(args, "FLAGS"):
			// The check after a transfer of the wrong length: the
			// message is still there.
			w.Line("* 1 FETCH (UID 1 FLAGS ())")
		}
	}})
}

type sizeMismatches struct{ n atomic.Int64 }

// The size check keeps a reader's io.WriterTo, through which pop3front
// sends a message without copying it, and checks what goes that way.
func TestSizeCheckKeepsTheWriterToPath(t *testing.T) {
	var got [2]int64
	report := func(listed, n int64) { got = [2]int64{listed, n} }
	rc := checkSize(io.NopCloser(strings.NewReader("0123456789")), 4, report)
	if _, ok := rc.(io.WriterTo); !ok { // strings.Reader has WriteTo, NopCloser keeps it
		t.Fatal("the wrapper hides the reader's io.WriterTo")
	}
	var sb strings.Builder
	if n, err := rc.(io.WriterTo).WriteTo(&sb); n != 10 || err != nil || sb.String() != "0123456789" {
		t.Fatalf("WriteTo: %d %v %q", n, err, sb.String())
	}
	if got != [2]int64{4, 10} {
		t.Errorf("reported %v, want listed 4 and 10 octets", got)
	}
}

func (s *sizeMismatches) SizeMismatch() { s.n.Add(1) }

// Issue 15, 9: a message listed at 100 octets that is 3,040 long is
// served whole, and the difference logged and counted; with
// upstream.exact_sizes, LIST and STAT give the octets RETR sends.
func TestListedSizesThatTheUpstreamGetsWrong(t *testing.T) {
	const listed, actual = 100, 38 * 80 // whole lines of the filler
	up := wrongSizeUpstream(t, listed, actual)
	for _, exact := range []bool{false, true} {
		t.Run(fmt.Sprintf("exact_sizes=%v", exact), func(t *testing.T) {
			var logs testkit.LockedBuffer
			counter := &sizeMismatches{}
			addr := startProxy(t, up.Addr, proxyOptions{logs: &logs, hooks: Hooks{Sizes: counter},
				configure: func(c *config.Config) { c.Upstream.ExactSizes = exact }}).addr
			c := pop3test.Dial(t, addr)
			c.Login("alice", "secret")
			want := int64(listed)
			if exact {
				want = actual
			}
			if got := c.Cmd("LIST 1"); got != fmt.Sprintf("+OK 1 %d", want) {
				t.Errorf("LIST 1: %q, want size %d", got, want)
			}
			if body := c.Multi("RETR 1"); len(body) != actual {
				t.Errorf("RETR 1 sent %d octets, want %d", len(body), actual)
			}
			c.Quit()
			mismatched := strings.Contains(logs.String(), "message octets differ from the listed size")
			if n := counter.n.Load(); exact && (n != 0 || mismatched) || !exact && (n != 1 || !mismatched) {
				t.Errorf("%d mismatches counted, logged %v", n, mismatched)
			}
		})
	}
}
