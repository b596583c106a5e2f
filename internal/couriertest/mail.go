// How tests reach a running instance's mail: delivery into a maildir,
// a logged-in client, and what Courier serves for a message that is gone.

package couriertest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testkit"
)

// UnavailableBody is what Courier serves as BODY[] of a message that
// another session expunged and this session has not yet been told about.
const UnavailableBody = "From: System Administrator <root@localhost>\r\n" +
	"Subject: message unavailable\r\n" +
	"\r\n" +
	"This message is no longer available on the server.\r\n"

// Deliver stores raw in the user's INBOX the way Courier stores mail: each
// CRLF becomes LF (bare CR and bare LF stay as they are). DeliverRaw
// stores the octets as given.
func (s *Server) Deliver(t testing.TB, user string, raw []byte) {
	t.Helper()
	s.DeliverRaw(t, user, []byte(strings.ReplaceAll(string(raw), "\r\n", "\n")))
}

// DeliverRaw writes data as a new message in the user's INBOX maildir, as
// a delivery agent does: written to tmp/, owned by the mail user, then
// renamed into new/. Names share the server's start time and carry a
// zero-padded counter, so messages delivered in order get increasing
// UIDs. A session with the mailbox selected sees the message on its next
// NOOP.
func (s *Server) DeliverRaw(t testing.TB, user string, data []byte) {
	t.Helper()
	if _, ok := s.users[user]; !ok {
		t.Fatalf("couriertest: Deliver to unknown user %q", user)
	}
	name := fmt.Sprintf("%d.Q%012d.couriertest", s.stamp, s.seq.Add(1))
	if err := testkit.DeliverMaildir(s.maildir(user), name, data, s.mailUID, s.mailGID); err != nil {
		t.Fatalf("couriertest: Deliver: %v", err)
	}
}

// Dial returns a logged-in go-imap v2 client (plain), closed by t.Cleanup.
func (s *Server) Dial(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	return testkit.LoginIMAP(t, "couriertest", s.IMAPAddr, s.users, user, s.Log)
}

// Password returns the user's password, for clients other than Dial's.
func (s *Server) Password(user string) string { return s.users[user] }

// Log returns what authdaemond and couriertcpd wrote to stdout and stderr
// (imapd itself logs to syslog, which a test machine rarely runs).
func (s *Server) Log() string {
	data, err := os.ReadFile(s.outPath())
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", s.outPath(), err)
	}
	return string(data)
}
