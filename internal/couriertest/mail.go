// How tests reach a running instance's mail: delivery into a maildir,
// a logged-in client, and what Courier serves for a message that is gone.

package couriertest

import (
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
// renamed into new/. Messages delivered in order get increasing UIDs. A
// session with the mailbox selected sees the message on its next NOOP.
func (s *Server) DeliverRaw(t testing.TB, user string, data []byte) {
	t.Helper()
	s.delivery.Deliver(t, user, data)
}

// Dial returns a logged-in go-imap v2 client (plain), closed by t.Cleanup.
func (s *Server) Dial(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	return testkit.LoginIMAP(t, "couriertest", s.IMAPAddr, s.users, user, s.Log)
}

// Password returns the user's password, for clients other than Dial's.
func (s *Server) Password(user string) string { return s.users[user] }
