package proxy

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// Maildrops of several folders merged (upstream.mailboxes and rules'
// mailboxes), against Dovecot, and the basics on every test upstream.

// folderMail is what a folder holds: each message's subject and flags,
// in UID order.
type folderMail struct {
	subject string
	flags   []imap.Flag
}

func folderState(t *testing.T, c *imapclient.Client, folder string) []folderMail {
	t.Helper()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", folder, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatalf("FETCH in %s: %v", folder, err)
	}
	var out []folderMail
	for _, b := range bufs {
		out = append(out, folderMail{b.Envelope.Subject, b.Flags})
	}
	return out
}

func subjects(ms []folderMail) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.subject)
	}
	return s
}

// uidlsBySubject lists the maildrop and returns each message's UIDL by
// its subject, and the subjects in POP3 order.
func uidlsBySubject(t *testing.T, c *pop3test.Client) (map[string]string, []string) {
	t.Helper()
	ids := map[string]string{}
	seen := map[string]bool{}
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(string(c.Multi("UIDL"))), "\r\n") {
		var n int
		var id string
		if _, err := fmt.Sscanf(line, "%d %s", &n, &id); err != nil {
			t.Fatalf("UIDL line %q: %v", line, err)
		}
		top := string(c.Multi(fmt.Sprintf("TOP %d 0", n)))
		i := strings.Index(top, "Subject: ")
		subj := strings.SplitN(top[i+len("Subject: "):], "\r\n", 2)[0]
		if _, dup := ids[subj]; dup {
			subj += " (copy)"
		}
		if seen[id] {
			t.Errorf("UIDL %q listed twice", id)
		}
		seen[id] = true
		ids[subj] = id
		order = append(order, subj)
	}
	return ids, order
}

// INBOX and Junk merged: INBOX's messages, then Junk's, each in UID
// order; INBOX's UIDLs those of INBOX alone, Junk's distinct from them
// even for a copy of an INBOX message, all stable when new mail comes;
// RETR and TOP read the right folder, \Seen lands in the right folder;
// a dropped session changes nothing and QUIT removes exactly the DELE'd
// messages of both folders. For the default UIDL format and for %m, which
// gives a copy the same id in both folders.
func TestMergedFolders(t *testing.T) {
	for _, format := range []string{"", "%m"} {
		t.Run("uidl "+format, func(t *testing.T) {
			t.Parallel()
			d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
			imc := d.Dial(t, "alice")
			now := time.Now()
			appendMail(t, imc, "INBOX", now, testMessage(1, "inbox one\r\n"))
			appendMail(t, imc, "INBOX", now, testMessage(2, "inbox two\r\n"))
			appendMail(t, imc, "Junk", now, testMessage(3, "junk three\r\n"))
			appendMail(t, imc, "Junk", now, testMessage(1, "inbox one\r\n")) // a copy of INBOX's first
			uidl := func(c *config.Config) { c.Policy.UIDLFormat = format }
			single := startProxy(t, d.IMAPAddr, proxyOptions{configure: uidl}).addr
			addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
				uidl(c)
				c.Upstream.Mailboxes = []string{"INBOX", "Junk"}
			}}).addr

			c := pop3test.Dial(t, single)
			c.Login("alice", "secret")
			inboxOnly, _ := uidlsBySubject(t, c)
			c.Quit()

			c = pop3test.Dial(t, addr)
			c.Login("alice", "secret")
			first, order := uidlsBySubject(t, c)
			if want := []string{"message 1", "message 2", "message 3", "message 1 (copy)"}; !slices.Equal(order, want) {
				t.Fatalf("order %q, want %q", order, want)
			}
			for _, s := range []string{"message 1", "message 2"} {
				if first[s] != inboxOnly[s] {
					t.Errorf("%s: UIDL %q merged, %q in INBOX alone", s, first[s], inboxOnly[s])
				}
			}
			for n, want := range []string{"inbox one", "inbox two", "junk three", "inbox one"} {
				if got := string(c.Multi(fmt.Sprintf("RETR %d", n+1))); !strings.HasSuffix(got, "\r\n\r\n"+want+"\r\n") {
					t.Errorf("RETR %d = %q, want the body %q", n+1, got, want)
				}
			}
			if got := string(c.Multi("TOP 3 0")); !strings.Contains(got, "Subject: message 3\r\n") || strings.Contains(got, "junk three") {
				t.Errorf("TOP 3 0 = %q", got)
			}
			c.Quit()
			if j := folderState(t, imc, "Junk"); len(j) != 2 || !hasFlag(j[0].flags, imap.FlagSeen) {
				t.Errorf("Junk after RETR of its messages: %+v, want both \\Seen", j)
			}

			// New mail in INBOX takes a number before Junk's; no UIDL moves.
			appendMail(t, imc, "INBOX", now, testMessage(4, "inbox four\r\n"))
			c = pop3test.Dial(t, addr)
			c.Login("alice", "secret")
			second, order := uidlsBySubject(t, c)
			if want := []string{"message 1", "message 2", "message 4", "message 3", "message 1 (copy)"}; !slices.Equal(order, want) {
				t.Fatalf("order after new mail %q, want %q", order, want)
			}
			for s, id := range first {
				if second[s] != id {
					t.Errorf("%s: UIDL %q, was %q", s, second[s], id)
				}
			}
			// A dropped connection removes nothing.
			c.OK("DELE 2")
			c.OK("DELE 5")
			c.Conn.Close()

			c = pop3test.Dial(t, addr)
			c.Login("alice", "secret")
			if n, _ := c.Stat(); n != 5 {
				t.Fatalf("STAT after a dropped session: %d, want 5", n)
			}
			c.OK("DELE 2") // message 2, in INBOX
			c.OK("DELE 5") // the copy of message 1, in Junk
			if got := c.Quit(); got != "+OK Logging out, 2 messages deleted" {
				t.Fatalf("QUIT = %q", got)
			}
			if got, want := subjects(folderState(t, imc, "INBOX")), []string{"message 1", "message 4"}; !slices.Equal(got, want) {
				t.Errorf("INBOX after QUIT: %q, want %q", got, want)
			}
			if got, want := subjects(folderState(t, imc, "Junk")), []string{"message 3"}; !slices.Equal(got, want) {
				t.Errorf("Junk after QUIT: %q, want %q", got, want)
			}
		})
	}
}

// A device view over merged folders: each folder keeps the device's
// deletes as its keyword, so the device no longer sees them and another
// device still does; a rule merges folders for one device only.
func TestMergedFoldersDeviceView(t *testing.T) {
	t.Parallel()
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
	imc := d.Dial(t, "alice")
	appendMail(t, imc, "INBOX", time.Now(), testMessage(1, "inbox\r\n"))
	appendMail(t, imc, "Junk", time.Now(), testMessage(2, "junk\r\n"))
	addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Policy.Devices.Separator = "#"
		c.Policy.Folders.Separator = "+"
		c.Policy.Rules = []config.PolicyRule{{Devices: []string{"phone", "laptop"}, Mailboxes: []string{"INBOX", "Junk"}}}
	}}).addr

	count := func(user string) int {
		c := pop3test.Dial(t, addr)
		c.Login(user, "secret")
		n, _ := c.Stat()
		c.Quit()
		return n
	}
	if n := count("alice"); n != 1 {
		t.Errorf("alice without a device: %d messages, want INBOX's 1", n)
	}
	c := pop3test.Dial(t, addr)
	c.Login("alice#phone", "secret")
	c.OK("DELE 1")
	c.OK("DELE 2")
	if got := c.Quit(); got != "+OK Logging out, 2 messages marked deleted on the server" {
		t.Fatalf("QUIT = %q", got)
	}
	if n := count("alice#phone"); n != 0 {
		t.Errorf("phone after its deletes: %d messages, want 0", n)
	}
	if n := count("alice#laptop"); n != 2 {
		t.Errorf("laptop: %d messages, want both folders' 2", n)
	}
	if n := count("alice+Junk#laptop"); n != 1 {
		t.Errorf("laptop naming Junk: %d messages, want Junk's 1 (the login's folder wins over the rule's)", n)
	}
}

// The hook's X-Popbridge-Mailboxes merges folders for one login.
func TestMergedFoldersFromTheHook(t *testing.T) {
	t.Parallel()
	d := hookDovecot(t, "")
	appendMail(t, d.Dial(t, "alice"), "Junk", time.Now(), testMessage(3, "junk\r\n"))
	hook := startTestHook(t, func(req http.Header) map[string]string {
		return okAt(t, d.IMAPAddr, "X-Popbridge-Mailboxes", "INBOX,Junk")
	})
	c := pop3test.Dial(t, startProxy(t, "", withHook(hook.url, nil)).addr)
	c.Login("alice", "secret")
	if n, _ := c.Stat(); n != 3 {
		t.Fatalf("STAT: %d messages, want INBOX's 2 and Junk's 1", n)
	}
	if got := string(c.Multi("RETR 3")); !strings.Contains(got, "Subject: message 3") {
		t.Errorf("RETR 3 = %q, want Junk's message", got)
	}
	c.Quit()
}

// mpop keeps mail on the server and fetches a merged maildrop: every
// message of both folders once, and on its second run nothing again.
func TestMergedFoldersWithMpop(t *testing.T) {
	t.Parallel()
	tool := testkit.Program(t, "mpop")
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
	imc := d.Dial(t, "alice")
	var want [][]byte
	for i, folder := range []string{"INBOX", "Junk", "INBOX", "Junk"} {
		m := testMessage(i+1, fmt.Sprintf("in %s\r\n", folder))
		appendMail(t, imc, folder, time.Now(), m)
		want = append(want, crlfToLF(m))
	}
	addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Upstream.Mailboxes = []string{"INBOX", "Junk"}
	}}).addr
	host, port, _ := net.SplitHostPort(addr)
	r := &clientRun{tool: tool, host: host, port: port, user: "alice", pass: "secret", state: t.TempDir(), out: t.TempDir()}
	got := runMpop(t, r)
	if len(got) != len(want) {
		t.Fatalf("mpop stored %d messages, want %d", len(got), len(want))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g []byte) bool { return string(g) == string(w) }) {
			t.Errorf("mpop did not store %q", w)
		}
	}
	r.out = t.TempDir()
	if again := runMpop(t, r); len(again) != 0 {
		t.Errorf("mpop's second run stored %d messages, want none (the UIDLs are stable)", len(again))
	}
}

// On every upstream (Courier keeps Junk under its INBOX. namespace, found
// as a folder at login is): INBOX's messages then Junk's, RETR from each,
// and QUIT removes the DELE'd one of each and nothing else.
func TestMergedFoldersOnEachUpstream(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		u.deliver(t, testMessage(1, "inbox\r\n"))
		imc := u.dial(t)
		junk := "Junk"
		if u.name == "courier" {
			junk = "INBOX.Junk"
		}
		appendMail(t, imc, junk, time.Now(), testMessage(2, "junk\r\n"))
		appendMail(t, imc, junk, time.Now(), testMessage(3, "junk\r\n"))
		addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
			c.Upstream.Mailboxes = []string{"INBOX", "Junk"}
		}}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		for n := 1; n <= 3; n++ {
			if got := string(c.Multi(fmt.Sprintf("RETR %d", n))); !strings.Contains(got, fmt.Sprintf("Subject: message %d\r\n", n)) {
				t.Errorf("RETR %d = %q", n, got)
			}
		}
		c.OK("DELE 1")
		c.OK("DELE 3")
		if got := c.Quit(); got != "+OK Logging out, 2 messages deleted" {
			t.Fatalf("QUIT = %q", got)
		}
		if got := subjects(folderState(t, imc, "INBOX")); len(got) != 0 {
			t.Errorf("INBOX after QUIT: %q, want empty", got)
		}
		if got, want := subjects(folderState(t, imc, junk)), []string{"message 2"}; !slices.Equal(got, want) {
			t.Errorf("%s after QUIT: %q, want %q", junk, got, want)
		}
	})
}
