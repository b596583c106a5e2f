package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

func testMessage(n int, body string) []byte {
	return []byte(fmt.Sprintf("From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\nMessage-ID: <m%d@example.org>\r\n\r\n%s", n, n, n, body))
}

// deliverN delivers n small messages and returns them.
func deliverN(t *testing.T, u *upstream, n int) [][]byte {
	var msgs [][]byte
	for i := 1; i <= n; i++ {
		m := testMessage(i, fmt.Sprintf("Body of message %d.\r\n.a line with a dot\r\n.\r\nlast line\r\n", i))
		u.deliver(t, m)
		msgs = append(msgs, m)
	}
	return msgs
}

// loginAfterDelivering delivers n messages to u, starts popbridge in front
// of it and logs in there. It returns the messages, INBOX as an IMAP
// client sees it then, and the POP3 session.
func loginAfterDelivering(t *testing.T, u *upstream, n int) ([][]byte, []upstreamMessage, *pop3test.Client) {
	t.Helper()
	msgs := deliverN(t, u, n)
	state := upstreamState(t, u)
	c := pop3test.Dial(t, startProxy(t, u.addr, proxyOptions{}).addr)
	c.Login(u.user, u.pass)
	return msgs, state, c
}

func TestRetrieveGivesUpstreamBytesAndSizes(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		msgs, state, c := loginAfterDelivering(t, u, 3)
		n, size := c.Stat()
		var total int64
		for _, m := range state {
			total += m.Size
		}
		if n != 3 || size != total {
			t.Fatalf("STAT = %d %d, want 3 %d", n, size, total)
		}
		list := c.Multi("LIST")
		var want strings.Builder
		for i, m := range state {
			fmt.Fprintf(&want, "%d %d\r\n", i+1, m.Size)
		}
		if string(list) != want.String() {
			t.Errorf("LIST = %q, want %q", list, want.String())
		}
		for i, m := range msgs {
			got := c.Multi("RETR " + strconv.Itoa(i+1))
			if !bytes.Equal(got, m) {
				t.Errorf("RETR %d = %q, want %q", i+1, got, m)
			}
			if int64(len(got)) != state[i].Size {
				t.Errorf("RETR %d sent %d octets, LIST says %d", i+1, len(got), state[i].Size)
			}
		}
		if resp := c.Quit(); resp != "+OK Logging out" {
			t.Errorf("QUIT = %q", resp)
		}
	})
}

func TestQuitExpungesExactlyTheDeletedMessages(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 5)
		before := upstreamState(t, u)
		// Another device flagged message 5 \Deleted without expunging: our
		// QUIT must not remove it.
		other := u.dial(t)
		flagDeleted(t, other, before[4].UID)
		other.Close()

		addr := startProxy(t, u.addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		c.OK("DELE 1")
		c.OK("DELE 3")
		if resp := c.Quit(); resp != "+OK Logging out, 2 messages deleted" {
			t.Fatalf("QUIT = %q", resp)
		}

		after := upstreamState(t, u)
		var uids []imap.UID
		for _, m := range after {
			uids = append(uids, m.UID)
		}
		want := []imap.UID{before[1].UID, before[3].UID, before[4].UID}
		if fmt.Sprint(uids) != fmt.Sprint(want) {
			t.Fatalf("upstream UIDs after QUIT = %v, want %v", uids, want)
		}
		if !hasFlag(after[2].Flags, imap.FlagDeleted) {
			t.Errorf("message flagged by another client lost its \\Deleted flag: %v", after[2].Flags)
		}
	})
}

func TestDroppedConnectionChangesNothing(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		c.OK("DELE 1")
		c.OK("DELE 2")
		c.Conn.Close() // no QUIT

		// The session ends asynchronously; a new session proves it ended
		// and shows the maildrop untouched.
		c2 := pop3test.Dial(t, addr)
		c2.Login(u.user, u.pass)
		if n, _ := c2.Stat(); n != 3 {
			t.Fatalf("STAT after dropped session: %d messages, want 3", n)
		}
		c2.Quit()
		for _, m := range upstreamState(t, u) {
			if hasFlag(m.Flags, imap.FlagDeleted) {
				t.Errorf("UID %d flagged \\Deleted after a dropped session", m.UID)
			}
		}
	})
}

func TestRetrSetsSeenAndTopDoesNot(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		_, _, c := loginAfterDelivering(t, u, 3)
		c.Multi("RETR 1")
		c.Multi("TOP 2 1")
		c.Quit()
		state := upstreamState(t, u)
		if !hasFlag(state[0].Flags, imap.FlagSeen) {
			t.Errorf("RETR 1 left message 1 unseen: %v", state[0].Flags)
		}
		for _, m := range state[1:] {
			if hasFlag(m.Flags, imap.FlagSeen) {
				t.Errorf("UID %d seen without RETR: %v", m.UID, m.Flags)
			}
		}
	})
}

func TestSeenNeverLeavesMailUnread(t *testing.T) {
	u := startMemUpstream(t)
	deliverN(t, u, 1)
	addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Seen = "never" }}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	c.Multi("RETR 1")
	c.Quit()
	if f := upstreamState(t, u)[0].Flags; hasFlag(f, imap.FlagSeen) {
		t.Errorf("policy seen=never, but RETR set \\Seen: %v", f)
	}
}

func TestUIDLIsStableAndMatchesDovecotFormat(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		c := u.dial(t)
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for i, m := range upstreamState(t, u) {
			fmt.Fprintf(&want, "%d %08x%08x\r\n", i+1, uint32(m.UID), sel.UIDValidity)
		}
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		for session := 1; session <= 2; session++ {
			p := pop3test.Dial(t, addr)
			p.Login(u.user, u.pass)
			if got := p.Multi("UIDL"); string(got) != want.String() {
				t.Errorf("session %d: UIDL = %q, want %q", session, got, want.String())
			}
			p.Quit()
		}
		if u.nativePOP3 != "" {
			// A user moved from the upstream's own POP3 server to
			// popbridge must see the same unique-ids.
			p := pop3test.Dial(t, u.nativePOP3)
			p.Login(u.user, u.pass)
			if got := p.Multi("UIDL"); string(got) != want.String() {
				t.Errorf("%s's own POP3 UIDL = %q, popbridge's %q", u.name, got, want.String())
			}
			p.Quit()
		}
	})
}

func TestMessageExpungedByAnotherClient(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		before := upstreamState(t, u)
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)

		other := u.dial(t)
		flagDeleted(t, other, before[1].UID)
		if err := other.UIDExpunge(imap.UIDSetNum(before[1].UID)).Close(); err != nil {
			t.Fatal(err)
		}
		// New mail arrives too: it waits for the next session.
		u.deliver(t, testMessage(9, "new\r\n"))

		if u.expungeLate {
			// The upstream still serves the message to popbridge's
			// session: the client gets it whole. NOOP lets the upstream
			// report the expunge.
			if got := c.Multi("RETR 2"); !bytes.Equal(got, before[1].Body) {
				t.Errorf("RETR 2 before the upstream reported the expunge = %q, want the whole message", got)
			}
			c.OK("NOOP")
		}
		if resp := c.Cmd("RETR 2"); !strings.HasPrefix(resp, "-ERR") {
			t.Fatalf("RETR of an expunged message = %q", resp)
		}
		if resp := c.Cmd("TOP 2 0"); !strings.HasPrefix(resp, "-ERR") {
			t.Fatalf("TOP of an expunged message = %q", resp)
		}
		c.OK("NOOP")
		if resp := c.Cmd("DELE 2"); !strings.HasPrefix(resp, "-ERR") {
			t.Errorf("DELE of an expunged message = %q", resp)
		}
		if got := c.Multi("RETR 3"); !bytes.Contains(got, []byte("message 3")) {
			t.Errorf("RETR 3 after the expunge of 2 = %q", got)
		}
		if n, _ := c.Stat(); n != 3 {
			t.Errorf("STAT = %d, message numbers must not shift during a session", n)
		}
		c.OK("DELE 1")
		c.Quit()

		after := upstreamState(t, u)
		if len(after) != 2 || after[0].UID != before[2].UID {
			t.Fatalf("after QUIT: %d messages, first UID %d; want messages 3 and the new one", len(after), after[0].UID)
		}
	})
}

func TestLoginErrorsCarryResponseCodes(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.OK("USER " + u.user)
		if resp := c.Cmd("PASS wrong"); !strings.HasPrefix(resp, "-ERR [AUTH] ") {
			t.Errorf("wrong password: %q", resp)
		}
		// AUTH PLAIN reaches the upstream too.
		if resp := c.Cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="); !strings.HasPrefix(resp, "+OK") {
			t.Errorf("AUTH PLAIN alice/secret: %q", resp)
		}
		c.Quit()
	})

	// An upstream that is not there.
	addr := startProxy(t, testkit.FreeAddr(t), proxyOptions{}).addr
	c := pop3test.Dial(t, addr)
	c.OK("USER alice")
	start := time.Now()
	if resp := c.Cmd("PASS secret"); !strings.HasPrefix(resp, "-ERR [SYS/TEMP] ") {
		t.Errorf("upstream down: %q", resp)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("upstream down took %v to report", d)
	}
}

func TestMissingMailboxIsPermanentError(t *testing.T) {
	u := startMemUpstream(t)
	addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Upstream.Mailbox = "Nope" }}).addr
	c := pop3test.Dial(t, addr)
	c.OK("USER alice")
	if resp := c.Cmd("PASS secret"); !strings.HasPrefix(resp, "-ERR [SYS/PERM] ") {
		t.Errorf("missing mailbox: %q", resp)
	}
}

func TestLargeMessageStreamsInChunks(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		// 3 MiB and an exact multiple of the 256 KiB chunk: the reader must
		// stop at the end without a short chunk to tell it.
		var sizes = []int{3<<20 + 12345, 4 << 18}
		var msgs [][]byte
		for i, size := range sizes {
			hdr := testMessage(i+1, "")
			line := bytes.Repeat([]byte("0123456789abcdef"), 4)
			body := make([]byte, 0, size)
			for len(body)+len(hdr) < size {
				body = append(body, line...)
				body = append(body, '\r', '\n')
			}
			m := append(hdr, body...)
			m = m[:size-2]
			m = append(m, '\r', '\n')
			u.deliver(t, m)
			msgs = append(msgs, m)
		}
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		for i, m := range msgs {
			if got := c.Multi("RETR " + strconv.Itoa(i+1)); !bytes.Equal(got, m) {
				t.Errorf("RETR %d: %d octets back, want %d, equal prefix %d", i+1, len(got), len(m), commonPrefix(got, m))
			}
		}
		c.Quit()
	})
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestUpstreamCutMidRetrClosesWithoutTerminator(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		big := testMessage(1, strings.Repeat("a long line of text in a big message\r\n", 90000))
		u.deliver(t, big)
		relay := faultrelay.New(t, u.addr)
		addr := startProxy(t, relay.Addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		// The upstream dies in the second chunk (3.3 MB in 1 MiB chunks).
		relay.Arm(faultrelay.Fault{Dir: faultrelay.Down, Offset: 1536 << 10, Action: faultrelay.Cut})
		c.Send("RETR 1")
		c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var got []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Conn.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(got, []byte("+OK ")) {
			t.Fatalf("RETR answer starts %q", got[:min(len(got), 40)])
		}
		if bytes.HasSuffix(got, []byte("\r\n.\r\n")) {
			t.Fatal("a message cut upstream ended with the terminating line")
		}
		if len(got) >= len(big) {
			t.Fatalf("got %d octets of a %d octet message despite the cut", len(got), len(big))
		}
		// Nothing was deleted and the mail is still whole upstream.
		if s := upstreamState(t, u); len(s) != 1 || !bytes.Equal(s[0].Body, big) {
			t.Fatal("upstream message changed after a cut transfer")
		}
	})
}

func TestDeletePolicies(t *testing.T) {
	for _, tc := range []struct {
		policy      imapback.DeletePolicy
		wantCount   int
		wantDeleted bool // the DELE'd message is still there, flagged \Deleted
	}{
		{"expunge", 1, false},
		{"flag", 2, true},
		{"keep", 2, false},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			u := startMemUpstream(t)
			deliverN(t, u, 2)
			addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Delete = tc.policy }}).addr
			c := pop3test.Dial(t, addr)
			c.Login(u.user, u.pass)
			c.OK("DELE 1")
			if n, _ := c.Stat(); n != 1 {
				t.Errorf("STAT after DELE = %d, want 1 with any policy", n)
			}
			if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
				t.Fatalf("QUIT = %q", resp)
			}
			s := upstreamState(t, u)
			if len(s) != tc.wantCount {
				t.Fatalf("%d messages upstream, want %d", len(s), tc.wantCount)
			}
			if tc.wantCount == 2 && hasFlag(s[0].Flags, imap.FlagDeleted) != tc.wantDeleted {
				t.Errorf("flags of the DELE'd message: %v", s[0].Flags)
			}
		})
	}
}

func TestWithoutUIDPlusDeletedMailIsOnlyFlagged(t *testing.T) {
	u := startMemUpstreamCaps(t, imap.CapSet{imap.CapIMAP4rev1: {}})
	_, _, c := loginAfterDelivering(t, u, 2)
	c.OK("DELE 2")
	if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
		t.Fatalf("QUIT = %q", resp)
	}
	s := upstreamState(t, u)
	if len(s) != 2 || !hasFlag(s[1].Flags, imap.FlagDeleted) || hasFlag(s[0].Flags, imap.FlagDeleted) {
		t.Fatalf("without UIDPLUS: want both messages, only the second flagged; got %+v", s)
	}
}

func TestNewSessionSeesMailThatArrivedDuringTheLastOne(t *testing.T) {
	u := startMemUpstream(t)
	deliverN(t, u, 1)
	addr := startProxy(t, u.addr, proxyOptions{}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	u.deliver(t, testMessage(2, "later\r\n"))
	c.OK("NOOP")
	if n, _ := c.Stat(); n != 1 {
		t.Errorf("mail that arrived during the session is visible: STAT %d", n)
	}
	c.Quit()
	c = pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)
	if n, _ := c.Stat(); n != 2 {
		t.Errorf("next session: STAT %d, want 2", n)
	}
}

// POP3 needs CRLF line ends on the wire. Dovecot and Courier store a
// bare-LF message as it came but report its size and serve its body with
// CRLF, so the
// listed size and the octets sent agree; go-imap's memory server reports
// and serves the stored bytes, so popbridge's CRLF conversion makes the
// message arrive larger than listed (README, "Sizes").
func TestBareLFMessageIsSentWithCRLF(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		raw := []byte("From: a@example.org\nSubject: bare LF\n\nline one\n.dot line\nno final newline")
		want := []byte("From: a@example.org\r\nSubject: bare LF\r\n\r\nline one\r\n.dot line\r\nno final newline\r\n")
		if u.refuses != nil && u.refuses(raw) {
			// Cyrus refuses bare LF at APPEND ("Message contains bare
			// newlines", pinned down by internal/cyrustest), so no bare-LF
			// message reaches popbridge from it.
			return
		}
		u.deliver(t, raw)
		addr := startProxy(t, u.addr, proxyOptions{}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		var n int
		var size int64
		fmt.Sscanf(c.OK("LIST 1"), "+OK %d %d", &n, &size)
		got := c.Multi("RETR 1")
		if !bytes.Equal(got, want) {
			t.Errorf("RETR = %q, want %q", got, want)
		}
		wantSize := int64(len(raw))
		if u.name == "dovecot" || u.name == "courier" {
			wantSize = int64(len(want) - 2) // every LF counted as CRLF; no final line end stored
		}
		if size != wantSize {
			t.Errorf("LIST size = %d, want %d", size, wantSize)
		}
		c.Quit()
	})
}

// Passwords and message contents never reach the logs, whatever happens:
// wrong and right passwords, USER/PASS and AUTH PLAIN, retrieval, a cut
// upstream.
func TestLogsHoldNoPasswordOrMessageContent(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		const secretBody = "body-text-that-must-not-be-logged"
		u.deliver(t, testMessage(1, secretBody+"\r\n"))
		var logs testkit.LockedBuffer
		addr := startProxy(t, u.addr, proxyOptions{logs: &logs}).addr
		c := pop3test.Dial(t, addr)
		c.OK("USER " + u.user)
		c.Cmd("PASS wrong-password-xyzzy")
		c.Cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+u.user+"\x00wrong-plain-xyzzy")))
		c.Login(u.user, u.pass)
		c.Multi("RETR 1")
		c.Multi("TOP 1 5")
		c.Quit()
		// The session's log line comes once its upstream connection is
		// closed, just after the answer to QUIT.
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "session ended") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		for _, secret := range []string{"wrong-password-xyzzy", "wrong-plain-xyzzy", u.pass, secretBody,
			base64.StdEncoding.EncodeToString([]byte("\x00" + u.user + "\x00wrong-plain-xyzzy"))} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("logs contain %q:\n%s", secret, logs.String())
			}
		}
		if !strings.Contains(logs.String(), "session ended") {
			t.Errorf("no session log line:\n%s", logs.String())
		}
		// Debug logs name each command, with secret arguments redacted;
		// the session's line sums it up like Dovecot's pop3_logout_format.
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`level=DEBUG msg=command session=\S+ remote=127\.0\.0\.1:\d+ cmd=PASS args=<redacted> result=err `),
			regexp.MustCompile(`level=DEBUG msg=command session=\S+ remote=127\.0\.0\.1:\d+ cmd=AUTH args="PLAIN <redacted>" result=err `),
			regexp.MustCompile(`level=DEBUG msg=command session=\S+ remote=127\.0\.0\.1:\d+ cmd=RETR args=1 result=ok duration=\S+ sent=\d+`),
			regexp.MustCompile(`level=INFO msg="session ended" session=\S+ remote=127\.0\.0\.1:\d+ user=` + u.user +
				` reason=quit duration=\S+ messages=\d+ size=\d+ retr=1 retr_octets=\d+ top=1 top_octets=\d+ marked=0 removed=0 flagged=0 sent=\d+`),
		} {
			if !want.MatchString(logs.String()) {
				t.Errorf("no log line matches %s:\n%s", want, logs.String())
			}
		}
	})
}

// flagDeleted sets \Deleted on a message as another IMAP client would.
func flagDeleted(t *testing.T, c *imapclient.Client, uid imap.UID) {
	t.Helper()
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{
		Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted},
	}, nil).Close(); err != nil {
		t.Fatal(err)
	}
}

// A 100 MiB message streams through with bounded memory: popbridge
// allocates a small fraction of the message size while sending it, and
// every octet arrives.
func TestHugeMessageStreamsWithBoundedMemory(t *testing.T) {
	u := startDovecotUpstream(t)
	line := []byte(strings.Repeat("0123456789", 7) + "\r\n")
	msg := append([]byte(nil), "Subject: huge\r\n\r\n"...)
	for len(msg) < 100<<20 {
		msg = append(msg, line...)
	}
	u.deliver(t, msg)
	want := sha256.Sum256(msg)
	size := len(msg)
	msg = nil
	addr := startProxy(t, u.addr, proxyOptions{}).addr
	c := pop3test.Dial(t, addr)
	c.Login(u.user, u.pass)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c.Send("RETR 1")
	status := c.Line()
	if status != "+OK "+strconv.Itoa(size)+" octets" {
		t.Fatalf("RETR 1: %q", status)
	}
	// The lines hold no leading dot, so the data arrives unchanged,
	// followed by the terminating line. Read it into a fixed buffer: this
	// test's own reading must not allocate either.
	h := sha256.New()
	tail := []byte("\r\n.\r\n")
	buf := make([]byte, 64<<10)
	var got int
	c.Conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for got < size+3 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d octets: %v", got, err)
		}
		data := buf[:n]
		if over := got + n - size; over > 0 {
			if !bytes.Equal(data[n-over:], tail[2:2+over]) {
				t.Fatalf("terminating line %q", data[n-over:])
			}
			data = data[:n-over]
		}
		h.Write(data)
		got += n
	}
	runtime.ReadMemStats(&after)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("the message arrived changed")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("RETR of %d MiB allocated %.1f MiB in this process", size>>20, float64(alloc)/(1<<20))
	if alloc > 16<<20 {
		t.Errorf("RETR of a %d MiB message allocated %d MiB: it is buffered, not streamed", size>>20, alloc>>20)
	}
	c.Quit()
}

// Flag changes by another client reach popbridge as unsolicited FETCH
// responses, which may arrive in the middle of its own UID FETCH. They must
// not be taken for the answer: every message stays retrievable.
func TestFlagChangesByAnotherClientLeaveMessagesRetrievable(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		msgs, state, c := loginAfterDelivering(t, u, 4)
		other := dialIMAP(t, u)
		flag := func(uid imap.UID) {
			t.Helper()
			if err := other.Store(imap.UIDSetNum(uid), &imap.StoreFlags{
				Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged},
			}, nil).Close(); err != nil {
				t.Fatal(err)
			}
		}
		for i, m := range msgs {
			// Flag another message, then this one, so that updates for
			// both are pending when popbridge fetches.
			flag(state[(i+1)%len(state)].UID)
			flag(state[i].UID)
			n := strconv.Itoa(i + 1)
			if got := c.Multi("TOP " + n + " 0"); !bytes.HasPrefix(m, got) {
				t.Errorf("TOP %s 0 = %q, not a prefix of the message", n, got)
			}
			flag(state[i].UID)
			if got := c.Multi("RETR " + n); !bytes.Equal(got, m) {
				t.Errorf("RETR %s = %q, want %q", n, got, m)
			}
		}
		c.Quit()
	})
}
