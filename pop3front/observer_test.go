package pop3front

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recorder is an Observer that records every event as a line of text.
type recorder struct {
	mu     sync.Mutex
	events []string
	sent   int64
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recorder) ConnOpened(c ConnEvent)  { r.add("opened tls=%v", c.TLS) }
func (r *recorder) ConnRefused(c ConnEvent) { r.add("refused tls=%v", c.TLS) }
func (r *recorder) LoginDone(c ConnEvent, res LoginResult) {
	r.add("login %s", res)
}
func (r *recorder) CommandDone(c ConnEvent, cmd CommandEvent) {
	r.mu.Lock()
	r.sent += cmd.Sent
	r.mu.Unlock()
	r.add("%s %s truncated=%v deleted=%d", cmd.Name, cmd.Result, cmd.Truncated, cmd.Deleted)
}
func (r *recorder) ConnClosed(c ConnEvent, s SessionStats) {
	r.mu.Lock()
	r.sent += s.Unreported
	r.mu.Unlock()
	r.add("closed %s loggedin=%v retr=%d top=%d dele=%d deleted=%d flagged=%d octets=%d", s.Reason, s.LoggedIn, s.Retr, s.Top,
		s.Dele, s.Deleted, s.Flagged, s.Octets)
}

func (r *recorder) get() ([]string, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), r.sent
}

func TestObserverSeesEveryCommandAndTheSessionEnd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*Server)
		script    string
		want      []string
	}{
		{
			name:   "a whole session",
			script: "CAPA\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nRETR 1\r\nTOP 2 0\r\nRETR 7\r\nDELE 1\r\nDELE 3\r\nXYZZY secret\r\nQUIT\r\n",
			want: []string{"opened tls=false", "CAPA ok truncated=false deleted=0", "USER ok truncated=false deleted=0",
				"login auth_failed", "PASS err truncated=false deleted=0", "USER ok truncated=false deleted=0",
				"login ok", "PASS ok truncated=false deleted=0", "RETR ok truncated=false deleted=0",
				"TOP ok truncated=false deleted=0", "RETR err truncated=false deleted=0",
				"DELE ok truncated=false deleted=0", "DELE ok truncated=false deleted=0",
				"UNKNOWN err truncated=false deleted=0", "QUIT ok truncated=false deleted=2",
				// RETR 1 (23 octets) and TOP 2 0 (the 16-octet header).
				"closed quit loggedin=true retr=1 top=1 dele=2 deleted=2 flagged=0 octets=39"},
		},
		{
			name:      "plaintext refused",
			configure: func(s *Server) { s.PlaintextAllowed = func(ConnInfo) bool { return false } },
			script:    "USER alice\r\nQUIT\r\n",
			want: []string{"opened tls=false", "login refused_plaintext", "USER err truncated=false deleted=0",
				"QUIT ok truncated=false deleted=0", "closed quit loggedin=false retr=0 top=0 dele=0 deleted=0 flagged=0 octets=0"},
		},
		{
			name:      "a flag policy deletes nothing",
			configure: func(s *Server) { s.Backend.(*fakeBackend).policy = "flag" },
			script:    "USER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n",
			want: []string{"opened tls=false", "USER ok truncated=false deleted=0", "login ok", "PASS ok truncated=false deleted=0",
				"DELE ok truncated=false deleted=0", "QUIT ok truncated=false deleted=0",
				"closed quit loggedin=true retr=0 top=0 dele=1 deleted=0 flagged=1 octets=0"},
		},
		{
			name:   "the client leaves",
			script: "USER alice\r\nPASS secret\r\nDELE 1\r\n",
			want: []string{"opened tls=false", "USER ok truncated=false deleted=0", "login ok", "PASS ok truncated=false deleted=0",
				"DELE ok truncated=false deleted=0", "closed client closed loggedin=true retr=0 top=0 dele=1 deleted=0 flagged=0 octets=0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			ts := startServer(t, newFakeBackend(), func(s *Server) {
				s.Observer = rec
				if tc.configure != nil {
					tc.configure(s)
				}
			})
			c := dialRaw(t, ts)
			c.write(tc.script)
			var got string
			if !strings.HasSuffix(tc.script, "QUIT\r\n") {
				// The client hangs up once it has its answers.
				got = c.readLines(4)
				c.nc.(*net.TCPConn).CloseWrite()
			}
			got += c.readAll()
			ts.waitSessions(t)
			events, sent := rec.get()
			if !slices.Equal(events, tc.want) {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(tc.want, "\n"))
			}
			if sent != int64(len(got)) {
				t.Errorf("observer counted %d bytes sent, the client got %d", sent, len(got))
			}
		})
	}
}

func TestObserverSeesRefusedConnections(t *testing.T) {
	rec := &recorder{}
	ts := startServer(t, newFakeBackend(), func(s *Server) {
		s.Observer = rec
		s.MaxConnections = 1
	})
	first := dial(t, ts)
	second := dialRaw(t, ts)
	if got := second.readAll(); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Errorf("second connection got %q, want -ERR [SYS/TEMP]", got)
	}
	first.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.waitSessions(t)
	events, _ := rec.get()
	want := []string{"opened tls=false", "refused tls=false", "QUIT ok truncated=false deleted=0",
		"closed quit loggedin=false retr=0 top=0 dele=0 deleted=0 flagged=0 octets=0"}
	if !slices.Equal(events, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoginResultOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want LoginResult
	}{
		{nil, LoginOK},
		{ErrAuthFailed, LoginAuthFailed},
		{ErrPlaintextRefused, LoginRefusedPlaintext},
		{ErrRateLimited, LoginRateLimited},
		{fmt.Errorf("wrapped: %w", ErrRateLimited), LoginRateLimited},
		{&Error{Code: "LOGIN-DELAY", Text: "wait"}, LoginRateLimited},
		{&Error{Code: "AUTH", Text: "other"}, LoginAuthFailed},
		{ErrUnavailable, LoginUpstreamError},
		{ErrInUse, LoginInUse},
		{errors.New("backend broke"), LoginUpstreamError},
	} {
		if got := loginResultOf(tc.err); got != tc.want {
			t.Errorf("loginResultOf(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestLoggableArgsHideSecrets(t *testing.T) {
	for _, tc := range []struct{ cmd, args, want string }{
		{"PASS", "hunter2 with spaces", "<redacted>"},
		{"PASS", "", ""},
		{"AUTH", "PLAIN AGFsaWNlAHNlY3JldA==", "PLAIN <redacted>"},
		{"AUTH", "PLAIN", "PLAIN"},
		{"AUTH", "", ""},
		{"UNKNOWN", "hunter2", "<redacted>"},
		{"USER", "alice", "alice"},
		{"RETR", "1", "1"},
		{"TOP", strings.Repeat("9", 100), strings.Repeat("9", 64)},
	} {
		if got := loggableArgs(tc.cmd, []byte(tc.args)); got != tc.want {
			t.Errorf("loggableArgs(%s, %q) = %q, want %q", tc.cmd, tc.args, got, tc.want)
		}
	}
}

// TestObserverCountsTheAuthContinuationAsAuth: the lines a client sends
// after "+ " belong to AUTH (issue 16.6, with the exchanges curl and mpop
// use); they never count as commands of their own, whether the client
// waits for each challenge or sends everything at once.
func TestObserverCountsTheAuthContinuationAsAuth(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name      string
		exchanges []exchange
		result    string
	}{
		{"PLAIN, as curl and mpop send it", []exchange{{"AUTH PLAIN\r\n", "+ \r\n"},
			{plain("", "alice", "secret") + "\r\n", "+OK Logged in, 3 messages\r\n"}}, "login ok;AUTH ok"},
		{"PLAIN, pipelined", []exchange{{"AUTH PLAIN\r\n" + plain("", "alice", "secret") + "\r\n",
			"+ \r\n+OK Logged in, 3 messages\r\n"}}, "login ok;AUTH ok"},
		{"PLAIN, wrong password", []exchange{{"AUTH PLAIN\r\n", "+ \r\n"},
			{plain("", "alice", "guess") + "\r\n", "-ERR [AUTH] Authentication failed\r\n"}}, "login auth_failed;AUTH err"},
		{"PLAIN, cancelled", []exchange{{"AUTH PLAIN\r\n", "+ \r\n"}, {"*\r\n", "-ERR Authentication cancelled\r\n"}},
			"AUTH err"},
		{"LOGIN", []exchange{{"AUTH LOGIN\r\n", "+ VXNlcm5hbWU6\r\n"}, {b64("alice") + "\r\n", "+ UGFzc3dvcmQ6\r\n"},
			{b64("secret") + "\r\n", "+OK Logged in, 3 messages\r\n"}}, "login ok;AUTH ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			ts := startServer(t, newFakeBackend(), func(s *Server) { s.Observer = rec })
			c := dial(t, ts)
			for _, e := range tc.exchanges {
				c.expect(e.send, e.want)
			}
			c.expect("QUIT\r\n", "+OK Logging out\r\n")
			ts.waitSessions(t)
			events, _ := rec.get()
			var got []string
			for _, e := range events[1 : len(events)-2] { // between opened and QUIT, closed
				got = append(got, strings.Fields(e)[0]+" "+strings.Fields(e)[1])
			}
			if strings.Join(got, ";") != tc.result {
				t.Errorf("events %q, want %s between opened and QUIT", events, tc.result)
			}
		})
	}
}
