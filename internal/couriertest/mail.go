// How tests reach a running instance's mail: delivery into a maildir,
// a logged-in client, and what Courier serves for a message that is gone.

package couriertest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
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
	tmp := s.maildir(user, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("couriertest: Deliver: %v", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chown(s.mailUID, s.mailGID)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.maildir(user, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
		t.Fatalf("couriertest: Deliver: %v", err)
	}
}

// Dial returns a logged-in go-imap v2 client (plain), closed by t.Cleanup.
func (s *Server) Dial(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	pass, ok := s.users[user]
	if !ok {
		t.Fatalf("couriertest: Dial as unknown user %q", user)
	}
	c, err := imapclient.DialInsecure(s.IMAPAddr, nil)
	if err != nil {
		t.Fatalf("couriertest: dial %s: %v", s.IMAPAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("couriertest: login as %q: %v\n%s", user, err, s.Log())
	}
	return c
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
