// Package couriertest starts a private, throw-away Courier IMAP server
// (Debian's courier-imap 5.0) on 127.0.0.1 for Go tests, so that code
// talking IMAP can be checked against a fourth real server.
//
// Courier's daemons have /etc/courier (configuration, userdb) and
// /run/courier (the authdaemon socket) compiled in. Each instance
// therefore runs in its own mount namespace ("unshare -m"), where a fresh
// temp dir's etc/ and run/ are bind-mounted over those two paths; the host
// sees neither mount, so parallel instances and a system Courier never
// collide, and the namespace goes away with the instance's last process.
// Inside it run authdaemond (module authuserdb, users in a private userdb
// with {SHA256} passwords) and couriertcpd, which hands each connection to
// imaplogin and then imapd, with the environment of the packaged
// /etc/courier/imapd, as Debian's init script does. STARTTLS is not
// offered and plain LOGIN works. Mail is owned by the system "mail" user;
// mounting needs root.
//
// courier-imap and dovecot-imapd conflict as Debian packages (both
// provide imap-server), so on a machine with Dovecot installed imapd and
// imaplogin come from the unpacked package: test.sh (component_courier)
// installs courier-base, courier-authdaemon and courier-authlib-userdb
// and unpacks courier-imap into /opt/courier-imap.
//
// Facts measured with Courier-IMAP 5.0.13 (Debian 12); the tests in this
// package pin them down:
//
//   - CAPABILITY is IMAP4rev1 UIDPLUS CHILDREN NAMESPACE
//     THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL
//     ACL2=UNION ENABLE UTF8=ACCEPT, before and after login: no MOVE, no
//     SPECIAL-USE, no LITERAL+, no AUTH=PLAIN. NAMESPACE is
//     (("INBOX." ".")) NIL (("#shared." ".")("shared." ".")).
//   - Folders exist only under "INBOX.": CREATE Trash is refused with "NO
//     Invalid mailbox name.", COPY to Trash with "NO Error in IMAP command
//     received by server."; CREATE INBOX.Trash works.
//   - Maildir files hold LF line ends. IMAP serves each LF as CRLF (a
//     file's CRLF as CR CR LF), and RFC822.SIZE counts it so; a bare CR,
//     a NUL and a missing final line end in a file are served as they
//     are, except that a CR that ends the file is left out. BINARY is
//     not offered (BINARY.PEEK[] gets NO).
//   - APPEND stores CRLF and bare LF as LF, drops every bare CR ("a\rb"
//     becomes "ab", "c\r\r\n" becomes "c\n"), and adds a final line end
//     where the message has none.
//   - A message another session expunged is not reported to a session
//     until its next NOOP (UID FETCH does not report it). Until then a FETCH of it answers OK: with the real octets if it is the
//     message this session read last (imapd keeps that file open),
//     otherwise with FLAGS holding at most \Recent and, as BODY[] and
//     RFC822.SIZE, the 129 octets of UnavailableBody (partial fetches and
//     BODY[HEADER] cut from it, {0} past its end); after that the file
//     held open is given up, and it too is served as UnavailableBody. A
//     UID STORE of it answers OK without the untagged FETCH that a
//     non-silent STORE of an existing message brings.
//   - Start-up takes about a tenth of a second, stopping about one and a
//     half.
package couriertest

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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

	"github.com/popbridge/popbridge/internal/proctest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// Options configures Start.
type Options struct {
	// Users maps user names to plaintext passwords. When nil, the single
	// user "alice" with password "secret" is created.
	Users map[string]string
}

// Server is a running Courier instance, stopped by t.Cleanup of the test
// that started it.
type Server struct {
	// IMAPAddr is the plain IMAP listener, "127.0.0.1:PORT".
	IMAPAddr string
	// Dir is the temp dir: etc/ and run/ are the instance's /etc/courier
	// and /run/courier, home/USER/Maildir a user's mail.
	Dir string

	users map[string]string
	// probePass is the password of probeUser, which only this instance
	// knows: a login with it tells our instance from whatever else holds
	// the port, and shows authdaemond is serving.
	probePass string
	mailUID   int
	mailGID   int
	delivery  *testkit.MaildirDelivery
	proc      *proctest.Process
}

const (
	readyTimeout = 15 * time.Second
	probeUser    = "couriertest"
	// sessionLimit is couriertcpd's -maxprocs and -maxperip, high so that
	// load tests meet the code under test, not Debian's 40 and 20.
	sessionLimit = 500
)

// Binaries and the packaged imapd settings, below one of roots: "/" when
// courier-imap is installed, /opt/courier-imap when it is unpacked.
var (
	roots        = []string{"/", "/opt/courier-imap"}
	imapdRel     = "usr/bin/imapd"
	imaploginRel = "usr/lib/courier/courier/imaplogin"
	imapdConfRel = "etc/courier/imapd"
	authdaemond  = "/usr/lib/courier/courier-authlib/authdaemond"
	couriertcpd  = "/usr/sbin/couriertcpd"
	makeuserdb   = "/usr/sbin/makeuserdb"
	unsharePath  = "unshare"
	// minimalEnv keeps the test's environment out of Courier's daemons,
	// which take their settings from exported variables.
	minimalEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
)

const installHint = "install courier-base, courier-authdaemon and courier-authlib-userdb, and unpack courier-imap as test.sh's component_courier does"

// imapRoot finds the root that holds imapd, imaplogin and their settings.
func imapRoot() (string, error) {
	for _, r := range roots {
		if proctest.IsExecutable(filepath.Join(r, imapdRel)) && proctest.IsExecutable(filepath.Join(r, imaploginRel)) {
			if _, err := os.Stat(filepath.Join(r, imapdConfRel)); err == nil {
				return r, nil
			}
		}
	}
	return "", fmt.Errorf("no Courier imapd and imaplogin below %v (%s)", roots, installHint)
}

// tools finds every program the harness needs.
func tools() (root string, err error) {
	if root, err = imapRoot(); err != nil {
		return "", err
	}
	for _, p := range []string{authdaemond, couriertcpd, makeuserdb} {
		if !proctest.IsExecutable(p) {
			return "", fmt.Errorf("%s is missing (%s)", p, installHint)
		}
	}
	if _, err := exec.LookPath(unsharePath); err != nil {
		return "", fmt.Errorf("unshare is missing (util-linux): %v", err)
	}
	return root, nil
}

// Available reports whether everything Start needs is installed.
func Available() bool {
	_, err := tools()
	return err == nil
}

// unavailable skips on developer machines without Courier, but CI must
// not silently skip the integration tests.
func unavailable(t testing.TB, why string) {
	t.Helper()
	testkit.Unavailable(t, "couriertest: "+why+" (see component_courier in test.sh; the tests must run as root)")
}

// userName keeps names usable as a userdb key and a path element.
var userName = regexp.MustCompile(`^[a-z][a-z0-9._-]*$`)

// Start starts Courier with the users' maildirs and returns once IMAP
// logins work. Without the programs or root: t.Fatal if CI is "true",
// otherwise t.Skip.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	root, err := tools()
	if err != nil {
		unavailable(t, err.Error())
	}
	if os.Geteuid() != 0 {
		unavailable(t, "bind-mounting over /etc/courier and /run/courier needs root")
	}
	users := testkit.HarnessUsers(opts.Users)
	testkit.CheckUsers(t, "couriertest", users, userName, probeUser)
	mailUID, mailGID := testkit.SystemUser(t, "couriertest", "mail", "the owner of the maildirs")
	random := make([]byte, 12)
	rand.Read(random)
	s := &Server{Dir: testkit.HarnessDir(t, "couriertest"), users: users, probePass: hex.EncodeToString(random),
		mailUID: mailUID, mailGID: mailGID}
	s.delivery = testkit.NewMaildirDelivery("couriertest", users, func(user string) string { return s.maildir(user) }, s.mailUID, s.mailGID)
	if err := s.prepare(root); err != nil {
		t.Fatalf("couriertest: %v", err)
	}
	(&proctest.Launch{
		Harness: "couriertest",
		Try:     func() error { return s.launch(t, root) },
		Stop:    func() { s.proc.Stop() },
		Log:     s.Log,
	}).Run(t)
	return s
}

func (s *Server) path(elem ...string) string {
	return filepath.Join(append([]string{s.Dir}, elem...)...)
}

// maildir is a user's INBOX maildir, or one of its cur, new and tmp.
func (s *Server) maildir(user string, sub ...string) string {
	return s.path(append([]string{"home", user, "Maildir"}, sub...)...)
}

func (s *Server) outPath() string { return s.path("courier.out") }

// Log returns what authdaemond and couriertcpd wrote to stdout and stderr
// (imapd itself logs to syslog, which a test machine rarely runs).
func (s *Server) Log() string { return proctest.Output(s.outPath()) }

// prepare writes the instance's /etc/courier and the maildirs.
func (s *Server) prepare(root string) error {
	// imapd runs as the mail user and must reach the homes.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return err
	}
	// run/authdaemon holds the socket; etc/shared is where imapd looks
	// for its index of shared folders (none).
	for _, d := range []string{"etc", "etc/shared", "run", "run/authdaemon", "home"} {
		if err := os.Mkdir(s.path(d), 0o755); err != nil {
			return err
		}
	}
	imapdConf, err := os.ReadFile(filepath.Join(root, imapdConfRel))
	if err != nil {
		return err
	}
	authdaemonrc := "# Generated by couriertest for one test run.\n" +
		"authmodulelist=\"authuserdb\"\ndaemons=2\nauthdaemonvar=/run/courier/authdaemon\n" +
		"DEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n"
	var userdb strings.Builder
	users := map[string]string{probeUser: s.probePass}
	for name, pass := range s.users {
		users[name] = pass
	}
	for name, pass := range users {
		home := s.path("home", name)
		sum := sha256.Sum256([]byte(pass))
		fmt.Fprintf(&userdb, "%s\tuid=%d|gid=%d|home=%s|mail=%s|systempw={SHA256}%s\n",
			name, s.mailUID, s.mailGID, home, s.maildir(name), base64.StdEncoding.EncodeToString(sum[:]))
		for _, d := range []string{home, s.maildir(name), s.maildir(name, "cur"), s.maildir(name, "new"), s.maildir(name, "tmp")} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := os.Chown(d, s.mailUID, s.mailGID); err != nil {
				return err
			}
		}
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{"imapd", string(imapdConf), 0o644},
		{"authdaemonrc", authdaemonrc, 0o600},
		// makeuserdb refuses a source readable by others.
		{"userdb", userdb.String(), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(s.path("etc", f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	if out, err := exec.Command(makeuserdb, "-f", s.path("etc", "userdb")).CombinedOutput(); err != nil {
		return fmt.Errorf("makeuserdb: %v: %s", err, out)
	}
	return nil
}

// startScript runs inside the new mount namespace, as
// "sh -c startScript sh DIR PORT AUTHDAEMOND COURIERTCPD LIMIT IMAPLOGIN
// IMAPD". It puts the instance's etc/ and run/ over Courier's compiled-in
// paths (creating the mount points, since /run may have been emptied
// since the install), starts authdaemond with its settings exported (as
// its own wrapper script does), and becomes couriertcpd with the packaged
// imapd settings exported (as the init script does). authdaemond stays in
// couriertcpd's process group, so stopping the group stops both.
const startScript = `set -e
mkdir -p /etc/courier /run/courier
mount --bind "$1/etc" /etc/courier
mount --bind "$1/run" /run/courier
set -a
. /etc/courier/authdaemonrc
set +a
"$3" &
set -a
. /etc/courier/imapd
set +a
exec "$4" -address=127.0.0.1 -nodnslookup -noidentlookup -maxprocs="$5" -maxperip="$5" \
	"$2" "$6" "$7" Maildir
`

// launch starts the instance on a fresh port and waits until our probe
// user can log in.
func (s *Server) launch(t testing.TB, root string) error {
	ports, err := proctest.FreePorts(1)
	if err != nil {
		return err
	}
	port := ports[0]
	s.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	os.Remove(s.outPath())
	s.proc, err = proctest.StartEnv(s.outPath(), minimalEnv, unsharePath, "--mount", "--propagation", "private",
		"sh", "-c", startScript, "sh", s.Dir, strconv.Itoa(port), authdaemond, couriertcpd,
		strconv.Itoa(sessionLimit), filepath.Join(root, imaploginRel), filepath.Join(root, imapdRel))
	if err != nil {
		return err
	}
	t.Cleanup(s.proc.Stop)
	return s.proc.WaitReady(readyTimeout, func() error { return probe(s.IMAPAddr, s.probePass) })
}

// probe logs in as probeUser over a bare connection.
func probe(addr, pass string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, "* OK ") {
		return fmt.Errorf("%s greeted with %q", addr, line)
	}
	if _, err := fmt.Fprintf(c, "p LOGIN %s %s\r\n", probeUser, pass); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("probe login at %s: %w", addr, err)
		}
		if strings.HasPrefix(line, "p ") {
			if !strings.HasPrefix(line, "p OK") {
				return fmt.Errorf("probe login at %s: %q", addr, line)
			}
			_, err = fmt.Fprintf(c, "q LOGOUT\r\n")
			return err
		}
	}
}
