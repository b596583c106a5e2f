package imapback

// Helpers of the package's tests: upstreams, backends with short
// timeouts, logins, a second client that plays another device of the
// user, and a relay that records the commands a session sends.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/testkit"
)

// alice is the user of every test upstream.
var alice = Credentials{User: "alice", Password: "secret"}

// startMem starts an in-memory upstream with msgs in alice's INBOX.
func startMem(t testing.TB, msgs ...[]byte) *memimap.Server {
	t.Helper()
	return startMemWith(t, memimap.Options{}, msgs...)
}

func startMemWith(t testing.TB, opts memimap.Options, msgs ...[]byte) *memimap.Server {
	t.Helper()
	srv, err := memimap.Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.AddUser(alice.User, alice.Password)
	for _, m := range msgs {
		if err := srv.Append(alice.User, "INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

// message returns a message of exactly size octets with CRLF line ends.
func message(size int) []byte {
	m := []byte("Subject: sized\r\n\r\n")
	for i := 0; len(m) < size; i++ {
		m = fmt.Appendf(m, "line %d\r\n", i)
	}
	m = m[:size-2]
	return append(m, '\r', '\n')
}

// newBackend returns a Backend; zero fields of o get a plain connection,
// timeouts short enough for a test and no log output.
func newBackend(t testing.TB, o Options) *Backend {
	t.Helper()
	if o.TLS == "" {
		o.TLS = TLSNone
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// login logs alice in with the backend's default policy. The session is
// closed when the test ends.
func login(t testing.TB, b *Backend) *Session {
	t.Helper()
	return loginPolicy(t, b, Policy{})
}

// loginPolicy is login with pol; its empty Delete, Seen and TrashFolder
// take the backend's defaults.
func loginPolicy(t testing.TB, b *Backend, pol Policy) *Session {
	t.Helper()
	def := b.DefaultPolicy()
	if pol.Delete == "" {
		pol.Delete, pol.TrashFolder = def.Delete, def.TrashFolder
	}
	if pol.Seen == "" {
		pol.Seen = def.Seen
	}
	s, err := b.Login(context.Background(), alice, pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// loginAs tries a login with the backend's default policy.
func loginAs(b *Backend, user, pass string) (*Session, error) {
	return b.Login(context.Background(), Credentials{User: user, Password: pass}, b.DefaultPolicy())
}

// retrieveAll reads message i whole.
func retrieveAll(t testing.TB, s *Session, i int) []byte {
	t.Helper()
	rc, err := s.Retrieve(context.Background(), i, -1)
	if err != nil {
		t.Fatalf("Retrieve(%d): %v", i, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading message %d: %v", i, err)
	}
	return got
}

// dialAlice logs alice in with a client of the test's own, as another
// device of hers would; it is closed when the test ends.
func dialAlice(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(alice.User, alice.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// otherDevice is dialAlice with INBOX selected.
func otherDevice(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	c := dialAlice(t, addr)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// expunge removes uids as another client does: \Deleted, then UID
// EXPUNGE of exactly those.
func expunge(t testing.TB, c *imapclient.Client, uids imap.UIDSet) {
	t.Helper()
	if err := c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(uids).Close(); err != nil {
		t.Fatal(err)
	}
}

// mailboxFlags returns UID → flags of every message in mailbox, as
// another client sees it; nil when the mailbox does not exist.
func mailboxFlags(t testing.TB, addr, mailbox string) map[imap.UID][]imap.Flag {
	t.Helper()
	c := dialAlice(t, addr)
	defer c.Close()
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		return nil
	}
	got := map[imap.UID][]imap.Flag{}
	if sel.NumMessages == 0 {
		return got
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		got[m.UID] = m.Flags
	}
	return got
}

// tappedUpstream is a relay to an upstream that records what the
// sessions behind it send.
type tappedUpstream struct {
	Addr string
	sent testkit.LockedBuffer
}

func tapUpstream(t testing.TB, target string) *tappedUpstream {
	t.Helper()
	r := faultrelay.New(t, target)
	u := &tappedUpstream{Addr: r.Addr}
	r.Tap(faultrelay.Up, &u.sent)
	return u
}

// commands returns the names of the commands sent so far ("UID MOVE",
// "EXPUNGE"), without tags and arguments.
func (u *tappedUpstream) commands() []string {
	var cmds []string
	for _, line := range strings.Split(u.sent.String(), "\r\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.ToUpper(f[1])
		if name == "UID" && len(f) > 2 {
			name += " " + strings.ToUpper(f[2])
		}
		cmds = append(cmds, name)
	}
	return cmds
}

// count returns how many commands named name were sent so far.
func (u *tappedUpstream) count(name string) int {
	n := 0
	for _, c := range u.commands() {
		if c == name {
			n++
		}
	}
	return n
}
