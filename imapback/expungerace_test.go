package imapback

// The expunge race against the three real servers: another client
// expunges a message that a session listed, and the session then
// retrieves it. Each server answers the FETCH its own way (pinned below);
// in every case the session must not deliver anything but the message
// itself, and goes on serving the rest. And a server that miscounts its
// sizes still has its messages delivered, counted as such.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/couriertest"
	"github.com/popbridge/popbridge/internal/cyrustest"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// raceServer is a real upstream.
type raceServer struct {
	name string
	// start starts a new instance.
	start func(t *testing.T) (srv deliverer, addr string)
	// answer is the server's answer, after another session expunged UID
	// 1, to "UID FETCH 1 (BODY.PEEK[]<0.1024>)" from a session not yet
	// told (tag "T", timings cut); body is message 1.
	answer func(body []byte) *regexp.Regexp
}

// deliverer is what the three harnesses have in common.
type deliverer interface {
	Deliver(t testing.TB, user string, raw []byte)
}

// startFilled starts srv with msgs in alice's INBOX and returns its IMAP
// address.
func startFilled(t *testing.T, srv raceServer, msgs ...[]byte) string {
	s, addr := srv.start(t)
	for _, m := range msgs {
		s.Deliver(t, "alice", m)
	}
	return addr
}

var raceServers = []raceServer{
	{
		name: "courier",
		start: func(t *testing.T) (deliverer, string) {
			s := couriertest.Start(t, couriertest.Options{})
			return s, s.IMAPAddr
		},
		// OK with a stand-in body; the EXPUNGE waits for a NOOP.
		answer: func([]byte) *regexp.Regexp {
			return regexp.MustCompile(`^` + regexp.QuoteMeta("* 1 FETCH (UID 1 BODY[]<0> {129}\r\n"+couriertest.UnavailableBody+")\r\nT OK FETCH completed.\r\n") + `$`)
		},
	},
	{
		name: "dovecot",
		start: func(t *testing.T) (deliverer, string) {
			s := dovecottest.Start(t, dovecottest.Options{})
			return s, s.IMAPAddr
		},
		// A NIL body, the EXPUNGE, and OK [EXPUNGEISSUED].
		answer: func([]byte) *regexp.Regexp {
			return regexp.MustCompile(`^` + regexp.QuoteMeta("* 1 FETCH (UID 1 BODY[]<0> NIL)\r\n* 1 EXPUNGE\r\n") + `(\* 1 RECENT\r\n)?` + regexp.QuoteMeta("T OK [EXPUNGEISSUED] ") + `.*\r\n$`)
		},
	},
	{
		name: "cyrus",
		start: func(t *testing.T) (deliverer, string) {
			s := cyrustest.Start(t, cyrustest.Options{})
			return s, s.IMAPAddr
		},
		// The real message, with its flags, and the EXPUNGE.
		answer: func(body []byte) *regexp.Regexp {
			return regexp.MustCompile(`^` + regexp.QuoteMeta(fmt.Sprintf("* 1 FETCH (FLAGS (\\Recent \\Deleted) UID 1 BODY[]<0> {%d}\r\n%s)\r\n* 1 EXPUNGE\r\n", len(body), body)) + `T OK Completed.*\r\n$`)
		},
	},
}

// rawCommand sends one tagged command and returns the answer up to the
// tagged line, literals included, with the tag replaced by "T".
func rawCommand(t *testing.T, c net.Conn, r *bufio.Reader, tag, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%s %s\r\n", tag, cmd); err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`\{(\d+)\}\r\n$`)
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v after %q", cmd, err, b.String())
		}
		if m := literal.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			lit := make([]byte, n)
			if _, err := io.ReadFull(r, lit); err != nil {
				t.Fatal(err)
			}
			line += string(lit)
		}
		if strings.HasPrefix(line, tag+" ") {
			b.WriteString("T " + strings.TrimPrefix(line, tag+" "))
			return b.String()
		}
		b.WriteString(line)
	}
}

// What each server answers, on the wire, in the race.
func TestExpungeRaceAnswers(t *testing.T) {
	first, second := message(200), message(300)
	for _, srv := range raceServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := startFilled(t, srv, first, second)
			c, r := testkit.DialGreeted(t, addr, 30*time.Second)
			for i, cmd := range []string{"LOGIN alice secret", "SELECT INBOX", "UID FETCH 1:* (UID RFC822.SIZE)"} {
				if got := rawCommand(t, c, r, fmt.Sprint("a", i), cmd); !strings.Contains(got, "T OK") {
					t.Fatalf("%s: %q", cmd, got)
				}
			}
			expunge(t, otherDevice(t, addr), imap.UIDSetNum(1))
			got := rawCommand(t, c, r, "b", "UID FETCH 1 (BODY.PEEK[]<0.1024>)")
			if want := srv.answer(first); !want.MatchString(got) {
				t.Errorf("UID FETCH of the expunged message:\n got %q\nwant %s", got, want)
			}
		})
	}
}

// What a session makes of it: nothing but the real message is ever
// delivered. Cyrus serves the real octets, which are delivered; Courier's
// stand-in and Dovecot's NIL make the message gone for RETR and TOP
// alike; and the session goes on.
func TestExpungeRaceNeverDeliversAStandIn(t *testing.T) {
	first, second := message(200), message(300)
	for _, srv := range raceServers {
		for _, readAhead := range []int{-1, DefaultReadAheadBytes} {
			for _, lines := range []int{-1, 0} {
				t.Run(fmt.Sprintf("%s/read-ahead=%d/lines=%d", srv.name, readAhead, lines), func(t *testing.T) {
					addr := startFilled(t, srv, first, second)
					s := login(t, newBackend(t, Options{Address: addr, ReadAheadBytes: readAhead}))
					expunge(t, otherDevice(t, addr), imap.UIDSetNum(s.Messages()[0].UID))
					rc, err := s.Retrieve(context.Background(), 0, lines)
					var got []byte
					if err == nil {
						got, err = io.ReadAll(rc)
						rc.Close()
					}
					if srv.name == "cyrus" {
						// The real octets, with the EXPUNGE: the message
						// itself, which is delivered.
						if err != nil || string(got) != string(first) {
							t.Errorf("Retrieve of the expunged message: %v, %q; want the message", err, got)
						}
					} else if !errors.Is(err, ErrGone) {
						t.Errorf("Retrieve of the expunged message: %v, %q; want ErrGone", err, got)
					}
					if got := retrieveAll(t, s, 1); string(got) != string(second) {
						t.Errorf("the next message: %q", got)
					}
				})
			}
		}
	}
}

// sizeCounter is an Observer that records SizeMismatch.
type sizeCounter struct {
	mu   sync.Mutex
	seen [][2]int64
}

func (*sizeCounter) Connected(time.Duration, error)           {}
func (*sizeCounter) CommandDone(string, time.Duration, error) {}
func (*sizeCounter) SnapshotCache(CacheOutcome, int64)        {}
func (c *sizeCounter) SizeMismatch(listed, served int64) {
	c.mu.Lock()
	c.seen = append(c.seen, [2]int64{listed, served})
	c.mu.Unlock()
}
func (c *sizeCounter) mismatches() [][2]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][2]int64(nil), c.seen...)
}

// misSizer relays to target and adds add to every RFC822.SIZE the
// server sends, as a server that miscounts its sizes does. With gone,
// every NOOP also reports message 1 expunged, as Courier's NOOP does
// after serving a stand-in.
func misSizer(t *testing.T, target string, add int, gone bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	size := regexp.MustCompile(`RFC822\.SIZE (\d+)`)
	noopDone := regexp.MustCompile(`^\S+ OK NOOP completed`)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() {
				defer c.Close()
				r := bufio.NewReader(u)
				for {
					line, err := r.ReadBytes('\n')
					line = size.ReplaceAllFunc(line, func(m []byte) []byte {
						n, _ := strconv.Atoi(string(size.FindSubmatch(m)[1]))
						return fmt.Appendf(nil, "RFC822.SIZE %d", n+add)
					})
					if gone && noopDone.Match(line) {
						line = append([]byte("* 1 EXPUNGE\r\n"), line...)
					}
					if _, werr := c.Write(line); werr != nil || err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A message that is there, served with another length than listed, is
// delivered whole, and counted: also one listed smaller than a chunk
// (fetched by Retrieve itself) that turns out larger.
func TestMiscountedSizeIsDeliveredAndCounted(t *testing.T) {
	for _, tc := range []struct{ size, add int }{{300, -10}, {300, 10}, {1100, -100}} {
		msg, add := message(tc.size), tc.add
		for _, readAhead := range []int{-1, DefaultReadAheadBytes} {
			t.Run(fmt.Sprintf("size=%d/add=%d/read-ahead=%d", tc.size, add, readAhead), func(t *testing.T) {
				mem := startMem(t, msg)
				obs := &sizeCounter{}
				s := login(t, newBackend(t, Options{Address: misSizer(t, mem.Addr, add, false), ReadAheadBytes: readAhead, ChunkSize: 1 << 10, Observer: obs}))
				if got := retrieveAll(t, s, 0); string(got) != string(msg) {
					t.Errorf("delivered %q", got)
				}
				want := [2]int64{int64(len(msg) + add), int64(len(msg))}
				if got := obs.mismatches(); len(got) != 1 || got[0] != want {
					t.Errorf("SizeMismatch calls: %v, want [%v]", got, want)
				}
			})
		}
	}
}

// A body of the wrong length whose message the NOOP reports expunged is
// never delivered: ErrGone when it ended within its first range (nothing
// was sent), an ErrUnavailable error that cuts the client off when it
// ended in a later one.
func TestWrongLengthOfAGoneMessageIsNotDelivered(t *testing.T) {
	for _, tc := range []struct {
		size    int
		want    error
		sentAny bool
	}{
		{300, ErrGone, false},
		{3000, ErrUnavailable, true},
	} {
		for _, readAhead := range []int{-1, DefaultReadAheadBytes} {
			t.Run(fmt.Sprintf("size=%d/read-ahead=%d", tc.size, readAhead), func(t *testing.T) {
				msg := message(tc.size)
				mem := startMem(t, msg)
				obs := &sizeCounter{}
				s := login(t, newBackend(t, Options{Address: misSizer(t, mem.Addr, 10, true), ReadAheadBytes: readAhead, ChunkSize: 1 << 10, Observer: obs}))
				rc, err := s.Retrieve(context.Background(), 0, -1)
				var got []byte
				if err == nil {
					got, err = io.ReadAll(rc)
					rc.Close()
				}
				if !errors.Is(err, tc.want) || errors.Is(err, ErrGone) && tc.want != ErrGone {
					t.Errorf("Retrieve: %v, want %v", err, tc.want)
				}
				if sent := len(got) > 0; sent != tc.sentAny || len(got) >= len(msg) {
					t.Errorf("%d octets read of %d", len(got), len(msg))
				}
				if n := len(obs.mismatches()); n != 0 {
					t.Errorf("%d size mismatches counted for a message that is gone", n)
				}
			})
		}
	}
}
