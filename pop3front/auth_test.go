package pop3front

import (
	"encoding/base64"
	"testing"
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
