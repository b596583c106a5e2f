package pop3front

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// jsonLogs collects a server's log lines as JSON objects.
type jsonLogs struct{ buf testkit.LockedBuffer }

func (l *jsonLogs) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(&l.buf, nil)) }

func (l *jsonLogs) lines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.buf.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// ended returns the "session ended" line of session id.
func (l *jsonLogs) ended(t *testing.T, id string) map[string]any {
	t.Helper()
	for _, m := range l.lines(t) {
		if m["msg"] == "session ended" && m["session"] == id {
			return m
		}
	}
	t.Fatalf("no session ended line for %q in\n%s", id, l.buf.String())
	return nil
}

func TestEveryLogLineOfASessionCarriesItsID(t *testing.T) {
	var logs jsonLogs
	fb := newFakeBackend()
	ts := startServer(t, fb, func(s *Server) { s.Logger = logs.logger() })
	c1 := dialLogin(t, ts, "3")
	c2 := dial(t, ts)
	c2.expect("USER bob\r\nPASS x\r\n", "+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n")
	c1.expect("RETR 1\r\nTOP 2 1\r\nDELE 1\r\nDELE 3\r\nRSET\r\nDELE 2\r\n", "+OK 23 octets\r\n"+body1+".\r\n"+
		"+OK Top of message follows\r\nSubject: two\r\n\r\n..dot\r\n.\r\n+OK Message 1 deleted\r\n+OK Message 3 deleted\r\n"+
		"+OK 3 messages\r\n+OK Message 2 deleted\r\n")
	c1.expectClosed("QUIT\r\n", "+OK Logging out, 1 messages deleted\r\n")
	c2.nc.Close()
	ts.waitSessions(t)

	calls := fb.loginCalls()
	if len(calls) != 2 || calls[0].info.Session == calls[1].info.Session || calls[0].info.Session == "" {
		t.Fatalf("Login got sessions %q and %q, want two different ids", calls[0].info.Session, calls[1].info.Session)
	}
	ids := map[string]string{"alice": calls[0].info.Session, "bob": calls[1].info.Session}
	msgs := map[string][]string{}
	for _, m := range logs.lines(t) {
		id, _ := m["session"].(string)
		if id == "" {
			t.Errorf("log line without a session id: %v", m)
			continue
		}
		msgs[id] = append(msgs[id], m["msg"].(string))
	}
	// The backend's own line, through ConnInfo.Logger, carries it too.
	for user, id := range ids {
		if !slices.Contains(msgs[id], "backend login") || !slices.Contains(msgs[id], "session ended") {
			t.Errorf("%s's session %s logged %q", user, id, msgs[id])
		}
	}

	end := logs.ended(t, ids["alice"])
	want := map[string]any{"user": "alice", "reason": "quit", "messages": 3.0, "size": 68.0, "retr": 1.0, "retr_octets": 23.0,
		"top": 1.0, "top_octets": 22.0, "marked": 1.0, "removed": 1.0, "flagged": 0.0}
	for k, v := range want {
		if end[k] != v {
			t.Errorf("session ended: %s = %v, want %v (line %v)", k, end[k], v, end)
		}
	}
	// Seconds, as a number, not nanoseconds.
	if d, ok := end["duration"].(float64); !ok || d <= 0 || d > clientTimeout.Seconds() {
		t.Errorf("session ended: duration = %v, want seconds", end["duration"])
	}
	if r := logs.ended(t, ids["bob"])["reason"]; r != "client closed" {
		t.Errorf("bob's session ended for %v, want client closed", r)
	}
}

func TestSessionEndReasons(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*Server)
		run       func(t *testing.T, ts *testServer, c *client)
		want      string
	}{
		{"idle timeout", func(s *Server) { s.IdleTimeout = 100 * time.Millisecond },
			func(t *testing.T, ts *testServer, c *client) { c.readAll() }, "idle timeout"},
		{"auth timeout", func(s *Server) { s.AuthTimeout = 100 * time.Millisecond },
			func(t *testing.T, ts *testServer, c *client) { c.readAll() }, "auth timeout"},
		{"shutdown", nil, func(t *testing.T, ts *testServer, c *client) { ts.srv.Close() }, "shutdown"},
		{"kicked", nil, func(t *testing.T, ts *testServer, c *client) {
			c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
			if ts.srv.KickUser("alice") != 1 {
				t.Error("KickUser found no session")
			}
			c.readAll()
		}, "kicked"},
		{"upstream failed", func(s *Server) { s.Backend.(*fakeBackend).failAfter = map[int]int{0: 5} },
			func(t *testing.T, ts *testServer, c *client) {
				c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
				c.expectClosed("RETR 1\r\n", "+OK 23 octets\r\nSubje")
			}, "upstream failed"},
		{"bad commands", nil, func(t *testing.T, ts *testServer, c *client) {
			c.write(strings.Repeat("XYZZY\r\n", maxBadCommands))
			c.readAll()
		}, "bad commands"},
		{"auth failures", nil, func(t *testing.T, ts *testServer, c *client) {
			c.write(strings.Repeat("USER alice\r\nPASS x\r\n", maxAuthFailures))
			c.readAll()
		}, "auth failures"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs jsonLogs
			ts := startServer(t, newFakeBackend(), func(s *Server) {
				s.Logger = logs.logger()
				if tc.configure != nil {
					tc.configure(s)
				}
			})
			c := dial(t, ts)
			tc.run(t, ts, c)
			ts.srv.Close()
			var got []string
			for _, m := range logs.lines(t) {
				if m["msg"] == "session ended" {
					got = append(got, m["reason"].(string))
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("sessions ended for %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSessionsListsOpenSessions(t *testing.T) {
	fb := newFakeBackend()
	fb.device = "laptop"
	ts := startServer(t, fb)
	if s := ts.srv.Sessions(); len(s) != 0 {
		t.Fatalf("Sessions before any client = %+v", s)
	}
	before := time.Now()
	c1 := dialLogin(t, ts, "3")
	c1.expect("RETR 1\r\nDELE 1\r\nDELE 2\r\n", "+OK 23 octets\r\n"+body1+".\r\n+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n")
	c2 := dial(t, ts)
	c2.expect("USER bob\r\n", "+OK Send your password\r\n")

	list := ts.srv.Sessions()
	if len(list) != 2 {
		t.Fatalf("Sessions = %+v, want 2", list)
	}
	slices.SortFunc(list, func(a, b SessionInfo) int { return strings.Compare(b.User, a.User) })
	a, b := list[0], list[1]
	sent := int64(len(greeting + "+OK Send your password\r\n+OK Logged in, 3 messages\r\n+OK 23 octets\r\n" + body1 +
		".\r\n+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n"))
	if a.User != "alice" || a.Device != "laptop" || a.State != "transaction" || a.Retrieved != 1 || a.Marked != 2 || a.Sent != sent ||
		a.Listener != ts.addr || a.RemoteAddr.String() != c1.nc.LocalAddr().String() || a.TLS ||
		a.Since.Before(before) || a.ID == "" {
		t.Errorf("alice's session = %+v; want logged in on the laptop, 1 retrieved, 2 marked, %d sent, from %s on %s",
			a, sent, c1.nc.LocalAddr(), ts.addr)
	}
	// A USER without PASS is no login.
	if b.User != "" || b.Device != "" || b.State != "authorization" || b.ID == a.ID || b.ID == "" {
		t.Errorf("second session = %+v, want one in authorization", b)
	}
}

func TestKickClosesWithoutUpdate(t *testing.T) {
	fb := newFakeBackend()
	ts := startServer(t, fb)
	c1 := dialLogin(t, ts, "3")
	c1.expect("DELE 1\r\n", "+OK Message 1 deleted\r\n")
	c2 := dialLogin(t, ts, "3")
	other := dial(t, ts)
	var alice1 string
	for _, s := range ts.srv.Sessions() {
		if s.User == "alice" && s.Marked == 1 {
			alice1 = s.ID
		}
	}
	if ts.srv.Kick("no-such-session") {
		t.Error("Kick of an unknown id reported a session")
	}
	if !ts.srv.Kick(alice1) {
		t.Fatalf("Kick(%q) found no session", alice1)
	}
	// Closed without an answer and without UPDATE: DELE 1 is not applied.
	if got := c1.readAll(); got != "" {
		t.Errorf("kicked client got %q", got)
	}
	c2.expect("STAT\r\n", "+OK 3 68\r\n")
	if n := ts.srv.KickUser("alice"); n != 1 {
		t.Errorf("KickUser(alice) = %d, want 1", n)
	}
	c2.readAll()
	if n := ts.srv.KickUser("alice"); n != 0 {
		t.Errorf("KickUser(alice) after the kick = %d", n)
	}
	other.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.expectBackend(t, fakeState{Logins: []string{"alice/secret", "alice/secret"}, Closes: 2})
}

func TestKickLeavesAnUpdateUnderWayToFinish(t *testing.T) {
	fb := newFakeBackend()
	fb.commitGate = make(chan struct{})
	ts := startServer(t, fb)
	c := dialLogin(t, ts, "3")
	c.write("DELE 1\r\nQUIT\r\n")
	for i := 0; len(fb.commitCalls()) == 0; i++ {
		if i == 1000 {
			t.Fatal("Commit was not called")
		}
		time.Sleep(time.Millisecond)
	}
	if ts.srv.KickUser("alice") != 0 {
		t.Error("a session in its UPDATE state was kicked")
	}
	close(fb.commitGate)
	if got := c.readAll(); got != "+OK Message 1 deleted\r\n+OK Logging out, 1 messages deleted\r\n" {
		t.Errorf("got %q", got)
	}
	ts.expectBackend(t, fakeState{Logins: alice, Commits: [][]int{{0}}, Closes: 1})
}

func TestSessionIDsAreUnique(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := newSessionID()
		if seen[id] || len(id) > 16 {
			t.Fatalf("session id %q repeated or long", id)
		}
		seen[id] = true
	}
}

// Closing a connection cancels the call under way (a login nobody waits
// for any more); a call that starts after the close is over at once,
// and one that ended leaves nothing behind.
func TestStopCancelsTheCallUnderWay(t *testing.T) {
	c := &conn{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ended, end := c.callContext(time.Minute)
	end()
	if c.live.call != nil {
		t.Error("an ended call is still registered")
	}
	ctx, end := c.callContext(time.Minute)
	defer end()
	if ctx.Err() != nil {
		t.Fatalf("a new call's context is over: %v", ctx.Err())
	}
	c.stop()
	if ctx.Err() == nil || c.ctx.Err() == nil {
		t.Errorf("after stop: call %v, connection %v; want both cancelled", ctx.Err(), c.ctx.Err())
	}
	if ended.Err() != context.Canceled {
		t.Errorf("an ended call's context: %v, want canceled", ended.Err())
	}
	late, endLate := c.callContext(time.Minute)
	defer endLate()
	if late.Err() == nil {
		t.Error("a call that starts after stop is not cancelled")
	}
}
