// Package dovecottest starts a private, throw-away Dovecot instance on
// 127.0.0.1 for Go tests, so that code talking IMAP (and POP3) can be
// checked against a real server, and Dovecot's native POP3 can serve as a
// byte-exact reference for the same maildir.
//
// Each instance has its own instance_name, base_dir, state_dir and log in a
// fresh temp dir and a standalone config (nothing from /etc/dovecot), so
// parallel tests and a system Dovecot never collide. Dovecot refuses to
// access mail as root, so mail is owned by the system "mail" user; the
// login and internal processes run as Debian's "dovenull" and "dovecot".
// The harness therefore needs root: without root or without a dovecot
// binary, Start skips the test (or fails it when CI=true).
//
// Facts measured with Dovecot 2.3.19.1 (Debian 12); the tests in this
// package pin down the first three:
//
//   - Deliver's files are never rewritten: bare LF, bare CR and NUL stay on
//     disk as given. On the first sync Dovecot only renames them from new/
//     to cur/, appending ":2," (no flags); it adds no ",S=" or ",W=" size
//     field to names it did not create.
//   - RFC822.SIZE, and POP3 LIST/STAT, is the CRLF-normalised size: every
//     LF not preceded by CR counts as two bytes, so a bare-LF file of n
//     bytes with k lines is reported as n+k (25 bytes, 4 lines: 29). Bare
//     CR and NUL count as one byte each, as does the CR of "\r\r\n".
//   - IMAP BODY[] and POP3 RETR send that normalised form: bare LF becomes
//     CRLF and bare CR is sent unchanged. NUL differs: IMAP sends it as
//     0x80 (BINARY[] was not measured), POP3 sends 0x00.
//     A CRLF-only message without NUL comes back byte for byte over both.
//   - Messages delivered in order get increasing UIDs, because Dovecot sorts
//     new maildir files by the time stamp in their name and then by the
//     rest of the base name (see Deliver).
//   - Apart from raised connection limits, mail_fsync = never, the time
//     zone UTC (SEARCH SINCE and BEFORE compare dates in the server's
//     zone) and a login greeting that carries a per-instance token
//     (instead of "Dovecot ready."), the settings are Dovecot's defaults.
//   - Start-up until both greetings takes about 50-80 ms. Shutdown takes
//     1-3 s, because the master sleeps a fixed second while its log
//     process drains, so tests that start instances should use t.Parallel.
//   - 300 concurrent logged-in IMAP sessions for one user work.
package dovecottest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/dovecotconf"
	"github.com/popbridge/popbridge/internal/proctest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// Options configures Start.
type Options struct {
	// Users maps user names to plaintext passwords. When nil, the single
	// user "alice" with password "secret" is created.
	Users map[string]string
	// POP3 also serves Dovecot's native POP3 over the same maildirs
	// (protocols = imap pop3), e.g. as a reference for a POP3 front end.
	POP3 bool
	// ExtraConfig is appended to the generated config, e.g. a namespace
	// with special-use mailboxes or a trimmed imap_capability.
	ExtraConfig string
	// OAuth2IntrospectionURL, when set, makes the server accept SASL
	// XOAUTH2 and OAUTHBEARER with access tokens that Dovecot's oauth2
	// passdb checks at this RFC 7662 introspection endpoint (e.g.
	// oauthtest's IntrospectionURL); password logins keep working
	// (oauth2.go).
	OAuth2IntrospectionURL string
}

// Server is a running Dovecot instance. It is stopped automatically by
// t.Cleanup of the test that started it.
type Server struct {
	// IMAPAddr is the plain IMAP listener, "127.0.0.1:PORT".
	IMAPAddr string
	// POP3Addr is the plain POP3 listener, or "" unless Options.POP3.
	POP3Addr string
	// Dir is the temp dir holding config, state, logs and mail; homes are
	// Dir/home/USER with the maildir in Dir/home/USER/Maildir.
	Dir string

	users     map[string]string
	oauth2URL string
	inst      *dovecotconf.Instance
	delivery  *testkit.MaildirDelivery
	proc      *proctest.Process
}

// Tunables. Start-up normally takes well under a second; the generous
// bounds are for loaded CI machines.
const (
	readyTimeout = 15 * time.Second
	// maxDirLen keeps base_dir's UNIX socket paths (e.g.
	// run/token-login/tokenlogin) under the 108-byte sun_path limit.
	maxDirLen = 64
	// connLimit is high so load tests hit the code under test, not
	// Dovecot's defaults (mail_max_userip_connections is 10).
	connLimit = 1000
)

// Available reports whether a dovecot binary is installed.
func Available() bool {
	_, err := dovecotPath()
	return err == nil
}

// dovecotPath also looks in the sbin dirs because they are often missing
// from a non-root PATH even where Dovecot is installed.
func dovecotPath() (string, error) {
	return proctest.Executable("dovecot", "/usr/sbin", "/usr/local/sbin")
}

// unavailable skips rather than fails on developer machines without
// Dovecot, but CI must not silently skip the integration tests.
func unavailable(t testing.TB, why string) {
	t.Helper()
	testkit.Unavailable(t, "dovecottest: "+why+" (on Debian/Ubuntu: apt-get install dovecot-imapd dovecot-pop3d, and run the tests as root)")
}

// Start starts Dovecot and waits until its IMAP port (and POP3 port)
// accept connections and send a greeting.
// When dovecot is missing: t.Fatal if the environment variable CI is
// "true", otherwise t.Skip with a clear message. The same applies when not
// running as root, which Dovecot needs to switch to the mail user.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := dovecotPath()
	if err != nil {
		unavailable(t, err.Error())
	}
	if os.Geteuid() != 0 {
		unavailable(t, "running Dovecot with separate mail and login users requires root")
	}
	for _, name := range []string{"dovenull", "dovecot"} {
		testkit.SystemUser(t, "dovecottest", name, "created by Debian's dovecot-core")
	}

	// Layout checks the names and passwords.
	users := testkit.HarnessUsers(opts.Users)
	dir := testkit.HarnessDir(t, "dovecottest")
	if !safePath.MatchString(dir) || len(dir) > maxDirLen {
		t.Fatalf("dovecottest: temp dir %q is too long or has characters Dovecot's config cannot take unquoted; set TMPDIR to a short plain path such as /tmp", dir)
	}

	inst, err := dovecotconf.New(dir, filepath.Base(dir), connLimit)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	s := &Server{
		Dir:       dir,
		users:     users,
		oauth2URL: opts.OAuth2IntrospectionURL,
		inst:      inst,
	}
	s.delivery = testkit.NewMaildirDelivery("dovecottest", users, func(user string) string { return inst.Maildir(user, "") }, inst.MailUID, inst.MailGID)
	// The config depends on the ports and is written by each launch.
	if err := inst.Layout(users); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	if err := s.writeOAuth2Args(); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}

	(&proctest.Launch{
		Harness: "dovecottest",
		Try:     func() error { return s.launch(t, bin, opts.POP3, opts.ExtraConfig) },
		Stop:    func() { s.proc.Stop() },
		// Dovecot's greeting tells another server on the port from a
		// failure that fresh ports would not fix.
		Retry: func(err error) bool { return errors.Is(err, proctest.ErrForeign) },
		Log:   s.Log,
	}).Run(t)
	return s
}

// safePath is what can appear unquoted in the config and in
// passdb/userdb args, which are split on spaces and expand %-variables.
var safePath = regexp.MustCompile(`^[A-Za-z0-9/._+-]+$`)

func (s *Server) logPath() string { return s.inst.LogPath() }

// outPath receives the master's stdout and stderr, where errors from
// before its log process started end up.
func (s *Server) outPath() string { return filepath.Join(s.Dir, "dovecot.out") }

// launch writes a config with fresh ports, starts the master and waits for
// the greetings. On error s.proc may still be running; the caller stops it.
// An error wrapping proctest.ErrForeign is one that new ports can fix.
func (s *Server) launch(t testing.TB, bin string, pop3 bool, extra string) error {
	ports, err := proctest.FreePorts(2)
	if err != nil {
		return err
	}
	s.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.POP3Addr = ""
	if pop3 {
		s.POP3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	}
	// The token in the greeting tells our instance apart from whatever
	// else might be listening on a port that was free a moment ago.
	token := "dovecottest-" + strings.TrimPrefix(filepath.Base(s.Dir), "dovecottest-") + "-" + strconv.Itoa(ports[0])
	conf := filepath.Join(s.Dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(s.config(token, ports[0], ports[1], pop3)+extra), 0o644); err != nil {
		return err
	}
	// A failed attempt's log would only confuse the next one's diagnosis.
	os.Remove(s.logPath())
	os.Remove(s.outPath())

	s.proc, err = proctest.Start(s.outPath(), bin, "-F", "-c", conf)
	if err != nil {
		return err
	}
	t.Cleanup(s.proc.Stop)

	deadline := time.Now().Add(readyTimeout)
	for _, target := range []struct{ addr, ok string }{{s.IMAPAddr, "* OK "}, {s.POP3Addr, "+OK "}} {
		if target.addr == "" {
			continue
		}
		err := s.proc.WaitGreeting(target.addr, target.ok, token, time.Until(deadline))
		if err != nil && strings.Contains(s.Log(), "Address already in use") {
			err = fmt.Errorf("%w: %v", proctest.ErrForeign, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) config(token string, imapPort, pop3Port int, pop3 bool) string {
	protocols := "imap"
	if pop3 {
		protocols = "imap pop3"
	}
	// Standalone on purpose: nothing from /etc/dovecot may leak in, so the
	// instance behaves the same on every machine.
	conf := "# Generated by dovecottest for one test run.\n" + s.inst.Settings() + fmt.Sprintf(`
protocols = %s
auth_mechanisms = %s
login_greeting = %s ready.
mail_location = maildir:~/Maildir
`, protocols, s.authMechanisms(), token) + s.passdbConfig() + s.inst.UserDB() + dovecotconf.Listener("imap", imapPort)
	if pop3 {
		conf += dovecotconf.Listener("pop3", pop3Port)
	}
	return conf
}

// Deliver writes raw (bytes exactly as given, no conversion) as a new
// message in the user's INBOX maildir, the way a maildir delivery agent
// does: written to tmp/, owned by the mail user, then renamed into new/.
// Going around Dovecot keeps byte-exact corpora intact, including bare LF,
// bare CR and NUL, which IMAP APPEND would reject (NUL) or normalise (line
// endings).
//
// Messages delivered in order get increasing UIDs: Dovecot sorts new files
// by the leading number of their name, then by the microseconds after "M"
// (absent here), then by the rest of the name, so names share the server's
// start time and carry a zero-padded counter. Delivering while a client has
// the mailbox selected is fine; the client sees the message on its next
// sync (e.g. NOOP).
func (s *Server) Deliver(t testing.TB, user string, raw []byte) {
	t.Helper()
	s.delivery.Deliver(t, user, raw)
}

// Dial returns a logged-in go-imap v2 imapclient.Client (plain, no TLS)
// for independent checks; it is closed by t.Cleanup.
func (s *Server) Dial(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	return testkit.LoginIMAP(t, "dovecottest", s.IMAPAddr, s.users, user, s.Log)
}

// Log returns Dovecot's log so far (for failure messages), followed by
// anything the master wrote to stdout/stderr, where errors from before its
// log process started end up.
func (s *Server) Log() string {
	var b strings.Builder
	for i, path := range []string{s.logPath(), s.outPath()} {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist) || len(data) == 0:
			continue
		case err != nil:
			fmt.Fprintf(&b, "(reading %s: %v)\n", path, err)
			continue
		}
		if i > 0 {
			b.WriteString("--- dovecot stdout/stderr ---\n")
		}
		b.Write(data)
	}
	return b.String()
}

// WaitLog returns Dovecot's log once it satisfies ok, or after 10 s the
// last one read: Dovecot's processes hand their lines to its log process,
// which writes them a moment after the event they tell of.
func (s *Server) WaitLog(ok func(log string) bool) string {
	log := s.Log()
	for deadline := time.Now().Add(10 * time.Second); !ok(log) && time.Now().Before(deadline); log = s.Log() {
		time.Sleep(50 * time.Millisecond)
	}
	return log
}
