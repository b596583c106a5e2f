package pop3front

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAuthLogin covers the LOGIN mechanism as Dovecot and Exchange speak
// it, with exact bytes: "+ VXNlcm5hbWU6" ("Username:") and
// "+ UGFzc3dvcmQ6" ("Password:"), answered in base64.
func TestAuthLogin(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	const (
		askUser = "+ VXNlcm5hbWU6\r\n"
		askPass = "+ UGFzc3dvcmQ6\r\n"
		ok      = "+OK Logged in, 3 messages\r\n"
		failed  = "-ERR [AUTH] Authentication failed\r\n"
	)
	for _, tc := range []struct {
		name   string
		send   string
		want   string
		logins []string
	}{
		{"two continuations", "AUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("secret") + "\r\n",
			askUser + askPass + ok, alice},
		{"lower case, bare LF", "auth login\n" + b64("alice") + "\n" + b64("secret") + "\n", askUser + askPass + ok, alice},
		{"initial response: only the password is asked for", "AUTH LOGIN " + b64("alice") + "\r\n" + b64("secret") + "\r\n",
			askPass + ok, alice},
		{"password with spaces and UTF-8", "AUTH LOGIN " + b64("alice") + "\r\n" + b64(" pässword ") + "\r\n",
			askPass + failed, []string{"alice/ pässword "}},
		{"empty password", "AUTH LOGIN " + b64("alice") + "\r\n=\r\n", askPass + failed, []string{"alice/"}},
		{"wrong password", "AUTH LOGIN " + b64("alice") + "\r\n" + b64("guess") + "\r\n", askPass + failed,
			[]string{"alice/guess"}},
		{"cancel at the user name", "AUTH LOGIN\r\n*\r\n", askUser + "-ERR Authentication cancelled\r\n", nil},
		{"cancel at the password", "AUTH LOGIN " + b64("alice") + "\r\n*\r\n", askPass + "-ERR Authentication cancelled\r\n", nil},
		{"cancel as the initial response", "AUTH LOGIN *\r\n", "-ERR Authentication cancelled\r\n", nil},
		{"empty user name", "AUTH LOGIN\r\n=\r\n", askUser + "-ERR Invalid SASL LOGIN response\r\n", nil},
		{"bad base64 user name", "AUTH LOGIN\r\nalice\r\n", askUser + "-ERR Invalid base64 data\r\n", nil},
		{"bad base64 password", "AUTH LOGIN " + b64("alice") + "\r\nsecret\r\n", askPass + "-ERR Invalid base64 data\r\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, newFakeBackend())
			c := dial(t, ts)
			c.expect(tc.send, tc.want)
			c.nc.Close()
			want := fakeState{Logins: tc.logins}
			if tc.want[len(tc.want)-len(ok):] == ok {
				want.Closes = 1
			}
			ts.expectBackend(t, want)
		})
	}
}

// TestAuthLoginFollowsThePlaintextPolicy: refused before the client sends
// anything in clear, and not listed.
func TestAuthLoginFollowsThePlaintextPolicy(t *testing.T) {
	ts := startServer(t, newFakeBackend(), func(s *Server) { s.PlaintextAllowed = func(ConnInfo) bool { return false } })
	c := dial(t, ts)
	c.expect("AUTH\r\n", "+OK Supported mechanisms follow\r\n.\r\n")
	c.expect("AUTH LOGIN\r\n", refusedAnswer)
	c.expect("AUTH LOGIN YWxpY2U=\r\n", refusedAnswer)
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.expectBackend(t, fakeState{})
}

func TestUserPassLogin(t *testing.T) {
	tests := []struct {
		name     string
		loginErr error
		send     string
		want     string
		wantPass string
	}{
		{"success", nil, "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n+OK Logged in, 3 messages\r\n", "secret"},
		{"wrong password", nil, "USER alice\r\nPASS guess\r\n",
			"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n", "guess"},
		{"unknown user", nil, "USER bob\r\nPASS secret\r\n",
			"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n", "secret"},
		{"backend unavailable", ErrUnavailable, "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n-ERR [SYS/TEMP] Mail server temporarily unavailable, try again later\r\n", "secret"},
		{"maildrop in use", ErrInUse, "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n-ERR [IN-USE] Mailbox is in use by another session\r\n", "secret"},
		{"wrapped auth error", fmt.Errorf("ldap: %w", ErrAuthFailed), "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n", "secret"},
		{"plain error does not leak", errors.New("dial imap.internal:993: password hunter2 rejected"), "USER alice\r\nPASS secret\r\n",
			"+OK Send your password\r\n-ERR [SYS/TEMP] Internal error, try again later\r\n", "secret"},
		{"password with spaces", nil, "USER alice\r\nPASS  pass with  spaces \r\n",
			"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n", " pass with  spaces "},
		{"empty password", nil, "USER alice\r\nPASS\r\n",
			"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := newFakeBackend()
			fb.loginErr = tt.loginErr
			ts := startServer(t, fb)
			c := dial(t, ts)
			c.expect(tt.send, tt.want)
			calls := fb.loginCalls()
			if len(calls) != 1 {
				t.Fatalf("Login called %d times, want 1", len(calls))
			}
			if calls[0].pass != tt.wantPass {
				t.Errorf("Login got password %q, want %q", calls[0].pass, tt.wantPass)
			}
			info := calls[0].info
			if info.RemoteAddr.String() != c.nc.LocalAddr().String() || info.LocalAddr.String() != ts.addr || info.TLS {
				t.Errorf("Login got ConnInfo %+v, want remote %s local %s TLS false", info, c.nc.LocalAddr(), ts.addr)
			}
		})
	}
}

func TestAuthFailureDelayIsCutShortByClose(t *testing.T) {
	fb := newFakeBackend()
	fb.loginCalled = make(chan struct{}, 1)
	ts := startServer(t, fb, func(s *Server) { s.AuthFailureDelay = time.Hour })
	c := dial(t, ts)
	c.expect("USER alice\r\n", "+OK Send your password\r\n")
	c.write("PASS wrong\r\n")
	<-fb.loginCalled
	done := make(chan struct{})
	go func() { ts.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(clientTimeout):
		t.Fatal("Close waited for the auth failure delay")
	}
	// The failure answer is not sent: the connection was closed first.
	if got := c.readAll(); got != "" {
		t.Errorf("got %q", got)
	}
}

func TestAuthFailureDelayDelaysTheAnswer(t *testing.T) {
	const delay = 100 * time.Millisecond
	ts := startServer(t, newFakeBackend(), func(s *Server) { s.AuthFailureDelay = delay })
	c := dial(t, ts)
	start := time.Now()
	c.expect("USER alice\r\nPASS wrong\r\n", "+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n")
	if d := time.Since(start); d < delay {
		t.Errorf("failed login answered after %v, want at least %v", d, delay)
	}
	c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
}

func TestAuthPlain(t *testing.T) {
	ok := "+OK Logged in, 3 messages\r\n"
	tests := []struct {
		name      string
		send      string
		want      string
		wantLogin bool // Login was called with alice/secret
	}{
		{"initial response", "AUTH PLAIN " + plain("", "alice", "secret") + "\r\n", ok, true},
		{"lower case mechanism", "auth plain " + plain("", "alice", "secret") + "\r\n", ok, true},
		{"authzid equal to user", "AUTH PLAIN " + plain("alice", "alice", "secret") + "\r\n", ok, true},
		{"continuation", "AUTH PLAIN\r\n" + plain("", "alice", "secret") + "\r\n", "+ \r\n" + ok, true},
		{"wrong password", "AUTH PLAIN " + plain("", "alice", "nope") + "\r\n",
			"-ERR [AUTH] Authentication failed\r\n", false},
		{"cancel", "AUTH PLAIN\r\n*\r\n", "+ \r\n-ERR Authentication cancelled\r\n", false},
		{"empty initial response", "AUTH PLAIN =\r\n", "-ERR Invalid SASL PLAIN response\r\n", false},
		{"empty continuation", "AUTH PLAIN\r\n\r\n", "+ \r\n-ERR Invalid SASL PLAIN response\r\n", false},
		{"bad base64", "AUTH PLAIN !!!!\r\n", "-ERR Invalid base64 data\r\n", false},
		{"bad base64 continuation", "AUTH PLAIN\r\nnot base64\r\n", "+ \r\n-ERR Invalid base64 data\r\n", false},
		{"one NUL only", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("alice\x00secret")) + "\r\n", "-ERR Invalid SASL PLAIN response\r\n", false},
		{"empty user", "AUTH PLAIN " + plain("", "", "secret") + "\r\n", "-ERR Invalid SASL PLAIN response\r\n", false},
		{"authzid mismatch", "AUTH PLAIN " + plain("admin", "alice", "secret") + "\r\n",
			"-ERR [AUTH] Authorization identity must match the user\r\n", false},
		{"bare AUTH lists mechanisms", "AUTH\r\n", "+OK Supported mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n", false},
		{"unsupported mechanism", "AUTH CRAM-MD5\r\n", "-ERR Unsupported authentication mechanism\r\n", false},
		{"unsupported mechanism with response", "AUTH CRAM-MD5 YWxpY2U=\r\n", "-ERR Unsupported authentication mechanism\r\n", false},
		{"cancel as the initial response", "AUTH PLAIN *\r\n", "-ERR Authentication cancelled\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := newFakeBackend()
			ts := startServer(t, fb)
			c := dial(t, ts)
			c.expect(tt.send, tt.want)
			calls := fb.loginCalls()
			if tt.wantLogin {
				if len(calls) != 1 || calls[0].user != "alice" || calls[0].pass != "secret" {
					t.Errorf("Login calls = %+v, want one for alice/secret", calls)
				}
				c.expect("STAT\r\n", "+OK 3 68\r\n")
			} else if tt.want == "-ERR [AUTH] Authentication failed\r\n" {
				if len(calls) != 1 {
					t.Errorf("Login called %d times, want 1", len(calls))
				}
			} else if len(calls) != 0 {
				t.Errorf("Login called %d times, want none", len(calls))
			}
			c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
		})
	}
}

func TestAuthLinesUpTo1024Octets(t *testing.T) {
	// passFor returns a password that makes the base64 response n octets.
	passFor := func(n int) string { return strings.Repeat("p", n/4*3-len("\x00alice\x00")) }
	tests := []struct {
		name   string
		b64len int
		send   func(resp string) string
		want   string
	}{
		{"initial response, 1021 octets", 1008,
			func(r string) string { return "AUTH PLAIN " + r + "\r\n" }, "+OK Logged in, 3 messages\r\n"},
		{"initial response, 1024 octets with bare LF", 1012,
			func(r string) string { return "AUTH PLAIN " + r + "\n" }, "+OK Logged in, 3 messages\r\n"},
		{"initial response, 1025 octets", 1012,
			func(r string) string { return "AUTH PLAIN " + r + "\r\n" }, "-ERR Line too long\r\n"},
		{"continuation, 1022 octets", 1020,
			func(r string) string { return "AUTH PLAIN\r\n" + r + "\r\n" }, "+ \r\n+OK Logged in, 3 messages\r\n"},
		{"continuation, 1026 octets", 1024,
			func(r string) string { return "AUTH PLAIN\r\n" + r + "\r\n" }, "+ \r\n-ERR Authentication line too long\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := newFakeBackend()
			fb.pass = passFor(tt.b64len)
			resp := plain("", "alice", fb.pass)
			if len(resp) != tt.b64len {
				t.Fatalf("test bug: response is %d octets, want %d", len(resp), tt.b64len)
			}
			ts := startServer(t, fb)
			c := dial(t, ts)
			c.expect(tt.send(resp), tt.want)
			// The session goes on either way.
			c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
		})
	}
}
