package testkit

// What tests of real mail servers (Dovecot, Courier, Cyrus) share to put
// mail in and to talk to the server: DeliverMaildir, LoginIMAP and
// DialGreeted.

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

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
