// Tests of the harness and of the facts about Courier that the package
// comment states. wire is a bare IMAP connection for the tests that pin
// down exact bytes, which a client library would hide.

package couriertest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testkit"
)

// wire sends tagged commands and returns everything up to and including
// the tagged reply, literals included, as Courier sent it.
type wire struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

var literalAtEnd = regexp.MustCompile(`\{(\d+)\}\r\n$`)

func dialWire(t *testing.T, s *Server, user string) *wire {
	t.Helper()
	conn, r := testkit.DialGreeted(t, s.IMAPAddr, 30*time.Second)
	w := &wire{t: t, conn: conn, r: r}
	if got := w.cmd("LOGIN " + user + " " + s.Password(user)); !strings.Contains(got, " OK ") {
		t.Fatalf("LOGIN: %q", got)
	}
	return w
}

// cmd sends one command and returns the untagged responses and the tagged
// reply, with the tag replaced by "T".
func (w *wire) cmd(command string) string {
	w.t.Helper()
	w.n++
	tag := "w" + strconv.Itoa(w.n)
	if _, err := fmt.Fprintf(w.conn, "%s %s\r\n", tag, command); err != nil {
		w.t.Fatal(err)
	}
	var b strings.Builder
	for {
		line, err := w.r.ReadString('\n')
		if err != nil {
			w.t.Fatalf("%s: %v after %q", command, err, b.String())
		}
		if m := literalAtEnd.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			lit := make([]byte, n)
			if _, err := io.ReadFull(w.r, lit); err != nil {
				w.t.Fatal(err)
			}
			b.WriteString(line)
			b.Write(lit)
			continue
		}
		if strings.HasPrefix(line, tag+" ") {
			b.WriteString("T" + strings.TrimPrefix(line, tag))
			return b.String()
		}
		b.WriteString(line)
	}
}

const courierCaps = "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT " +
	"THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION ENABLE UTF8=ACCEPT"

// Login, CAPABILITY and NAMESPACE as a client sees them; a wrong password
// is refused.
func TestLoginCapabilityNamespace(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Users: map[string]string{"alice": "secret", "bob": "pw"}})
	w := dialWire(t, s, "alice")
	if got, want := w.cmd("CAPABILITY"), "* CAPABILITY "+courierCaps+"\r\nT OK CAPABILITY completed\r\n"; got != want {
		t.Errorf("CAPABILITY:\n got %q\nwant %q", got, want)
	}
	if got, want := w.cmd("NAMESPACE"), `* NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." "."))`+"\r\nT OK NAMESPACE completed.\r\n"; got != want {
		t.Errorf("NAMESPACE:\n got %q\nwant %q", got, want)
	}

	c := s.Dial(t, "bob")
	caps := c.Caps()
	for _, absent := range []imap.Cap{imap.CapMove, imap.CapSpecialUse, imap.CapLiteralPlus, imap.CapIMAP4rev2, "AUTH=PLAIN"} {
		if caps.Has(absent) {
			t.Errorf("capability %s offered: %v", absent, caps)
		}
	}
	ns, err := c.Namespace().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Personal) != 1 || ns.Personal[0].Prefix != "INBOX." || ns.Personal[0].Delim != '.' {
		t.Errorf("personal namespace %+v, want INBOX. with delimiter .", ns.Personal)
	}

	conn, err := net.Dial("tcp", s.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	fmt.Fprintf(conn, "x LOGIN alice wrong\r\n")
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "x NO ") {
		t.Errorf("LOGIN with a wrong password: %q", line)
	}
}

// Folders live under INBOX. only: the default trash name is refused.
func TestFoldersOnlyUnderINBOX(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Deliver(t, "alice", []byte("Subject: a\r\n\r\nx\r\n"))
	w := dialWire(t, s, "alice")
	for _, tc := range []struct{ cmd, want string }{
		{"CREATE Trash", "T NO Invalid mailbox name.\r\n"},
		{"CREATE INBOX.Trash", "T OK \"INBOX.Trash\" created.\r\n"},
		{"SELECT INBOX", ""},
		{"UID COPY 1 Trash", "T NO Error in IMAP command received by server.\r\n"},
		{"UID COPY 1 INBOX.Trash", "T OK [COPYUID "},
	} {
		got := w.cmd(tc.cmd)
		last := got[strings.LastIndex(got[:len(got)-2], "\n")+1:]
		if !strings.HasPrefix(last, tc.want) {
			t.Errorf("%s: %q, want a reply starting %q", tc.cmd, got, tc.want)
		}
	}
	if got, want := w.cmd(`LIST "" *`), "* LIST (\\HasNoChildren) \".\" \"INBOX.Trash\"\r\n"+
		"* LIST (\\Marked \\HasChildren) \".\" \"INBOX\"\r\nT OK LIST completed\r\n"; got != want {
		t.Errorf("LIST:\n got %q\nwant %q", got, want)
	}
}

// fetchAll returns BODY[] of every message in the user's INBOX, in UID
// order, and checks that UIDs count from 1 and that RFC822.SIZE is the
// number of octets served.
func fetchAll(t *testing.T, s *Server, user string) []string {
	t.Helper()
	c := s.Dial(t, user)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{body},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, m := range msgs {
		b := m.FindBodySection(body)
		if m.UID != imap.UID(i+1) || m.RFC822Size != int64(len(b)) {
			t.Errorf("message %d: UID %d, RFC822.SIZE %d, BODY[] has %d octets", i+1, m.UID, m.RFC822Size, len(b))
		}
		got = append(got, string(b))
	}
	return got
}

// storedFiles returns the contents of the user's maildir files in cur/
// and new/, sorted (Courier's own file names do not sort in UID order).
func storedFiles(t *testing.T, s *Server, user string) []string {
	t.Helper()
	var got []string
	for _, sub := range []string{"cur", "new"} {
		names, err := filepath.Glob(s.maildir(user, sub, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(data))
		}
	}
	slices.Sort(got)
	return got
}

// sorted returns a sorted copy, to compare with storedFiles.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Delivered files hold LF and are served with CRLF, in delivery order; a
// bare CR, a NUL and a missing final line end in a file are served as
// stored, a CR at the very end is not.
func TestDeliveredMessagesAreServedWithCRLF(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Deliver(t, "alice", []byte("Subject: one\r\nFrom: a@b\r\n\r\nline1\r\n.dot\r\n"))
	s.Deliver(t, "alice", []byte("Subject: two\r\n\r\nno final line end"))
	raw := []string{
		"Subject: three\n\na\rb\n",
		"Subject: crlf file\r\n\r\nx\r\n",
		"Subject: cr at the end\n\nx\r",
		"Subject: nul\n\na\x00b\n",
		"",
	}
	for _, m := range raw {
		s.DeliverRaw(t, "alice", []byte(m))
	}
	stored := append([]string{
		"Subject: one\nFrom: a@b\n\nline1\n.dot\n",
		"Subject: two\n\nno final line end",
	}, raw...)
	served := []string{
		"Subject: one\r\nFrom: a@b\r\n\r\nline1\r\n.dot\r\n",
		"Subject: two\r\n\r\nno final line end",
		"Subject: three\r\n\r\na\rb\r\n",
		// Every LF gets a CR, even one that follows a CR.
		"Subject: crlf file\r\r\n\r\r\nx\r\r\n",
		// A CR that ends the file is not served.
		"Subject: cr at the end\r\n\r\nx",
		"Subject: nul\r\n\r\na\x00b\r\n",
		"",
	}
	// More messages, to show that UIDs follow the order of delivery.
	for i := len(served) + 1; i <= 16; i++ {
		s.Deliver(t, "alice", []byte(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)))
		stored = append(stored, fmt.Sprintf("Subject: %d\n\nx\n", i))
		served = append(served, fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	if got := storedFiles(t, s, "alice"); !slices.Equal(got, sorted(stored)) {
		t.Errorf("stored:\n got %q\nwant %q", got, sorted(stored))
	}
	if got := fetchAll(t, s, "alice"); !slices.Equal(got, served) {
		t.Errorf("served BODY[] by UID:\n got %q\nwant %q", got, served)
	}
	w := dialWire(t, s, "alice")
	w.cmd("SELECT INBOX")
	if got, want := w.cmd("FETCH 1 (BINARY.PEEK[])"), "T NO Error in IMAP command received by server.\r\n"; got != want {
		t.Errorf("BINARY.PEEK[]: %q, want %q", got, want)
	}
}

// APPEND stores LF, drops a bare CR and adds a missing final line end.
func TestAppendNormalises(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := s.Dial(t, "alice")
	for _, raw := range []string{
		"Subject: crlf\r\n\r\nbody\r\n",
		"Subject: nofinal\r\n\r\nlast",
		"Subject: barecr\r\n\r\na\rb\r\nc\r\r\n",
		"Subject: barelf\n\nl1\nl2\n",
	} {
		cmd := c.Append("INBOX", int64(len(raw)), nil)
		if _, err := io.WriteString(cmd, raw); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("APPEND %q: %v", raw, err)
		}
	}
	stored := []string{
		"Subject: crlf\n\nbody\n",
		"Subject: nofinal\n\nlast\n",
		"Subject: barecr\n\nab\nc\n",
		"Subject: barelf\n\nl1\nl2\n",
	}
	if got := storedFiles(t, s, "alice"); !slices.Equal(got, sorted(stored)) {
		t.Errorf("stored:\n got %q\nwant %q", got, sorted(stored))
	}
	var served []string
	for _, m := range stored {
		served = append(served, strings.ReplaceAll(m, "\n", "\r\n"))
	}
	if got := fetchAll(t, s, "alice"); !slices.Equal(got, served) {
		t.Errorf("served BODY[] by UID:\n got %q\nwant %q", got, served)
	}
}

// Session B expunges two messages; session A, not told until its next
// NOOP, fetches them by UID. The one A read last comes from the file A
// still holds open: the real bytes. The other answers OK with a made-up
// body instead of the message or an error. These are the exact bytes a
// fix must recognise.
func TestExpungeRaceServesSubstituteBody(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	keep := "Subject: keep\r\n\r\nfirst\r\n"
	gone := "Subject: gone\r\n\r\nsecond message, 199 octets or any other size\r\n"
	open := "Subject: open\r\n\r\nthird\r\n"
	for _, m := range []string{keep, gone, open} {
		s.Deliver(t, "alice", []byte(m))
	}
	// A first, so that A holds \Recent, as a session that syncs first does.
	a := dialWire(t, s, "alice")
	b := dialWire(t, s, "alice")
	for _, w := range []*wire{a, b} {
		if got := w.cmd("SELECT INBOX"); !strings.Contains(got, "* 3 EXISTS\r\n") {
			t.Fatalf("SELECT: %q", got)
		}
	}
	if got, want := a.cmd("UID FETCH 1:3 (RFC822.SIZE)"), "* 1 FETCH (UID 1 RFC822.SIZE 24)\r\n"+
		"* 2 FETCH (UID 2 RFC822.SIZE 63)\r\n* 3 FETCH (UID 3 RFC822.SIZE 24)\r\nT OK FETCH completed.\r\n"; got != want {
		t.Fatalf("before the expunge:\n got %q\nwant %q", got, want)
	}
	if got, want := a.cmd("UID FETCH 3 (BODY.PEEK[])"), fmt.Sprintf("* 3 FETCH (UID 3 BODY[] {%d}\r\n%s)\r\nT OK FETCH completed.\r\n", len(open), open); got != want {
		t.Fatalf("before the expunge:\n got %q\nwant %q", got, want)
	}
	b.cmd(`UID STORE 2:3 +FLAGS.SILENT (\Deleted)`)
	if got, want := b.cmd("EXPUNGE"), "* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXISTS\r\n* 0 RECENT\r\nT OK EXPUNGE completed\r\n"; got != want {
		t.Fatalf("EXPUNGE in B:\n got %q\nwant %q", got, want)
	}

	if len(UnavailableBody) != 129 {
		t.Errorf("UnavailableBody has %d octets, Courier sends 129", len(UnavailableBody))
	}
	for _, tc := range []struct{ cmd, want string }{
		{"UID FETCH 3 (BODY.PEEK[])", fmt.Sprintf("* 3 FETCH (UID 3 BODY[] {%d}\r\n%s)\r\nT OK FETCH completed.\r\n", len(open), open)},
		{"UID FETCH 2 (BODY.PEEK[])", "* 2 FETCH (UID 2 BODY[] {129}\r\n" + UnavailableBody + ")\r\nT OK FETCH completed.\r\n"},
		{"UID FETCH 2 (RFC822.SIZE BODY.PEEK[])", "* 2 FETCH (UID 2 RFC822.SIZE 129 BODY[] {129}\r\n" + UnavailableBody + ")\r\nT OK FETCH completed.\r\n"},
		// Once the substitute was served, the one A held open is gone too.
		{"UID FETCH 3 (RFC822.SIZE BODY.PEEK[])", "* 3 FETCH (UID 3 RFC822.SIZE 129 BODY[] {129}\r\n" + UnavailableBody + ")\r\nT OK FETCH completed.\r\n"},
		// Partial fetches cut the substitute, as a chunked reader sees it.
		{"UID FETCH 2 (BODY.PEEK[]<0.50>)", "* 2 FETCH (UID 2 BODY[]<0> {50}\r\n" + UnavailableBody[:50] + ")\r\nT OK FETCH completed.\r\n"},
		{"UID FETCH 2 (BODY.PEEK[]<100.100>)", "* 2 FETCH (UID 2 BODY[]<100> {29}\r\n" + UnavailableBody[100:] + ")\r\nT OK FETCH completed.\r\n"},
		{"UID FETCH 2 (BODY.PEEK[]<300.100>)", "* 2 FETCH (UID 2 BODY[]<300> {0}\r\n)\r\nT OK FETCH completed.\r\n"},
		{"UID FETCH 2 (BODY.PEEK[HEADER])", "* 2 FETCH (UID 2 BODY[HEADER] {77}\r\n" + UnavailableBody[:77] + ")\r\nT OK FETCH completed.\r\n"},
		// Among other messages in one read-ahead FETCH.
		{"UID FETCH 1:2 (BODY.PEEK[])", fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n", len(keep), keep) +
			"* 2 FETCH (UID 2 BODY[] {129}\r\n" + UnavailableBody + ")\r\nT OK FETCH completed.\r\n"},
		// The flags do not tell either: \Deleted went with the file.
		{"UID FETCH 2 (FLAGS)", "* 2 FETCH (UID 2 FLAGS (\\Recent))\r\nT OK FETCH completed.\r\n"},
		// A STORE answers OK, but without the FETCH of the new flags it
		// sends for a message that exists.
		{`UID STORE 2 +FLAGS (\Seen)`, "T OK STORE completed.\r\n"},
		{`UID STORE 1 +FLAGS (\Seen)`, "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\nT OK STORE completed.\r\n"},
		{"NOOP", "* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXISTS\r\n* 1 RECENT\r\nT OK NOOP completed\r\n"},
		// Once told, the UIDs are simply absent.
		{"UID FETCH 2:3 (BODY.PEEK[])", "T OK FETCH completed.\r\n"},
	} {
		if got := a.cmd(tc.cmd); got != tc.want {
			t.Errorf("A: %s:\n got %q\nwant %q", tc.cmd, got, tc.want)
		}
	}
}
