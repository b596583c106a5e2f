package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/pop3front"
)

// A maildrop of two messages whose Commit counts its calls: a kick must
// never reach it.
type countingBackend struct{ commits atomic.Int32 }

type countingSession struct{ b *countingBackend }

func (b *countingBackend) Login(ctx context.Context, user, pass string, info pop3front.ConnInfo) (pop3front.Session, error) {
	if pass != "secret" {
		return nil, pop3front.ErrAuthFailed
	}
	return countingSession{b}, nil
}

func (countingSession) Messages() []pop3front.MessageInfo {
	return []pop3front.MessageInfo{{Size: 3, UID: "u1"}, {Size: 3, UID: "u2"}}
}
func (countingSession) Retrieve(ctx context.Context, i, lines int) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("x\r\n")), nil
}
func (countingSession) Retrieved(i int)                {}
func (countingSession) Expunged(i int) bool            { return false }
func (countingSession) Noop(ctx context.Context) error { return nil }
func (s countingSession) Commit(ctx context.Context, deleted []int) (pop3front.UpdateResult, error) {
	s.b.commits.Add(1)
	return pop3front.UpdateResult{Removed: len(deleted)}, nil
}
func (countingSession) Close() error { return nil }

// pop3Client logs in as user and marks message 1 deleted.
func pop3Client(t *testing.T, addr, user string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, cmd := range []string{"", "USER " + user, "PASS secret", "RETR 2", "DELE 1"} {
		if cmd != "" {
			io.WriteString(c, cmd+"\r\n")
		}
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("%q: %q, %v", cmd, line, err)
		}
		if strings.HasPrefix(cmd, "RETR") {
			for line != ".\r\n" {
				if line, err = r.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return c, r
}

// TestKickARealSession runs a pop3front server, lists its session through
// the admin listener and kicks it: the client is disconnected and nothing
// marked deleted is committed.
func TestKickARealSession(t *testing.T) {
	b := &countingBackend{}
	pop := &pop3front.Server{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go pop.Serve(ln)
	t.Cleanup(func() { pop.Close() })

	s, err := New(Options{Config: Config{Listen: "127.0.0.1:0"}, Servers: func() []Sessions { return []Sessions{pop} },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	c := &Client{URL: "http://" + s.Addr().String()}
	ctx := context.Background()

	conn, r := pop3Client(t, ln.Addr().String(), "dave")
	list, err := c.Sessions(ctx, "dave")
	if err != nil || len(list) != 1 {
		t.Fatalf("sessions of dave = %+v, %v", list, err)
	}
	got := list[0]
	if got.State != "transaction" || got.Retrieved != 1 || got.Marked != 1 || got.Sent == 0 || got.TLS ||
		got.Remote != conn.LocalAddr().String() || got.ID == "" {
		t.Errorf("session = %+v", got)
	}

	if n, err := c.Kick(ctx, got.ID, ""); n != 1 || err != nil {
		t.Fatalf("kick = %d, %v", n, err)
	}
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("the kicked client read %v, want the connection closed", err)
	}
	for i := 0; i < 100 && len(pop.Sessions()) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(pop.Sessions()); n != 0 {
		t.Errorf("%d sessions left after the kick", n)
	}
	if n := b.commits.Load(); n != 0 {
		t.Errorf("Commit ran %d times: a kick must change nothing upstream", n)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
