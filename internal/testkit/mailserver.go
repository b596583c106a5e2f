package testkit

// What the harnesses and tests of real mail servers (Dovecot, Courier,
// Cyrus) share to set an instance up, to put mail in and to talk to the
// server: SystemUser, HarnessUsers, CheckUsers, HarnessDir, MaildirDelivery,
// DeliverMaildir, LoginIMAP, DialGreeted and WireForm.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// SystemUser returns the uid and gid of the system user name, which a
// mail-server harness needs (role says what for); its absence fails t.
func SystemUser(t testing.TB, harness, name, role string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("%s: system user %q (%s) is missing: %v", harness, name, role, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// HarnessUsers is the accounts a mail-server harness creates: users, or
// the single user alice with password secret when users is nil.
func HarnessUsers(users map[string]string) map[string]string {
	if users == nil {
		return map[string]string{"alice": "secret"}
	}
	return users
}

// CheckUsers fails t, naming harness, for a user name that valid does not
// match or that is reserved (the harness's own account), and for a
// password with a line break, which a login line cannot carry.
func CheckUsers(t testing.TB, harness string, users map[string]string, valid *regexp.Regexp, reserved string) {
	t.Helper()
	for name, pass := range users {
		if !valid.MatchString(name) || name == reserved {
			t.Fatalf("%s: unsupported user name %q", harness, name)
		}
		if strings.ContainsAny(pass, "\r\n") {
			t.Fatalf("%s: password for %q contains a line break", harness, name)
		}
	}
}

// HarnessDir makes a mail-server instance's temp dir, named after
// harness, and removes it when the test ends: registered before the
// server's own cleanups, it runs after the server stopped. Not
// t.TempDir: its path embeds the test name and could exceed the UNIX
// socket path limit, and its 0700 parent would have to be opened up for
// the server's unprivileged processes.
func HarnessDir(t testing.TB, harness string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", harness+"-")
	if err != nil {
		t.Fatalf("%s: %v", harness, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// MaildirDelivery puts test mail into the INBOX maildirs of a harness's
// users. The file names share the time the delivery was made and carry a
// zero-padded counter, so that messages delivered in order get
// increasing UIDs: Dovecot and Courier sort new files by the leading
// number of their name, then by the rest of it.
type MaildirDelivery struct {
	harness  string
	users    map[string]string
	maildir  func(user string) string
	uid, gid int
	stamp    int64
	seq      atomic.Uint64
}

// NewMaildirDelivery delivers into maildir(user), for each user of users,
// as files owned by uid:gid; harness starts every message.
func NewMaildirDelivery(harness string, users map[string]string, maildir func(user string) string, uid, gid int) *MaildirDelivery {
	return &MaildirDelivery{harness: harness, users: users, maildir: maildir, uid: uid, gid: gid, stamp: time.Now().Unix()}
}

// Deliver stores data, exactly as given, as a new message in the user's
// INBOX (see DeliverMaildir); an unknown user fails t.
func (d *MaildirDelivery) Deliver(t testing.TB, user string, data []byte) {
	t.Helper()
	if _, ok := d.users[user]; !ok {
		t.Fatalf("%s: Deliver to unknown user %q", d.harness, user)
	}
	name := fmt.Sprintf("%d.Q%012d.%s", d.stamp, d.seq.Add(1), d.harness)
	if err := DeliverMaildir(d.maildir(user), name, data, d.uid, d.gid); err != nil {
		t.Fatalf("%s: Deliver: %v", d.harness, err)
	}
}

// DeliverMaildir stores data, exactly as given, as the message name in
// the maildir dir the way a delivery agent does: written to tmp/, owned
// by uid:gid, then renamed into new/, so that the server never sees half
// a message.
func DeliverMaildir(dir, name string, data []byte, uid, gid int) error {
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// LoginIMAP returns a go-imap v2 client (plain, no TLS) logged in at addr
// as user with the password users holds, closed by t.Cleanup. It fails t
// with a message that starts with harness and, on a failed login, ends
// with the server's log.
func LoginIMAP(t testing.TB, harness, addr string, users map[string]string, user string, log func() string) *imapclient.Client {
	t.Helper()
	pass, ok := users[user]
	if !ok {
		t.Fatalf("%s: Dial as unknown user %q", harness, user)
	}
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", harness, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("%s: login as %q: %v\n%s", harness, user, err, log())
	}
	return c
}

// WireForm is what a POP3 server sends for a message before
// dot-stuffing: every bare LF as CRLF, and a final CRLF after a last line
// that has none (a trailing bare CR stays data).
func WireForm(body []byte) []byte {
	var out []byte
	for i, b := range body {
		if b == '\n' && (i == 0 || body[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

// DialGreeted connects to addr for a test that speaks the protocol by
// hand, and reads the server's greeting line. The connection is closed
// by t.Cleanup and must be done within timeout.
func DialGreeted(t testing.TB, addr string, timeout time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	return c, r
}
