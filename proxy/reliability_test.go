package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/dovecottest"
	fr "github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// The upstream fails between the STORE \Deleted and the UID EXPUNGE of
// UPDATE: the client gets -ERR [SYS/TEMP] and the messages stay, flagged
// \Deleted. The next session lists them again with the same numbers'
// worth of UIDLs (as Dovecot's own POP3 server does: \Deleted mail is
// still mail until someone expunges it), so a client that retries its
// deletes repairs the state, and popbridge still expunges nothing it was
// not asked to, another client's \Deleted message included
// (docs/reliability.md, "UPDATE interrupted").
func TestInterruptedUpdateIsRepairedByTheNextSession(t *testing.T) {
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}, POP3: true})
	for i := 1; i <= 3; i++ {
		d.Deliver(t, "alice", testMessage(i, "body\r\n"))
	}
	other := d.Dial(t, "alice")
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uids := mailboxUIDs(t, other)
	flagDeleted(t, other, uids[2]) // another client's, not ours to expunge
	other.Close()

	relay := fr.New(t, d.IMAPAddr)
	relay.Arm(fr.Fault{Dir: fr.Up, Match: "UID EXPUNGE", Action: fr.Cut})
	addr := startProxy(t, relay.Addr, proxyOptions{}).addr

	c := pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	uidl := c.Multi("UIDL")
	c.OK("DELE 1")
	c.OK("DELE 2")
	if resp := c.Quit(); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
		t.Fatalf("QUIT with the upstream cut before UID EXPUNGE = %q", resp)
	}
	if got := cellState(t, d, "alice", uids); got != "1:D 2:D 3:D" {
		t.Fatalf("mailbox after the interrupted UPDATE: %q, want every message flagged \\Deleted", got)
	}

	// The next session sees the same maildrop, like Dovecot's POP3.
	c = pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	if got := c.Multi("UIDL"); string(got) != string(uidl) {
		t.Errorf("UIDL after the interrupted UPDATE = %q, want %q as before", got, uidl)
	}
	ref := pop3test.Dial(t, d.POP3Addr)
	ref.Login("alice", "secret")
	if got, want := c.OK("STAT"), ref.OK("STAT"); got != want {
		t.Errorf("STAT: popbridge %q, Dovecot's POP3 %q", got, want)
	}
	ref.Quit()

	// The client retries its deletes; this time UPDATE completes.
	c.OK("DELE 1")
	c.OK("DELE 2")
	if resp := c.Quit(); resp != "+OK Logging out, 2 messages deleted" {
		t.Fatalf("QUIT of the repairing session = %q", resp)
	}
	if got := cellState(t, d, "alice", uids); got != "1:- 2:- 3:D" {
		t.Errorf("mailbox after the repair: %q, want only the other client's \\Deleted message", got)
	}
}

// bye is what Dovecot sends before it drops an idle client.
var bye = []byte("* BYE Disconnected for inactivity.\r\n")

// afterHangup sends NOOP until popbridge has noticed that the upstream
// hung up: a command that races with the close may still fail with
// -ERR [SYS/TEMP] (docs/reliability.md); the next one must not.
func afterHangup(t *testing.T, c *pop3test.Client) string {
	t.Helper()
	resp := c.Cmd("NOOP")
	if strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
		resp = c.Cmd("NOOP")
	}
	return resp
}

// The upstream drops an idle session with BYE: the next command logs in
// again and the session goes on, QUIT included; messages another client
// expunged meanwhile answer -ERR, new mail stays invisible.
func TestUpstreamHangupReconnects(t *testing.T) {
	u := startDovecotUpstream(t)
	msgs := deliverN(t, u, 3)
	before := upstreamState(t, u)
	relay := fr.New(t, u.addr)
	addr := startProxy(t, relay.Addr, proxyOptions{}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	uidl := c.Multi("UIDL")
	c.Multi("RETR 1")

	relay.Hangup(bye)
	other := u.dial(t)
	flagDeleted(t, other, before[1].UID)
	if err := other.UIDExpunge(imap.UIDSetNum(before[1].UID)).Close(); err != nil {
		t.Fatal(err)
	}
	u.deliver(t, testMessage(9, "new\r\n"))

	if resp := afterHangup(t, c); resp != "+OK" {
		t.Fatalf("NOOP after the upstream hung up: %q", resp)
	}
	if relay.Accepted() != 2 {
		t.Errorf("%d upstream connections, want 2 (one reconnect)", relay.Accepted())
	}
	if resp := c.Cmd("RETR 2"); !strings.HasPrefix(resp, "-ERR") || strings.Contains(resp, "SYS/TEMP") {
		t.Errorf("RETR of a message expunged while disconnected: %q", resp)
	}
	if got := c.Multi("RETR 3"); !bytes.Equal(got, msgs[2]) {
		t.Errorf("RETR 3 after reconnect = %q", got)
	}
	if got := c.Multi("UIDL"); !bytes.Equal(got, uidl) {
		t.Errorf("UIDL after reconnect = %q, want %q", got, uidl)
	}
	c.OK("DELE 3")
	if resp := c.Quit(); resp != "+OK Logging out, 1 messages deleted" {
		t.Fatalf("QUIT after reconnect = %q", resp)
	}
	after := upstreamState(t, u)
	if len(after) != 2 || after[0].UID != before[0].UID || !hasFlag(after[0].Flags, imap.FlagSeen) {
		t.Fatalf("after QUIT: %+v; want message 1 (seen) and the new one", after)
	}
}

// The mailbox was recreated while the session was disconnected: its UIDs
// name other messages now, so the session ends its work with
// -ERR [SYS/TEMP] and deletes nothing.
func TestReconnectWithChangedUIDValidityDeletesNothing(t *testing.T) {
	u := startDovecotUpstream(t)
	other := u.dial(t)
	if err := other.Create("Box", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendTo := func(n int) {
		for i := 1; i <= n; i++ {
			m := testMessage(i, "box\r\n")
			cmd := other.Append("Box", int64(len(m)), nil)
			cmd.Write(m)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendTo(2)
	relay := fr.New(t, u.addr)
	addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) { c.Upstream.Mailbox = "Box" }}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	c.OK("DELE 1")

	relay.Hangup(bye)
	if err := other.Delete("Box").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := other.Create("Box", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendTo(2)

	for _, cmd := range []string{"NOOP", "NOOP", "RETR 2"} {
		if resp := c.Cmd(cmd); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
			t.Errorf("%s after the mailbox was recreated: %q", cmd, resp)
		}
	}
	if resp := c.Quit(); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
		t.Errorf("QUIT after the mailbox was recreated: %q", resp)
	}
	sel, err := other.Select("Box", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 {
		t.Errorf("the recreated mailbox has %d messages, want its 2 untouched", sel.NumMessages)
	}
}

// With upstream.reconnect off, a lost connection fails every later
// command and no new login is attempted.
func TestReconnectOff(t *testing.T) {
	u := startDovecotUpstream(t)
	deliverN(t, u, 2)
	relay := fr.New(t, u.addr)
	off := false
	addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) { c.Upstream.Reconnect = &off }}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	c.OK("DELE 1")
	relay.Hangup(bye)
	for _, cmd := range []string{"NOOP", "NOOP", "RETR 2"} {
		if resp := c.Cmd(cmd); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
			t.Errorf("%s after the upstream hung up: %q", cmd, resp)
		}
	}
	if resp := c.Quit(); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
		t.Errorf("QUIT: %q", resp)
	}
	if relay.Accepted() != 1 {
		t.Errorf("%d upstream connections with reconnect off", relay.Accepted())
	}
	if s := upstreamState(t, u); len(s) != 2 {
		t.Errorf("%d messages left, want 2", len(s))
	}
}

// An upstream that cannot be reached answers logins with -ERR [SYS/TEMP]
// within the dial timeout, however many clients try at once, and leaves
// no goroutine behind.
func TestUnreachableUpstreamFailsFastWithoutPileUp(t *testing.T) {
	closedPort := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	// blackhole accepts connections and never greets.
	blackhole := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			<-done
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
		return ln.Addr().String()
	}
	const dialTimeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name     string
		upstream func(t *testing.T) string
	}{
		{"closed port", closedPort},
		{"accepts but never greets", blackhole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startProxy(t, tc.upstream(t), proxyOptions{configure: func(c *config.Config) {
				c.Upstream.DialTimeout = dialTimeout
				c.Upstream.CommandTimeout = time.Second
			}}).addr
			// One session first, so that the server's own goroutines
			// (its accept loop) are running when the baseline is taken.
			probe := pop3test.Dial(t, addr)
			probe.Quit()
			ignore := goleak.IgnoreCurrent()
			const clients = 30
			var wg sync.WaitGroup
			errs := make(chan string, clients)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						errs <- err.Error()
						return
					}
					defer nc.Close()
					nc.SetDeadline(time.Now().Add(20 * time.Second))
					br := bufio.NewReader(nc)
					br.ReadString('\n')
					start := time.Now()
					fmt.Fprintf(nc, "USER alice\r\nPASS secret\r\n")
					br.ReadString('\n')
					resp, _ := br.ReadString('\n')
					if d := time.Since(start); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") || d > dialTimeout+3*time.Second {
						errs <- fmt.Sprintf("login answered %q after %v", resp, d)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			goleak.VerifyNone(t, ignore)
		})
	}
}

// A slow upstream is fine while each command finishes within the command
// timeout; one slower than that fails the command at the timeout, not
// when the upstream finally answers.
func TestSlowUpstreamAndCommandDeadlines(t *testing.T) {
	u := startDovecotUpstream(t)
	big := matrixMessages()[1] // 700 KiB: three chunks
	u.deliver(t, big)
	for _, tc := range []struct {
		name string
		rate int // octets per second from the upstream
		ok   bool
	}{
		{"fast enough", 4 << 20, true},
		{"too slow", 16 << 10, false}, // a matrixChunk range would take 16 s
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := fr.New(t, u.addr)
			// Long enough for a loaded machine, short against the
			// slow case.
			const cmdTimeout = 4 * time.Second
			addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) {
				c.Upstream.CommandTimeout = cmdTimeout
				c.Performance.ChunkSize = matrixChunk
			}}).addr
			c := pop3test.Dial(t, addr)
			c.Login(u.user, u.pass)
			relay.Arm(fr.Fault{Dir: fr.Down, Action: fr.Slow, Rate: tc.rate})
			start := time.Now()
			resp := c.Cmd("RETR 1")
			if tc.ok {
				if got := c.Data(); !strings.HasPrefix(resp, "+OK") || !bytes.Equal(got, big) {
					t.Fatalf("RETR through a slow upstream: %q, %d octets", resp, len(got))
				}
				return
			}
			if !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
				t.Fatalf("RETR through a too slow upstream: %q", resp)
			}
			if d := time.Since(start); d > cmdTimeout+4*time.Second {
				t.Errorf("the too slow RETR failed after %v, the command timeout is %v", d, cmdTimeout)
			}
		})
	}
}
