package pop3front

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestControlCharactersNeverReachTheBackend reproduces issue 15.2's
// attack: a user name with a NUL that the upstream cuts ("user10\0user11"
// logs in user10) while the limits and locks count another name. Every
// login path refuses control characters before the Backend sees them, and
// the session goes on.
func TestControlCharactersNeverReachTheBackend(t *testing.T) {
	const refused = "-ERR [AUTH] User names and passwords cannot contain control characters\r\n"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ name, send, want string }{
		{"NUL in USER", "USER user10\x00user11\r\n", refused},
		{"CR inside USER", "USER alice\rbob\r\n", refused},
		{"tab in USER", "USER ali\tce\r\n", refused},
		{"escape in USER", "USER alice\x1b[2J\r\n", refused},
		{"NUL in PASS", "USER alice\r\nPASS sec\x00ret\r\n", "+OK Send your password\r\n" + refused},
		{"DEL in PASS", "USER alice\r\nPASS secret\x7f\r\n", "+OK Send your password\r\n" + refused},
		// In PLAIN a NUL separates the parts: a fourth part is malformed.
		{"NUL in the AUTH PLAIN user", "AUTH PLAIN " + plain("", "user10\x00user11", "secret") + "\r\n",
			"-ERR Invalid SASL PLAIN response\r\n"},
		{"control character in the AUTH PLAIN user", "AUTH PLAIN " + plain("", "user10\x01user11", "secret") + "\r\n", refused},
		{"control character in the AUTH PLAIN authzid", "AUTH PLAIN " + plain("alice\n", "alice", "secret") + "\r\n", refused},
		{"control character in the AUTH PLAIN password", "AUTH PLAIN\r\n" + plain("", "alice", "sec\nret") + "\r\n",
			"+ \r\n" + refused},
		{"NUL in the AUTH LOGIN initial response", "AUTH LOGIN " + b64("user10\x00user11") + "\r\n", refused},
		{"NUL in the AUTH LOGIN user", "AUTH LOGIN\r\n" + b64("user10\x00user11") + "\r\n", "+ VXNlcm5hbWU6\r\n" + refused},
		{"NUL in the AUTH LOGIN password", "AUTH LOGIN " + b64("alice") + "\r\n" + b64("secret\x00") + "\r\n",
			"+ UGFzc3dvcmQ6\r\n" + refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, newFakeBackend())
			c := dial(t, ts)
			c.expect(tc.send, tc.want)
			// Nothing was remembered from the refused USER.
			c.expect("PASS secret\r\n", "-ERR Send USER first\r\n")
			c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
			c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
			ts.expectBackend(t, fakeState{Logins: alice, Commits: [][]int{nil}, Closes: 1})
		})
	}
}

// TestReconnectAfterTheEndIsNeverRefused: with a limit of one connection,
// a client that reconnects as soon as it has read the last answer (QUIT's,
// or the -ERR before a close) is served, although the server may still be
// logging out upstream (issue 15.6).
func TestReconnectAfterTheEndIsNeverRefused(t *testing.T) {
	perIP := func(s *Server) { s.MaxConnectionsPerIP = 1 }
	for _, tc := range []struct {
		name      string
		configure func(*Server)
		steps     string // sent and answered before the end
		answers   string
		end       exchange
	}{
		{"per address, QUIT", perIP, "", "", exchange{"QUIT\r\n", "+OK Logging out\r\n"}},
		{"per address, QUIT after login", perIP, "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n+OK Logged in, 3 messages\r\n", exchange{"QUIT\r\n", "+OK Logging out\r\n"}},
		{"per address, -ERR and close", perIP, "", "",
			exchange{"PROXY TCP4 192.0.2.1 127.0.0.1 5555 110\r\n", "-ERR PROXY protocol header not accepted from this address\r\n"}},
		{"per address, three failed logins", perIP, "USER alice\r\nPASS a\r\nUSER alice\r\nPASS b\r\n",
			strings.Repeat("+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n", 2),
			exchange{"USER alice\r\nPASS c\r\n", "+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n"}},
		{"in all, QUIT after login", func(s *Server) { s.MaxConnections = 1 }, "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n+OK Logged in, 3 messages\r\n", exchange{"QUIT\r\n", "+OK Logging out\r\n"}},
		{"through ConnectionSlot, QUIT after login", oneSlotPerAddress, "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n+OK Logged in, 3 messages\r\n", exchange{"QUIT\r\n", "+OK Logging out\r\n"}},
		{"through ConnectionSlot, -ERR and close", oneSlotPerAddress, "", "",
			exchange{"PROXY TCP4 192.0.2.1 127.0.0.1 5555 110\r\n", "-ERR PROXY protocol header not accepted from this address\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend()
			fb.closeDelay = 2 * time.Millisecond // the upstream logout
			ts := startServer(t, fb, tc.configure)
			for i := range 200 {
				c := dialRaw(t, ts)
				if got := c.readLines(1); got != greeting {
					t.Fatalf("connection %d got %q", i+1, got)
				}
				c.expect(tc.steps, tc.answers)
				// The last answer read, not the close: the client may go on
				// at once.
				c.expect(tc.end.send, tc.end.want)
				c.nc.Close()
			}
		})
	}
}

// oneSlotPerAddress counts connections per address itself, through
// Server.ConnectionSlot, and allows one.
func oneSlotPerAddress(s *Server) {
	var mu sync.Mutex
	held := make(map[netip.Addr]bool)
	s.ConnectionSlot = func(_ context.Context, ip netip.Addr) (func(), bool) {
		mu.Lock()
		defer mu.Unlock()
		if held[ip] {
			return nil, false
		}
		held[ip] = true
		return func() {
			mu.Lock()
			delete(held, ip)
			mu.Unlock()
		}, true
	}
}

// TestAuthTimeoutBoundsTheWholeAuthorizationState: a client that keeps
// sending commands but never logs in is closed AuthTimeout after the
// greeting, with an answer; once logged in, only the idle timeout
// applies.
func TestAuthTimeoutBoundsTheWholeAuthorizationState(t *testing.T) {
	const timeout = 300 * time.Millisecond
	const answer = "-ERR Autologout; authentication took too long\r\n"
	for _, tc := range []struct {
		name string
		busy string // sent every 50 ms until the close
		last exchange
	}{
		{"active without a login", "USER alice\r\n", exchange{"", answer}},
		{"waiting in an AUTH continuation", "", exchange{"AUTH PLAIN\r\n", "+ \r\n" + answer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend()
			ts := startServer(t, fb, func(s *Server) { s.AuthTimeout = timeout })
			c := dial(t, ts)
			start := time.Now()
			for tc.busy != "" && time.Since(start) < timeout/2 {
				c.expect(tc.busy, "+OK Send your password\r\n")
				time.Sleep(50 * time.Millisecond) // time passing, not synchronisation
			}
			c.expectClosed(tc.last.send, tc.last.want)
			if d := time.Since(start); d < timeout-50*time.Millisecond || d > clientTimeout/2 {
				t.Errorf("closed %v after the greeting, want about %v", d, timeout)
			}
			ts.expectBackend(t, fakeState{})
		})
	}
	t.Run("not after the login", func(t *testing.T) {
		// Room for the login itself on a loaded machine.
		const timeout = time.Second
		ts := startServer(t, newFakeBackend(), func(s *Server) { s.AuthTimeout = timeout })
		c := dialLogin(t, ts, "3")
		time.Sleep(2 * timeout) // time passing, not synchronisation
		c.expect("STAT\r\n", "+OK 3 68\r\n")
		c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	})
}

func TestIdleTimeoutClosesTheConnection(t *testing.T) {
	for _, login := range []bool{false, true} {
		t.Run(fmt.Sprintf("login=%v", login), func(t *testing.T) {
			fb := newFakeBackend()
			// Room for the login and DELE on a loaded machine.
			ts := startServer(t, fb, func(s *Server) { s.IdleTimeout = time.Second })
			var c *client
			if login {
				c = dialLogin(t, ts, "3")
				c.expect("DELE 1\r\n", "+OK Message 1 deleted\r\n")
			} else {
				c = dial(t, ts)
			}
			// The autologout timer closes the connection (RFC 1939
			// section 3), saying why; the client's own deadline is far
			// later.
			start := time.Now()
			if got := c.readAll(); got != "-ERR Autologout; idle for too long\r\n" {
				t.Errorf("got %q before the close", got)
			}
			if d := time.Since(start); d >= clientTimeout/2 {
				t.Errorf("closed after %v", d)
			}
			var want fakeState // DELE 1 is not committed
			if login {
				want = fakeState{Logins: alice, Closes: 1}
			}
			ts.expectBackend(t, want)
		})
	}
}

func TestIdleTimeoutRestartsWithEachCommand(t *testing.T) {
	// Far more than the 50 ms between two commands, which a loaded
	// machine may stretch to a few hundred.
	const idle = 1500 * time.Millisecond
	ts := startServer(t, newFakeBackend(), func(s *Server) { s.IdleTimeout = idle })
	c := dialLogin(t, ts, "3")
	start := time.Now()
	for time.Since(start) < idle*3/2 {
		c.expect("NOOP\r\n", "+OK\r\n")
		time.Sleep(50 * time.Millisecond) // time passing, not synchronisation
	}
}

func TestMaxConnectionsRefusesTheExtraConnection(t *testing.T) {
	ts := startServer(t, newFakeBackend(), func(s *Server) { s.MaxConnections = 2 })
	c1 := dial(t, ts)
	c2 := dialLogin(t, ts, "3")
	c3 := dialRaw(t, ts)
	if got := c3.readAll(); got != "-ERR [SYS/TEMP] Too many connections, try again later\r\n" {
		t.Errorf("extra connection got %q", got)
	}
	c1.expect("CAPA\r\n", "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"+
		"USER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION popbridge\r\n.\r\n")
	c2.expect("STAT\r\n", "+OK 3 68\r\n")
	c1.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.expectSlotFreed(t, "-ERR [SYS/TEMP] Too many connections, try again later\r\n")
}
