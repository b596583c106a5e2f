package pop3front

import (
	"encoding/base64"
	"log/slog"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// The debug log of an AUTH exchange names the mechanism and nothing of
// the SASL lines that followed it: they are read into the buffer that
// held the command line, and a log of that buffer would show the
// password's base64 in place of the mechanism.
func TestAuthLogShowsNoSASLLines(t *testing.T) {
	var logs testkit.LockedBuffer
	ts := startServer(t, newFakeBackend(), func(s *Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	b64 := base64.StdEncoding.EncodeToString
	for _, exchange := range [][]string{
		{"AUTH LOGIN", "+ VXNlcm5hbWU6", b64([]byte("alice")), "+ UGFzc3dvcmQ6", b64([]byte("secret")), "+OK", "QUIT", "+OK"},
		{"AUTH PLAIN", "+ ", plain("", "alice", "secret"), "+OK", "QUIT", "+OK"},
	} {
		c := dial(t, ts)
		for i := 0; i < len(exchange); i += 2 {
			c.write(exchange[i] + "\r\n")
			if got, err := c.br.ReadString('\n'); err != nil || !strings.HasPrefix(got, exchange[i+1]) {
				t.Fatalf("sent %q, got %q (%v), want %q", exchange[i], got, err, exchange[i+1])
			}
		}
	}
	ts.waitSessions(t)
	log := logs.String()
	for _, want := range []string{"cmd=AUTH args=LOGIN result=ok", "cmd=AUTH args=PLAIN result=ok"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %q:\n%s", want, log)
		}
	}
	for _, secret := range []string{b64([]byte("secret")), plain("", "alice", "secret"), "c2Vj", "AGFs"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q:\n%s", secret, log)
		}
	}
}
