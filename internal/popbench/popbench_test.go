package popbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/popbridgetest"
)

// corpus has the cases a POP3 server must get right: dot-stuffing at the
// start of lines, a line that is only a dot, a long line, an empty body.
func corpus() [][]byte {
	var msgs [][]byte
	for i := range 12 {
		body := fmt.Sprintf("Body %d.\r\n.starts with a dot\r\n.\r\n..two dots\r\nend\r\n", i)
		if i%4 == 1 {
			body = strings.Repeat("x", 100<<10) + "\r\n" // longer than the client's buffer
		}
		if i%4 == 2 {
			body = ""
		}
		msgs = append(msgs, []byte(fmt.Sprintf("From: a@example.org\r\nSubject: %d\r\nMessage-ID: <%d@example.org>\r\n\r\n%s", i, i, body)))
	}
	return msgs
}

func TestEveryModePassesAgainstPopbridge(t *testing.T) {
	msgs := corpus()
	addr := popbridgetest.Start(t, msgs)
	for _, mode := range Modes {
		for _, pipeline := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/pipeline=%d", mode, pipeline), func(t *testing.T) {
				rep, err := Run(context.Background(), Options{
					Addr: addr, Users: []Credentials{{"alice", "secret"}}, Mode: mode,
					Concurrency: 3, Sessions: 6, Pipeline: pipeline, Expect: NewExpected(msgs), TopLines: 1,
					Timeout: 10 * time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := rep.Err(); err != nil {
					t.Fatal(err)
				}
				if rep.Sessions != 6 {
					t.Errorf("%d sessions ran, want 6", rep.Sessions)
				}
				wantRetr := int64(0)
				if mode == ModeRetrAll {
					wantRetr = 6 * int64(len(msgs))
				}
				if mode != ModeMixed && rep.Messages != wantRetr {
					t.Errorf("%d messages retrieved, want %d", rep.Messages, wantRetr)
				}
				for _, cmd := range []string{"login", "STAT", "QUIT", "session"} {
					if rep.Latency[cmd].Count != 6 {
						t.Errorf("latency of %s has %d samples, want 6", cmd, rep.Latency[cmd].Count)
					}
				}
				if mode == ModeTop && rep.Latency["TOP"].Count != 6*int64(len(msgs)) {
					t.Errorf("TOP latency has %d samples, want %d", rep.Latency["TOP"].Count, 6*len(msgs))
				}
				if rep.Bytes == 0 || rep.MBPerSec <= 0 || rep.SessionsPerSec <= 0 {
					t.Errorf("no throughput in %+v", rep)
				}
			})
		}
	}
}

func TestReportsAMailboxOtherThanExpected(t *testing.T) {
	msgs := corpus()
	addr := popbridgetest.Start(t, msgs[:len(msgs)-1])
	rep, err := Run(context.Background(), Options{
		Addr: addr, Users: []Credentials{{"alice", "secret"}}, Mode: ModeRetrAll, Expect: NewExpected(msgs),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 1 || !strings.Contains(rep.ErrorSamples[0], "STAT says 11 messages") {
		t.Fatalf("errors %d %q, want the STAT mismatch", rep.Errors, rep.ErrorSamples)
	}
}

// fakeServer is a scripted POP3 server whose answers a test can break.
type fakeServer struct {
	msgs [][]byte
	// wire returns what RETR/TOP sends for message n (1-based) in
	// session k; nil means the correct dot-stuffed data.
	wire func(k, n int, stuffed []byte) []byte
	// list returns the LIST size of message n; nil means the real one.
	list func(n int) int64

	sessions *atomic.Int64
	// reads counts the reads that returned data: a client's writes
	// arrive as separate reads (closely enough: loopback keeps them apart
	// when the client waits between them).
	reads *atomic.Int64
}

func (f *fakeServer) start(t *testing.T) string {
	f.sessions, f.reads = new(atomic.Int64), new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(nc) }()
		}
	}()
	return ln.Addr().String()
}

func stuff(m []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(m, []byte("\n")) {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	return b.Bytes()
}

func (f *fakeServer) size(n int) int64 {
	if f.list != nil {
		return f.list(n)
	}
	return int64(len(f.msgs[n-1]))
}

func (f *fakeServer) serve(nc net.Conn) {
	defer nc.Close()
	k := int(f.sessions.Add(1))
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(readCounter{nc, f.reads})
	w := bufio.NewWriter(nc)
	defer w.Flush()
	w.WriteString("+OK fake\r\n")
	for {
		if r.Buffered() == 0 {
			w.Flush()
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fields := strings.Fields(line)
		num := func(i int) int { v, _ := strconv.Atoi(fields[i]); return v }
		switch strings.ToUpper(fields[0]) {
		case "USER", "PASS":
			w.WriteString("+OK\r\n")
		case "STAT":
			var total int64
			for n := range f.msgs {
				total += f.size(n + 1)
			}
			fmt.Fprintf(w, "+OK %d %d\r\n", len(f.msgs), total)
		case "LIST":
			w.WriteString("+OK\r\n")
			for n := range f.msgs {
				fmt.Fprintf(w, "%d %d\r\n", n+1, f.size(n+1))
			}
			w.WriteString(".\r\n")
		case "UIDL":
			w.WriteString("+OK\r\n")
			for n := range f.msgs {
				fmt.Fprintf(w, "%d uid%d\r\n", n+1, n+1)
			}
			w.WriteString(".\r\n")
		case "RETR", "TOP":
			n := num(1)
			m := f.msgs[n-1]
			if fields[0] == "TOP" {
				m = m[:bytes.Index(m, []byte("\r\n\r\n"))+4]
			}
			data := stuff(m)
			if f.wire != nil {
				if d := f.wire(k, n, data); d != nil {
					data = d
				}
			}
			fmt.Fprintf(w, "+OK %d octets\r\n", f.size(n))
			w.Write(data)
			w.WriteString(".\r\n")
		case "QUIT":
			w.WriteString("+OK bye\r\n")
			return
		default:
			w.WriteString("-ERR what\r\n")
		}
	}
}

func TestDetectsBrokenAnswers(t *testing.T) {
	tests := []struct {
		name string
		f    fakeServer
		// expect uses the expected set.
		expect bool
		want   string // in the first error, "" for a clean run
	}{
		{name: "correct server", want: ""},
		{name: "correct server against the expected set", expect: true, want: ""},
		{
			name: "LIST size one too large",
			f:    fakeServer{list: func(n int) int64 { return int64(len(corpus()[n-1])) + boolInt(n == 3) }},
			want: "RETR 3: got",
		},
		{
			name: "a byte dropped from a message",
			f: fakeServer{wire: func(k, n int, d []byte) []byte {
				if n == 2 {
					return append(d[:10:10], d[11:]...)
				}
				return nil
			}},
			want: "RETR 2: got",
		},
		{
			name: "a dot line not stuffed",
			f: fakeServer{wire: func(k, n int, d []byte) []byte {
				return bytes.Replace(d, []byte("\r\n..starts"), []byte("\r\n.starts"), 1)
			}},
			want: "unstuffed dot",
		},
		{
			name: "a bare LF",
			f: fakeServer{wire: func(k, n int, d []byte) []byte {
				return bytes.Replace(d, []byte("\r\nend\r\n"), []byte("\nend\r\n\r\n"), 1) // same length
			}},
			want: "bare LF",
		},
		{
			name: "one byte changed in one session only",
			f: fakeServer{wire: func(k, n int, d []byte) []byte {
				if k == 2 && n == 4 {
					return bytes.Replace(d, []byte("Body"), []byte("Bodx"), 1)
				}
				return nil
			}},
			want: "content differs from an earlier session",
		},
		{
			name:   "one byte changed against the expected set",
			expect: true,
			f: fakeServer{wire: func(k, n int, d []byte) []byte {
				if n == 5 {
					return bytes.Replace(d, []byte("Body"), []byte("Bodx"), 1)
				}
				return nil
			}},
			want: "RETR 5: content",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := corpus()
			f := tt.f
			f.msgs = msgs
			opts := Options{Addr: f.start(t), Users: []Credentials{{"u", "p"}}, Mode: ModeRetrAll, Sessions: 2, Timeout: 5 * time.Second}
			if tt.expect {
				opts.Expect = NewExpected(msgs)
			}
			rep, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if rep.Errors != 0 {
					t.Fatalf("errors on a correct server: %q", rep.ErrorSamples)
				}
				return
			}
			if rep.Errors == 0 {
				t.Fatalf("no error reported, want %q", tt.want)
			}
			if !strings.Contains(rep.ErrorSamples[0], tt.want) {
				t.Fatalf("first error %q, want it to mention %q", rep.ErrorSamples[0], tt.want)
			}
		})
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestPipelinedSessionsSendCommandsAhead(t *testing.T) {
	// The fake server flushes only when no further command is buffered,
	// so the number of separate reads tells whether the client pipelined.
	f := fakeServer{msgs: corpus()}
	addr := f.start(t)
	rep, err := Run(context.Background(), Options{Addr: addr, Users: []Credentials{{"u", "p"}}, Mode: ModeRetrAll, Pipeline: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	// One write each for USER+PASS, STAT, UIDL+LIST, the RETRs and QUIT;
	// one command per write would be 2+1+2+12+1 = 18.
	if got := f.reads.Load(); got > 8 {
		t.Errorf("client sent its %d commands in %d writes, want them batched", 18, got)
	}
}

// readCounter counts the reads of r that return data.
type readCounter struct {
	r     io.Reader
	reads *atomic.Int64
}

func (c readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}
