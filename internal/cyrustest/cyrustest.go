// Package cyrustest starts a private, throw-away Cyrus IMAP server
// (Debian's cyrus-imapd 3.6) on 127.0.0.1 for Go tests, so that code
// talking IMAP can be checked against a second real server besides
// Dovecot.
//
// Each instance has its own imapd.conf, cyrus.conf, configuration
// directory, spool, SASL database and sockets in a fresh temp dir; nothing
// from /etc is read, so parallel instances and a system Cyrus never
// collide. Users are created in a private sasldb (sasl_pwcheck_method
// auxprop, plugin sasldb) and their INBOX ("user/NAME") by the admin user
// "cyrus" over IMAP. The namespace settings are Cyrus 3's defaults
// (altnamespace and unixhierarchysep on: a user's folders are "Trash",
// not "INBOX.Trash"), not Debian's /etc/imapd.conf, which turns both off. The master must start as root: it switches to the
// "cyrus" user, which Debian's cyrus-common creates.
//
// cyrus-imapd and dovecot-imapd conflict as Debian packages (both provide
// imap-server), so on a machine with Dovecot installed the imapd binary is
// taken from the unpacked package: .ci/run installs cyrus-common and
// sasl2-bin and unpacks cyrus-imapd into /opt/cyrus-imapd with
// "apt-get download cyrus-imapd" and "dpkg-deb -x". $CYRUS_IMAPD names
// another imapd binary.
//
// Facts measured with Cyrus IMAP 3.6.1 (Debian 12); the tests in this
// package pin them down:
//
//   - APPEND refuses a message with a bare LF ("Message contains bare
//     newlines"), with NUL ("Message contains NUL characters") and an
//     empty one ("Zero-length message literal"), and one whose header
//     runs to the end without a line end ("Message contains invalid
//     header"). A bare CR is stored as it is. 8-bit octets in header
//     fields become "X" (munge8bit).
//   - RFC822.SIZE is the size of BODY[], the stored octets.
//   - A message without a final line end is stored and served without one.
//   - Capabilities include UIDPLUS, MOVE, BINARY, CONDSTORE, QRESYNC and
//     SASL-IR, not IMAP4rev2; UIDVALIDITY is the mailbox creation time.
//   - Start-up takes about half a second; logs go to syslog, which a test
//     machine rarely runs, so Log has only the master's stdout/stderr.
package cyrustest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/proctest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// Options configures Start.
type Options struct {
	// Users maps user names to plaintext passwords. When nil, the single
	// user "alice" with password "secret" is created.
	Users map[string]string
}

// Server is a running Cyrus instance, stopped by t.Cleanup of the test
// that started it.
type Server struct {
	// IMAPAddr is the plain IMAP listener, "127.0.0.1:PORT".
	IMAPAddr string
	// Dir is the temp dir holding configuration, state and mail.
	Dir string

	users     map[string]string
	adminPass string
	proc      *proctest.Process
}

const (
	readyTimeout = 15 * time.Second
	// maxDirLen keeps the UNIX socket paths under Dir short.
	maxDirLen = 64
	// admin is Cyrus's administrator, the only user that may create
	// other users' mailboxes.
	admin = "cyrus"
)

// Binaries. cyrus-common provides master and ctl_cyrusdb, cyrus-imapd
// provides imapd, sasl2-bin provides saslpasswd2.
var (
	masterPath  = "/usr/lib/cyrus/bin/master"
	ctlDBPath   = "/usr/lib/cyrus/bin/ctl_cyrusdb"
	imapdPaths  = []string{"/usr/lib/cyrus/bin/imapd", "/opt/cyrus-imapd/usr/lib/cyrus/bin/imapd"}
	saslpasswd2 = "saslpasswd2"
)

func imapdPath() (string, error) {
	if p := os.Getenv("CYRUS_IMAPD"); p != "" {
		return p, nil
	}
	for _, p := range imapdPaths {
		if proctest.IsExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Cyrus imapd in %v (install cyrus-imapd, or unpack it as .ci/run does, or set CYRUS_IMAPD)", imapdPaths)
}

// tools finds every program the harness needs.
func tools() (imapd, saslpw string, err error) {
	for _, p := range []string{masterPath, ctlDBPath} {
		if !proctest.IsExecutable(p) {
			return "", "", fmt.Errorf("%s is missing (install cyrus-common)", p)
		}
	}
	if imapd, err = imapdPath(); err != nil {
		return "", "", err
	}
	if saslpw, err = proctest.Executable(saslpasswd2, "/usr/sbin", "/sbin"); err != nil {
		return "", "", errors.New("saslpasswd2 is missing (install sasl2-bin)")
	}
	return imapd, saslpw, nil
}

// Available reports whether everything Start needs is installed.
func Available() bool {
	_, _, err := tools()
	return err == nil
}

// unavailable skips on developer machines without Cyrus, but CI must not
// silently skip the integration tests.
func unavailable(t testing.TB, why string) {
	t.Helper()
	testkit.Unavailable(t, "cyrustest: "+why+" (see .ci/run; the tests must run as root)")
}

// userName keeps names usable in a mailbox name ("user/NAME").
var userName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// Start starts Cyrus, creates the users and their INBOX, and returns once
// IMAP logins work. Without the binaries or root: t.Fatal if CI is "true",
// otherwise t.Skip.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	imapd, saslpw, err := tools()
	if err != nil {
		unavailable(t, err.Error())
	}
	if os.Geteuid() != 0 {
		unavailable(t, "the Cyrus master must start as root to switch to the cyrus user")
	}
	uid, gid := testkit.SystemUser(t, "cyrustest", admin, "created by Debian's cyrus-common")

	users := testkit.HarnessUsers(opts.Users)
	testkit.CheckUsers(t, "cyrustest", users, userName, admin)

	dir := testkit.HarnessDir(t, "cyrustest")
	if len(dir) > maxDirLen || strings.ContainsAny(dir, " \"\t\n") {
		t.Fatalf("cyrustest: temp dir %q is too long or has spaces or quotes; set TMPDIR to a short plain path such as /tmp", dir)
	}
	random := make([]byte, 12)
	rand.Read(random)
	s := &Server{Dir: dir, users: users, adminPass: hex.EncodeToString(random)}
	if err := s.prepare(saslpw, uid, gid); err != nil {
		t.Fatalf("cyrustest: %v", err)
	}
	(&proctest.Launch{
		Harness: "cyrustest",
		Try:     func() error { return s.launch(t, imapd, uid, gid) },
		Stop:    func() { s.proc.Stop() },
		Log:     s.Log,
	}).Run(t)
	if err := s.createMailboxes(); err != nil {
		t.Fatalf("cyrustest: %v\n%s", err, s.Log())
	}
	return s
}

func (s *Server) path(elem ...string) string {
	return filepath.Join(append([]string{s.Dir}, elem...)...)
}

// prepare lays out the directories and the SASL database; the
// configuration depends on the port and is written by launch.
func (s *Server) prepare(saslpw string, uid, gid int) error {
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"config", "spool", "proc", "lock", "socket", "sieve"} {
		if err := os.Mkdir(s.path(d), 0o750); err != nil {
			return err
		}
	}
	users := map[string]string{admin: s.adminPass}
	for name, pass := range s.users {
		users[name] = pass
	}
	for name, pass := range users {
		// The SASL realm is the server name, which is the token.
		cmd := exec.Command(saslpw, "-p", "-c", "-f", s.path("sasldb2"), "-u", s.token(), name)
		cmd.Stdin = strings.NewReader(pass)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v: %s", name, err, out)
		}
	}
	// Everything belongs to the cyrus user, which the master becomes.
	return filepath.WalkDir(s.Dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

func (s *Server) config(token string, port int, imapd string) (imapdConf, cyrusConf string) {
	d := s.Dir
	// Standalone on purpose: nothing from /etc/imapd.conf leaks in.
	imapdConf = fmt.Sprintf(`# Generated by cyrustest for one test run.
servername: %[2]s
configdirectory: %[1]s/config
defaultpartition: default
partition-default: %[1]s/spool
proc_path: %[1]s/proc
mboxname_lockpath: %[1]s/lock
sievedir: %[1]s/sieve
idlesocket: %[1]s/socket/idle
notifysocket: %[1]s/socket/notify
lmtpsocket: %[1]s/socket/lmtp
syslog_prefix: %[2]s
admins: %[3]s
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: %[1]s/sasldb2
sasl_mech_list: PLAIN LOGIN
altnamespace: yes
unixhierarchysep: yes
hashimapspool: false
umask: 077
`, d, token, admin)
	cyrusConf = fmt.Sprintf(`# Generated by cyrustest for one test run.
START {
  recover cmd="%[2]s -r -C %[1]s/imapd.conf"
}
SERVICES {
  imap cmd="%[3]s -C %[1]s/imapd.conf" listen="127.0.0.1:%[4]d" prefork=0 maxchild=500
}
EVENTS {
}
`, d, ctlDBPath, imapd, port)
	return imapdConf, cyrusConf
}

// token is the instance's servername: it appears in the greeting, which
// tells our instance from whatever else might hold the port, and Cyrus
// uses it as the SASL realm.
func (s *Server) token() string {
	return "cyrustest-" + strings.TrimPrefix(filepath.Base(s.Dir), "cyrustest-")
}

func (s *Server) outPath() string { return s.path("master.out") }

// launch writes the configuration for a fresh port, starts the master and
// waits for a greeting that carries this instance's token.
func (s *Server) launch(t testing.TB, imapd string, uid, gid int) error {
	ports, err := proctest.FreePorts(1)
	if err != nil {
		return err
	}
	port := ports[0]
	s.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	token := s.token()
	imapdConf, cyrusConf := s.config(token, port, imapd)
	for name, text := range map[string]string{"imapd.conf": imapdConf, "cyrus.conf": cyrusConf} {
		if err := os.WriteFile(s.path(name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	os.Remove(s.outPath())
	s.proc, err = proctest.Start(s.outPath(), masterPath,
		"-C", s.path("imapd.conf"), "-M", s.path("cyrus.conf"), "-p", s.path("master.pid"))
	if err != nil {
		return err
	}
	t.Cleanup(s.proc.Stop)
	return s.proc.WaitGreeting(s.IMAPAddr, "* OK ", token, readyTimeout)
}

// createMailboxes creates every user's INBOX as the administrator.
func (s *Server) createMailboxes() error {
	c, err := imapclient.DialInsecure(s.IMAPAddr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(admin, s.adminPass).Wait(); err != nil {
		return fmt.Errorf("admin login: %v", err)
	}
	for name := range s.users {
		if err := c.Create("user/"+name, nil).Wait(); err != nil {
			return fmt.Errorf("CREATE user/%s: %v", name, err)
		}
	}
	return c.Logout().Wait()
}

// Deliver appends raw to the user's INBOX over IMAP (Cyrus keeps its own
// spool format, so there is no maildir to write into). Cyrus normalises
// line ends and refuses some messages (see the package comment); Deliver
// fails the test then. TryDeliver returns the error instead.
func (s *Server) Deliver(t testing.TB, user string, raw []byte) {
	t.Helper()
	if err := s.TryDeliver(t, user, raw); err != nil {
		t.Fatalf("cyrustest: Deliver: %v", err)
	}
}

// TryDeliver is Deliver that returns Cyrus's refusal.
func (s *Server) TryDeliver(t testing.TB, user string, raw []byte) error {
	t.Helper()
	c := s.Dial(t, user)
	defer c.Close()
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// Dial returns a logged-in go-imap v2 client (plain), closed by t.Cleanup.
func (s *Server) Dial(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	return testkit.LoginIMAP(t, "cyrustest", s.IMAPAddr, s.users, user, s.Log)
}

// Log returns what the master wrote to stdout and stderr.
func (s *Server) Log() string { return proctest.Output(s.outPath()) }

// UIDValidity returns the UIDVALIDITY of the user's INBOX.
func (s *Server) UIDValidity(t testing.TB, user string) uint32 {
	t.Helper()
	c := s.Dial(t, user)
	defer c.Close()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return sel.UIDValidity
}

// dialLogin connects and logs in, returning the error instead of failing.
func dialLogin(addr, user, pass string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
