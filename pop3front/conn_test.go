package pop3front

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

func TestCapaListsCapabilitiesForTheState(t *testing.T) {
	const common = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
	tests := []struct {
		name  string
		impl  string
		login bool
		send  string
		want  string
	}{
		{"authorization", "", false, "CAPA\r\n",
			common + "USER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION popbridge\r\n.\r\n"},
		{"transaction", "", true, "CAPA\r\n",
			common + "IMPLEMENTATION popbridge\r\n.\r\n"},
		{"implementation field", "test-impl 1.0", false, "CAPA\r\n",
			common + "USER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION test-impl 1.0\r\n.\r\n"},
		{"arguments rejected", "", false, "CAPA x\r\n", "-ERR CAPA takes no arguments\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, newFakeBackend(), func(s *Server) { s.Implementation = tt.impl })
			var c *client
			switch {
			case tt.login:
				c = dialLogin(t, ts, "3")
			case tt.impl != "":
				// The greeting names the implementation too.
				c = dialRaw(t, ts)
				c.expect("", "+OK "+tt.impl+" ready\r\n")
			default:
				c = dial(t, ts)
			}
			c.expect(tt.send, tt.want)
			c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
		})
	}
}

func TestCommandsInTheWrongState(t *testing.T) {
	const before = "-ERR Command not valid before login\r\n"
	const after = "-ERR Command not valid after login\r\n"
	const apop = "-ERR APOP is not supported, use USER/PASS or AUTH PLAIN\r\n"
	tests := []struct {
		login bool
		send  string
		want  string
	}{
		{false, "STAT", before},
		{false, "LIST", before},
		{false, "LIST 1", before},
		{false, "UIDL", before},
		{false, "UIDL 1", before},
		{false, "RETR 1", before},
		{false, "TOP 1 0", before},
		{false, "DELE 1", before},
		{false, "RSET", before},
		{false, "NOOP", before},
		{false, "LAST", before},
		{false, "APOP alice 0123456789abcdef0123456789abcdef", apop},
		{true, "USER alice", after},
		{true, "PASS secret", after},
		{true, "AUTH", after},
		{true, "AUTH PLAIN " + plain("", "alice", "secret"), after},
		{true, "APOP alice 0123456789abcdef0123456789abcdef", apop},
	}
	for _, tt := range tests {
		name := "authorization/" + tt.send
		if tt.login {
			name = "transaction/" + tt.send
		}
		t.Run(name, func(t *testing.T) {
			fb := newFakeBackend()
			ts := startServer(t, fb)
			var c *client
			if tt.login {
				c = dialLogin(t, ts, "3")
			} else {
				c = dial(t, ts)
			}
			c.expect(tt.send+"\r\n", tt.want)
			if n := len(fb.retrieveCalls()) + fb.noopCount(); n != 0 {
				t.Errorf("backend was used %d times", n)
			}
			wantLogins := 0
			if tt.login {
				wantLogins = 1
			}
			if n := len(fb.loginCalls()); n != wantLogins {
				t.Errorf("Login called %d times, want %d", n, wantLogins)
			}
			// Still in the same state.
			if tt.login {
				c.expect("STAT\r\n", "+OK 3 68\r\n")
			} else {
				c.expect("STAT\r\n", before)
			}
		})
	}
}

func TestStatListUidl(t *testing.T) {
	tests := []struct {
		name string
		send string
		want string
	}{
		{"STAT", "STAT\r\n", "+OK 3 68\r\n"},
		{"LIST", "LIST\r\n", "+OK 3 messages\r\n1 23\r\n2 22\r\n3 23\r\n.\r\n"},
		{"LIST n", "LIST 2\r\n", "+OK 2 22\r\n"},
		{"LIST leading zeros", "LIST 002\r\n", "+OK 2 22\r\n"},
		{"UIDL", "UIDL\r\n", "+OK Unique-ID listing follows\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n"},
		{"UIDL n", "UIDL 3\r\n", "+OK 3 uid-three\r\n"},
		{"LIST 0", "LIST 0\r\n", "-ERR No such message\r\n"},
		{"LIST past the end", "LIST 4\r\n", "-ERR No such message\r\n"},
		{"LIST huge", "LIST 999999999\r\n", "-ERR No such message\r\n"},
		{"LIST too many digits", "LIST 1234567890\r\n", "-ERR Invalid message number\r\n"},
		{"LIST non-numeric", "LIST one\r\n", "-ERR Invalid message number\r\n"},
		{"LIST negative", "LIST -1\r\n", "-ERR Invalid message number\r\n"},
		{"LIST two arguments", "LIST 1 2\r\n", "-ERR Invalid message number\r\n"},
		{"UIDL 0", "UIDL 0\r\n", "-ERR No such message\r\n"},
		{"UIDL past the end", "UIDL 4\r\n", "-ERR No such message\r\n"},
		{"UIDL non-numeric", "UIDL x\r\n", "-ERR Invalid message number\r\n"},
		{"STAT with argument", "STAT 1\r\n", "-ERR STAT takes no arguments\r\n"},
		{"trailing space is no argument", "STAT \r\n", "+OK 3 68\r\n"},
		{"after DELE",
			"DELE 2\r\nSTAT\r\nLIST\r\nUIDL\r\n",
			"+OK Message 2 deleted\r\n+OK 2 46\r\n+OK 2 messages\r\n1 23\r\n3 23\r\n.\r\n" +
				"+OK Unique-ID listing follows\r\n1 uid-one\r\n3 uid-three\r\n.\r\n"},
		{"deleted message",
			"DELE 2\r\nLIST 2\r\nUIDL 2\r\nLIST 3\r\n",
			"+OK Message 2 deleted\r\n-ERR Message 2 already deleted\r\n-ERR Message 2 already deleted\r\n+OK 3 23\r\n"},
		{"all deleted",
			"DELE 1\r\nDELE 2\r\nDELE 3\r\nSTAT\r\nLIST\r\nUIDL\r\n",
			"+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n+OK Message 3 deleted\r\n+OK 0 0\r\n" +
				"+OK 0 messages\r\n.\r\n+OK Unique-ID listing follows\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, newFakeBackend())
			c := dialLogin(t, ts, "3")
			c.expect(tt.send, tt.want)
		})
	}
}

func TestRetrSendsTheMessageDotStuffedWithCRLF(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // the data part, terminator included
	}{
		{"plain", "Subject: a\r\n\r\nHello\r\n", "Subject: a\r\n\r\nHello\r\n.\r\n"},
		{"lines starting with a dot", "Subject: a\r\n\r\n.hidden\r\n..two\r\nx.y\r\n",
			"Subject: a\r\n\r\n..hidden\r\n...two\r\nx.y\r\n.\r\n"},
		{"lone dot line", "Subject: a\r\n\r\nbefore\r\n.\r\nafter\r\n",
			"Subject: a\r\n\r\nbefore\r\n..\r\nafter\r\n.\r\n"},
		{"lone dot last line", "Subject: a\r\n\r\n.\r\n", "Subject: a\r\n\r\n..\r\n.\r\n"},
		{"dot first octet", ".\r\n", "..\r\n.\r\n"},
		{"double dot line", "Subject: a\r\n\r\n..\r\n", "Subject: a\r\n\r\n...\r\n.\r\n"},
		{"bare LF", "Subject: a\n\nline 1\n.dot\nline 3\n", "Subject: a\r\n\r\nline 1\r\n..dot\r\nline 3\r\n.\r\n"},
		{"mixed line ends", "A: 1\r\nB: 2\n\r\nx\ny\r\n", "A: 1\r\nB: 2\r\n\r\nx\r\ny\r\n.\r\n"},
		{"no final line end", "Subject: a\r\n\r\nno newline", "Subject: a\r\n\r\nno newline\r\n.\r\n"},
		{"final dot without line end", "Subject: a\r\n\r\n.", "Subject: a\r\n\r\n..\r\n.\r\n"},
		{"bare CR kept inside a line", "Subject: a\r\n\r\nx\ry\r\n", "Subject: a\r\n\r\nx\ry\r\n.\r\n"},
		{"empty message", "", ".\r\n"},
		{"blank lines only", "\r\n\n\r\n", "\r\n\r\n\r\n.\r\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 2, 7, -1} { // -1: the reader is an io.WriterTo
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				fb := newFakeBackend().withBodies(tt.body)
				fb.readChunk = chunk
				ts := startServer(t, fb)
				c := dialLogin(t, ts, "1")
				c.expect("RETR 1\r\n", fmt.Sprintf("+OK %d octets\r\n", len(tt.body))+tt.want)
				c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
				ts.expectBackend(t, fakeState{Logins: alice, Retrieves: []retrieveCall{{0, -1}}, Retrieved: []int{0},
					Commits: [][]int{nil}, Closes: 1})
			})
		}
	}
}

func TestTop(t *testing.T) {
	const body = "Subject: t\r\nFrom: a@example.org\r\n\r\nl1\r\nl2\r\n.l3\r\nl4\r\nl5\r\nl6\r\n"
	const head = "+OK Top of message follows\r\nSubject: t\r\nFrom: a@example.org\r\n\r\n"
	tests := []struct {
		name      string
		body      string
		send      string
		want      string
		wantLines int // the lines argument Retrieve got; -2: not called
	}{
		{"0 lines", body, "TOP 1 0\r\n", head + ".\r\n", 0},
		{"1 line", body, "TOP 1 1\r\n", head + "l1\r\n.\r\n", 1},
		{"5 lines", body, "TOP 1 5\r\n", head + "l1\r\nl2\r\n..l3\r\nl4\r\nl5\r\n.\r\n", 5},
		{"more lines than the body", body, "TOP 1 100\r\n", head + "l1\r\nl2\r\n..l3\r\nl4\r\nl5\r\nl6\r\n.\r\n", 100},
		{"line count beyond 9 digits", body, "TOP 1 12345678901234\r\n",
			head + "l1\r\nl2\r\n..l3\r\nl4\r\nl5\r\nl6\r\n.\r\n", 1<<31 - 1},
		{"header only", "Subject: h\r\nFrom: x\r\n", "TOP 1 0\r\n",
			"+OK Top of message follows\r\nSubject: h\r\nFrom: x\r\n.\r\n", 0},
		{"header only without final line end", "Subject: h\r\nFrom: x", "TOP 1 3\r\n",
			"+OK Top of message follows\r\nSubject: h\r\nFrom: x\r\n.\r\n", 3},
		{"header and blank line only", "Subject: h\r\n\r\n", "TOP 1 2\r\n",
			"+OK Top of message follows\r\nSubject: h\r\n\r\n.\r\n", 2},
		{"body without final line end", "S: x\r\n\r\nl1\r\nl2", "TOP 1 5\r\n",
			"+OK Top of message follows\r\nS: x\r\n\r\nl1\r\nl2\r\n.\r\n", 5},
		{"bare LF", "S: x\n\nl1\nl2\n", "TOP 1 1\r\n", "+OK Top of message follows\r\nS: x\r\n\r\nl1\r\n.\r\n", 1},
		{"no header", "\r\nbody1\r\nbody2\r\n", "TOP 1 1\r\n", "+OK Top of message follows\r\n\r\nbody1\r\n.\r\n", 1},
		{"empty message", "", "TOP 1 1\r\n", "+OK Top of message follows\r\n.\r\n", 1},
		{"missing arguments", body, "TOP\r\n", "-ERR TOP needs a message number and a line count\r\n", -2},
		{"missing line count", body, "TOP 1\r\n", "-ERR TOP needs a message number and a line count\r\n", -2},
		{"empty line count", body, "TOP 1 \r\n", "-ERR Invalid line count\r\n", -2},
		{"negative line count", body, "TOP 1 -1\r\n", "-ERR Invalid line count\r\n", -2},
		{"non-numeric line count", body, "TOP 1 x\r\n", "-ERR Invalid line count\r\n", -2},
		{"three arguments", body, "TOP 1 2 3\r\n", "-ERR Invalid line count\r\n", -2},
		{"non-numeric message", body, "TOP x 1\r\n", "-ERR Invalid message number\r\n", -2},
		{"message 0", body, "TOP 0 1\r\n", "-ERR No such message\r\n", -2},
		{"message past the end", body, "TOP 2 1\r\n", "-ERR No such message\r\n", -2},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 5, -1} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				fb := newFakeBackend().withBodies(tt.body)
				fb.readChunk = chunk
				ts := startServer(t, fb)
				c := dialLogin(t, ts, "1")
				c.expect(tt.send, tt.want)
				c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
				want := fakeState{Logins: alice, Commits: [][]int{nil}, Closes: 1}
				if tt.wantLines != -2 {
					want.Retrieves = []retrieveCall{{0, tt.wantLines}}
				}
				ts.expectBackend(t, want)
			})
		}
	}
}

func TestUpstreamFailureMidRetrClosesWithoutTerminator(t *testing.T) {
	const body = "Subject: cut\r\n\r\nfirst\r\n.\r\nlast\r\n"
	tests := []struct {
		name string
		k    int
		want string // the data the client gets before the close
	}{
		{"before any data", 0, ""},
		{"inside the header", 5, "Subje"},
		{"after a CR", 13, "Subject: cut\r"},
		{"at a line end", 14, "Subject: cut\r\n"},
		{"inside the dot line", 24, "Subject: cut\r\n\r\nfirst\r\n.."},
		{"after the dot line", 26, "Subject: cut\r\n\r\nfirst\r\n..\r\n"},
		{"after the whole body", len(body), "Subject: cut\r\n\r\nfirst\r\n..\r\nlast\r\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, -1} { // -1: the reader is an io.WriterTo
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				fb := newFakeBackend().withBodies(body)
				fb.failAfter = map[int]int{0: tt.k}
				fb.readChunk = chunk
				ts := startServer(t, fb)
				c := dialLogin(t, ts, "1")
				c.write("RETR 1\r\nSTAT\r\n")
				got := c.readAll()
				want := fmt.Sprintf("+OK %d octets\r\n", len(body)) + tt.want
				if got != want {
					t.Errorf("got  %q\nwant %q", got, want)
				}
				if strings.HasSuffix(got, "\r\n.\r\n") {
					t.Errorf("a cut message ends with the terminator: %q", got)
				}
				ts.expectBackend(t, fakeState{Logins: alice, Retrieves: []retrieveCall{{0, -1}}, Closes: 1})
			})
		}
	}
}

func TestOverlongLines(t *testing.T) {
	tests := []struct {
		name string
		send string
		want string
	}{
		{"255 octets is accepted", "USER " + strings.Repeat("u", 248) + "\r\n", "+OK Send your password\r\n"},
		{"256 octets", "USER " + strings.Repeat("u", 249) + "\r\n", "-ERR Line too long\r\n"},
		{"1024 octets", "NOOP " + strings.Repeat("x", 1017) + "\r\n", "-ERR Line too long\r\n"},
		{"beyond the read buffer", "NOOP " + strings.Repeat("x", 5000) + "\r\n", "-ERR Line too long\r\n"},
		{"unknown command beyond the read buffer", strings.Repeat("x", 60000) + "\r\n", "-ERR Line too long\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, startServer(t, newFakeBackend()))
			c.expect(tt.send, tt.want)
			// The session goes on.
			c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
			c.expect("STAT\r\n", "+OK 3 68\r\n")
		})
	}
}

func TestHugeLineClosesTheConnection(t *testing.T) {
	ts := startServer(t, newFakeBackend())
	c := dial(t, ts)
	// More than the server is willing to discard: it hangs up without an
	// answer. The client may see a reset as it is still writing.
	go c.nc.Write([]byte(strings.Repeat("x", 200<<10) + "\r\n"))
	b := make([]byte, 100)
	n, err := c.br.Read(b)
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("got %q, %v; want the connection closed", b[:n], err)
	}
}

func TestTooManyBadCommandsCloseTheConnection(t *testing.T) {
	c := dial(t, startServer(t, newFakeBackend()))
	// Mistakes that are not protocol errors are not counted.
	c.expect("USER alice\r\nPASS wrong\r\nAUTH FOO\r\nAUTH PLAIN\r\n*\r\n",
		"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n-ERR Unsupported authentication mechanism\r\n"+
			"+ \r\n-ERR Authentication cancelled\r\n")
	bad := []struct{ send, want string }{
		{"XYZZY\r\n", "-ERR Unknown command\r\n"},
		{"STAT\r\n", "-ERR Command not valid before login\r\n"},
		{"PASS x\r\n", "-ERR Send USER first\r\n"},
		{"CAPA x\r\n", "-ERR CAPA takes no arguments\r\n"},
		{"APOP a b\r\n", "-ERR APOP is not supported, use USER/PASS or AUTH PLAIN\r\n"},
		{"AUTH PLAIN ***\r\n", "-ERR Invalid base64 data\r\n"},
		{strings.Repeat("y", 300) + "\r\n", "-ERR Line too long\r\n"},
		{strings.Repeat("z", 3000) + "\r\n", "-ERR Line too long\r\n"},
		{"USER\r\n", "-ERR USER needs a user name\r\n"},
	}
	for _, b := range bad {
		c.expect(b.send, b.want)
	}
	c.expectClosed("NOOP\r\nQUIT\r\n",
		"-ERR Command not valid before login\r\n-ERR Too many bad commands, closing connection\r\n")
}

// pipelineCommands is a deterministic mix of commands, some multi-line.
func pipelineCommands(n int) []string {
	cycle := []string{"STAT", "LIST 1", "UIDL 2", "NOOP", "RETR 1", "LIST", "UIDL", "TOP 2 1",
		"LIST 9", "RETR 3", "DELE 2", "LIST 2", "STAT", "RSET", "XYZZY", "TOP 3 0"}
	cmds := make([]string, n)
	for i := range cmds {
		cmds[i] = cycle[i%len(cycle)]
	}
	return cmds
}

// readResponse reads one response to cmd.
func (c *client) readResponse(cmd string) string {
	c.t.Helper()
	first := c.readLines(1)
	multi := cmd == "LIST" || cmd == "UIDL" || strings.HasPrefix(cmd, "RETR ") || strings.HasPrefix(cmd, "TOP ")
	if !multi || !strings.HasPrefix(first, "+OK") {
		return first
	}
	var sb strings.Builder
	sb.WriteString(first)
	for range 1000 {
		line := c.readLines(1)
		sb.WriteString(line)
		if line == ".\r\n" || line == "" {
			break
		}
	}
	return sb.String()
}

func TestPipelinedCommandsAreAnsweredInOrder(t *testing.T) {
	// XYZZY is 1 command in 16: fewer than 10 bad commands in all, so the
	// connection stays open.
	cmds := pipelineCommands(100)

	// One at a time.
	fb1 := newFakeBackend()
	ts1 := startServer(t, fb1)
	c1 := dialLogin(t, ts1, "3")
	var want strings.Builder
	for _, cmd := range cmds {
		c1.write(cmd + "\r\n")
		want.WriteString(c1.readResponse(cmd))
	}
	c1.expectClosed("QUIT\r\n", "+OK Logging out\r\n")

	// All in one write.
	fb2 := newFakeBackend()
	ts2 := startServer(t, fb2)
	c2 := dialLogin(t, ts2, "3")
	c2.expectClosed(strings.Join(cmds, "\r\n")+"\r\nQUIT\r\n", want.String()+"+OK Logging out\r\n")

	if a, b := fb1.noopCount(), fb2.noopCount(); a != b || a == 0 {
		t.Errorf("Noop calls: %d one at a time, %d pipelined", a, b)
	}
	if a, b := fb1.retrievedCalls(), fb2.retrievedCalls(); !slices.Equal(a, b) || len(a) == 0 {
		t.Errorf("Retrieved calls: %v one at a time, %v pipelined", a, b)
	}
	if a, b := fb1.commitCalls(), fb2.commitCalls(); len(a) != 1 || len(b) != 1 || !slices.Equal(a[0], b[0]) {
		t.Errorf("Commit calls: %v one at a time, %v pipelined", a, b)
	}
}

func TestPipelinedLoginAndAuthContinuation(t *testing.T) {
	ts := startServer(t, newFakeBackend())
	c := dialRaw(t, ts)
	c.expectClosed("AUTH PLAIN\r\n"+plain("", "alice", "secret")+"\r\nSTAT\r\nDELE 1\r\nQUIT\r\n",
		greeting+"+ \r\n+OK Logged in, 3 messages\r\n+OK 3 68\r\n+OK Message 1 deleted\r\n+OK Logging out, 1 messages deleted\r\n")
}

// countingListener counts the server's writes on the connections it
// accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: nc, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestPipelinedAnswersAreSentTogether(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	ts := startServerOn(t, ln, newFakeBackend())
	c := dialLogin(t, ts, "3")
	before := ln.writes.Load()
	// 600 octets: one read for the server, well within its line buffer.
	c.expect(strings.Repeat("STAT\r\nNOOP\r\n", 50), strings.Repeat("+OK 3 68\r\n+OK\r\n", 50))
	// The answers go out when the server has read all queued commands,
	// not one write per answer. (A few writes are allowed, in case TCP
	// delivers the commands in more than one piece.)
	if n := ln.writes.Load() - before; n > 5 {
		t.Errorf("100 pipelined answers took %d writes", n)
	}
	// One command at a time: one write each.
	before = ln.writes.Load()
	for range 3 {
		c.expect("STAT\r\n", "+OK 3 68\r\n")
	}
	if n := ln.writes.Load() - before; n != 3 {
		t.Errorf("3 commands one at a time took %d writes, want 3", n)
	}
}
