package dovecottest

import (
	"bytes"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const (
	crlfMsg = "From: bob@example.com\r\nTo: alice@example.com\r\nSubject: crlf\r\n\r\nline one\r\nline two\r\n"
	lfMsg   = "From: bob@example.com\nTo: alice@example.com\nSubject: bare lf\n\nline one\nline two\n"
)

var bodyPeek = &imap.FetchItemBodySection{Peek: true}

// fetchAll returns UID, RFC822.SIZE and BODY.PEEK[] of every message, in
// sequence order.
func fetchAll(t *testing.T, c *imapclient.Client) []*imapclient.FetchMessageBuffer {
	t.Helper()
	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}} // 1:*
	msgs, err := c.Fetch(all, &imap.FetchOptions{
		UID:         true,
		RFC822Size:  true,
		BodySection: []*imap.FetchItemBodySection{bodyPeek},
	}).Collect()
	if err != nil {
		t.Fatalf("UID FETCH 1:*: %v", err)
	}
	return msgs
}

func selectInbox(t *testing.T, c *imapclient.Client) *imap.SelectData {
	t.Helper()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT INBOX: %v", err)
	}
	return sel
}

// curFiles returns the contents of the user's cur/ files in name order,
// which is delivery order.
func curFiles(t *testing.T, s *Server, user string) [][]byte {
	t.Helper()
	dir := filepath.Join(s.Dir, "home", user, "Maildir", "cur")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// pop3Login opens a POP3 session; the caller sends QUIT.
func pop3Login(t *testing.T, s *Server, user, pass string) *textproto.Conn {
	t.Helper()
	if s.POP3Addr == "" {
		t.Fatal("POP3Addr is empty")
	}
	c, err := textproto.Dial("tcp", s.POP3Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pop3Cmd(t, c, "")
	pop3Cmd(t, c, "USER %s", user)
	pop3Cmd(t, c, "PASS %s", pass)
	return c
}

// pop3Cmd sends a command (none if format is empty) and returns the +OK
// line.
func pop3Cmd(t *testing.T, c *textproto.Conn, format string, args ...any) string {
	t.Helper()
	if format != "" {
		if err := c.PrintfLine(format, args...); err != nil {
			t.Fatal(err)
		}
	}
	line, err := c.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "+OK") {
		t.Fatalf("POP3 %q: %q", fmt.Sprintf(format, args...), line)
	}
	return line
}

func TestStartDeliverIMAPAndPOP3(t *testing.T) {
	s := Start(t, Options{POP3: true})
	s.Deliver(t, "alice", []byte(crlfMsg))
	s.Deliver(t, "alice", []byte(lfMsg))

	c := s.Dial(t, "alice")
	if sel := selectInbox(t, c); sel.NumMessages != 2 {
		t.Fatalf("SELECT INBOX: %d messages, want 2\n%s", sel.NumMessages, s.Log())
	}
	msgs := fetchAll(t, c)
	if len(msgs) != 2 {
		t.Fatalf("UID FETCH 1:* returned %d messages, want 2", len(msgs))
	}
	if !(msgs[0].UID < msgs[1].UID) {
		t.Errorf("UIDs %d, %d: not increasing in delivery order", msgs[0].UID, msgs[1].UID)
	}
	if got := msgs[0].FindBodySection(bodyPeek); string(got) != crlfMsg {
		t.Errorf("BODY[] of the CRLF message = %q, want the delivered bytes %q", got, crlfMsg)
	}
	if got, want := msgs[0].RFC822Size, int64(len(crlfMsg)); got != want {
		t.Errorf("RFC822.SIZE of the CRLF message = %d, want %d", got, want)
	}

	// Documented in the package comment: bare LF is counted and sent as
	// CRLF.
	lfAsCRLF := strings.ReplaceAll(lfMsg, "\n", "\r\n")
	if got, want := msgs[1].RFC822Size, int64(len(lfMsg)+strings.Count(lfMsg, "\n")); got != want {
		t.Errorf("RFC822.SIZE of the bare-LF message = %d, want %d (file size + number of LFs)", got, want)
	}
	if got := msgs[1].FindBodySection(bodyPeek); string(got) != lfAsCRLF {
		t.Errorf("BODY[] of the bare-LF message = %q, want %q", got, lfAsCRLF)
	}

	// Deliver promises the bytes exactly as given; Dovecot must not have
	// rewritten them when it moved the files to cur/.
	files := curFiles(t, s, "alice")
	if len(files) != 2 || string(files[0]) != crlfMsg || string(files[1]) != lfMsg {
		t.Errorf("maildir cur/ holds %q, want the delivered bytes unchanged", files)
	}

	p := pop3Login(t, s, "alice", "secret")
	var n, size int64
	if _, err := fmt.Sscanf(pop3Cmd(t, p, "STAT"), "+OK %d %d", &n, &size); err != nil {
		t.Fatalf("STAT: %v", err)
	}
	if want := msgs[0].RFC822Size + msgs[1].RFC822Size; n != 2 || size != want {
		t.Errorf("POP3 STAT = %d %d, want 2 %d", n, size, want)
	}
	pop3Cmd(t, p, "QUIT")
}

// TestOddBytes pins what the package comment says about bare CR and NUL.
func TestOddBytes(t *testing.T) {
	s := Start(t, Options{POP3: true})
	raw := "Subject: odd\r\n\r\nbare\rCR and NUL\x00 here\r\n"
	s.Deliver(t, "alice", []byte(raw))

	c := s.Dial(t, "alice")
	selectInbox(t, c)
	msgs := fetchAll(t, c)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	if got, want := msgs[0].RFC822Size, int64(len(raw)); got != want {
		t.Errorf("RFC822.SIZE = %d, want %d", got, want)
	}
	if got, want := string(msgs[0].FindBodySection(bodyPeek)), strings.ReplaceAll(raw, "\x00", "\x80"); got != want {
		t.Errorf("BODY[] = %q, want %q (NUL sent as 0x80)", got, want)
	}
	if files := curFiles(t, s, "alice"); len(files) != 1 || !bytes.Equal(files[0], []byte(raw)) {
		t.Errorf("maildir cur/ holds %q, want %q", files, raw)
	}

	// POP3, unlike IMAP, sends the NUL as is. Read raw lines rather than
	// with ReadDotBytes, which would hide the line endings.
	p := pop3Login(t, s, "alice", "secret")
	pop3Cmd(t, p, "RETR 1")
	var body strings.Builder
	for {
		line, err := p.R.ReadString('\n')
		if err != nil {
			t.Fatalf("RETR 1: %v after %q", err, body.String())
		}
		if line == ".\r\n" {
			break
		}
		body.WriteString(line)
	}
	if got := body.String(); got != raw {
		t.Errorf("POP3 RETR 1 = %q, want %q", got, raw)
	}
	pop3Cmd(t, p, "QUIT")
}

func TestDeliverWhileSelected(t *testing.T) {
	s := Start(t, Options{})
	s.Deliver(t, "alice", []byte(crlfMsg))
	c := s.Dial(t, "alice")
	selectInbox(t, c)
	s.Deliver(t, "alice", []byte(lfMsg))
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c)
	if len(msgs) != 2 || !(msgs[0].UID < msgs[1].UID) {
		t.Fatalf("after NOOP got %d messages (%+v), want 2 with increasing UIDs", len(msgs), msgs)
	}
	if got := msgs[1].RFC822Size; got != int64(len(lfMsg)+strings.Count(lfMsg, "\n")) {
		t.Errorf("second message RFC822.SIZE = %d: not the bare-LF message", got)
	}
}

func TestParallelStart(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			users map[string]string
			user  string
		}{
			{"default-user", nil, "alice"},
			{"custom-users", map[string]string{"bob": "pw1", "carol": "pw2"}, "carol"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := Start(t, Options{Users: tc.users, POP3: true})
				mu.Lock()
				for _, k := range []string{s.IMAPAddr, s.POP3Addr, s.Dir} {
					if seen[k] {
						t.Errorf("%s shared between parallel instances", k)
					}
					seen[k] = true
				}
				mu.Unlock()
				s.Deliver(t, tc.user, []byte(crlfMsg))
				c := s.Dial(t, tc.user)
				if sel := selectInbox(t, c); sel.NumMessages != 1 {
					t.Errorf("%s: %d messages, want 1", tc.user, sel.NumMessages)
				}
			})
		}
	})
}

// TestManyConnections checks that the raised limits are in effect: by
// default Dovecot allows only 10 connections per user and IP.
func TestManyConnections(t *testing.T) {
	s := Start(t, Options{})
	s.Deliver(t, "alice", []byte(crlfMsg))
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	clients := make(chan *imapclient.Client, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := imapclient.DialInsecure(s.IMAPAddr, nil)
			if err != nil {
				errs <- err
				return
			}
			clients <- c
			if err := c.Login("alice", "secret").Wait(); err != nil {
				errs <- fmt.Errorf("login: %w", err)
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				errs <- fmt.Errorf("select: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(clients)
	for c := range clients {
		c.Close()
	}
	for err := range errs {
		t.Errorf("concurrent session: %v", err)
	}
}
