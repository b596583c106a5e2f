package pop3front

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// unstuff checks that out is a well-formed multi-line response body and
// returns the data it carries.
func unstuff(t *testing.T, out []byte) []byte {
	t.Helper()
	if i := bytes.IndexByte(out, '\n'); i >= 0 {
		for j := i; j < len(out); j++ {
			if out[j] == '\n' && (j == 0 || out[j-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", j, out)
			}
		}
	}
	if !bytes.HasSuffix(out, []byte(".\r\n")) {
		t.Fatalf("output %q does not end with the terminator", out)
	}
	data := out[:len(out)-3]
	if len(data) > 0 && !bytes.HasSuffix(data, crlf) {
		t.Fatalf("terminator not on a line of its own: %q", out)
	}
	var res []byte
	for len(data) > 0 {
		i := bytes.Index(data, crlf)
		line := data[:i]
		data = data[i+2:]
		if len(line) > 0 && line[0] == '.' {
			if len(line) < 2 || line[1] != '.' {
				t.Fatalf("line %q before the end starts with an unstuffed dot in %q", line, out)
			}
			line = line[1:]
		}
		res = append(res, line...)
		res = append(res, crlf...)
	}
	return res
}

func FuzzDotWriter(f *testing.F) {
	for _, tt := range dotWriterTests {
		f.Add([]byte(tt.in), uint16(1))
	}
	f.Add([]byte("Subject: x\r\n\r\n.\r\n..\r\n.x\n\r\r\n."), uint16(7))
	f.Add([]byte("\r\r\r\n\n\n..."), uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		whole := dotStuff(t, in)
		if got, want := unstuff(t, whole), testkit.WireForm(in); !bytes.Equal(got, want) {
			t.Fatalf("round trip of %q: got %q, want %q (output %q)", in, got, want, whole)
		}
		k := int(split) % (len(in) + 1)
		if two := dotStuff(t, in[:k], in[k:]); !bytes.Equal(two, whole) {
			t.Fatalf("split at %d: %q, whole: %q", k, two, whole)
		}
		size := int(split)%7 + 1
		var pieces [][]byte
		for p := in; len(p) > 0; p = p[min(size, len(p)):] {
			pieces = append(pieces, p[:min(size, len(p))])
		}
		if chunked := dotStuff(t, pieces...); !bytes.Equal(chunked, whole) {
			t.Fatalf("in pieces of %d: %q, whole: %q", size, chunked, whole)
		}
	})
}

// memConn is a net.Conn whose client sends a fixed input, in pieces of at
// most chunk bytes, and then closes its side.
type memConn struct {
	in    []byte
	chunk int

	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

func FuzzCommandLine(f *testing.F) {
	login := "USER alice\r\nPASS secret\r\n"
	seeds := []string{
		"",
		"QUIT\r\n",
		"CAPA\r\nAUTH\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL\r\nLIST 1\r\nUIDL 2\r\nQUIT\r\n",
		login + "RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 4\r\nTOP 1 0\r\nTOP 4 1\r\n",
		login + "DELE 1\r\nDELE 1\r\nRSET\r\nDELE 2\r\nNOOP\r\nQUIT\r\n",
		login + "TOP 1 99999999999\r\nTOP 2\r\nLIST 1 2\r\nLIST 0\r\nXYZZY\r\n",
		"AUTH PLAIN " + plain("", "alice", "secret") + "\r\nSTAT\r\nQUIT\r\n",
		"AUTH PLAIN\r\n" + plain("alice", "alice", "secret") + "\r\nRETR 2\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH PLAIN !!\r\n",
		"user alice\npass secret\nretr 1\nquit\n",
		"USER alice\r\nPASS a\r\nUSER alice\r\nPASS b\r\nUSER alice\r\nPASS c\r\nSTAT\r\n",
		strings.Repeat("X\r\n", 12),
		"NOOP " + strings.Repeat("x", 300) + "\r\nQUIT\r\n",
		"AUTH PLAIN " + strings.Repeat("A", 2000) + "\r\n",
		login + "RETR 1\r\nQUI",
		"\x00\xff\r\r\n\n",
		"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nLAST\r\nRETR 2\r\nLAST\r\nRSET\r\nLAST\r\n",
		"AUTH LOGIN YWxpY2U=\r\n*\r\nAUTH LOGIN\r\n=\r\nUSER a\x00b\r\nPASS \x7f\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i*37))
	}
	// With the high bit of chunk set, the server offers STLS and refuses
	// plaintext authentication.
	f.Add([]byte("CAPA\r\nUSER alice\r\nAUTH PLAIN\r\nAUTH\r\nSTLS\r\n\x16\x03\x01\x00\x05hello"), uint8(0x80))
	f.Add([]byte("STLS\r\nCAPA\r\n"), uint8(0x81))
	f.Add([]byte("STLS x\r\n"+login+"STLS\r\nQUIT\r\n"), uint8(0x05))
	tlsConfig, _ := testkit.SelfSignedTLS(f)
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		fb := newFakeBackend().withBodies(
			"Subject: a\r\n\r\n.dot\r\nbody\r\n",
			"Subject: b\n\nbare LF\n..\n.",
			"",
			"Subject: d\r\n\r\ngone\r\n",
			"Subject: e\r\n\r\nno such message\r\n",
		)
		fb.expunge(3)
		fb.noMessage = map[int]bool{4: true}
		fb.readChunk = int(chunk%5) + 1
		srv := &Server{Backend: fb, Logger: discardLogger()}
		secure := chunk&0x80 != 0
		if secure {
			srv.TLSConfig = tlsConfig
			srv.PlaintextAllowed = func(ConnInfo) bool { return false }
		}
		mc := &memConn{in: bytes.Clone(in), chunk: int(chunk)%64 + 1}
		c := newConn(srv, mc)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.serve()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("serve did not return for input %q", in)
		}

		out := mc.out.Bytes()
		if secure {
			// After STLS's +OK come TLS records, not POP3 lines.
			if i := bytes.Index(out, []byte("+OK Begin TLS negotiation now\r\n")); i >= 0 {
				out = out[:i+len("+OK Begin TLS negotiation now\r\n")]
			}
			if len(fb.loginCalls()) != 0 {
				t.Errorf("Login called on a connection that refuses plaintext authentication")
			}
		}
		if !bytes.HasPrefix(out, []byte(greeting)) {
			t.Fatalf("output does not start with the greeting: %q", out)
		}
		if !bytes.HasSuffix(out, crlf) {
			t.Fatalf("output does not end with CRLF: %q", out)
		}
		for j := range out {
			if out[j] == '\n' && (j == 0 || out[j-1] != '\r') {
				t.Fatalf("bare LF at %d in output %q", j, out)
			}
		}
		if !mc.closed {
			t.Error("connection not closed")
		}
		loggedIn := c.sess != nil
		if want := map[bool]int{false: 0, true: 1}[loggedIn]; fb.closeCount() != want {
			t.Errorf("Close called %d times, logged in: %v", fb.closeCount(), loggedIn)
		}
		if n := len(fb.commitCalls()); n > 1 || n == 1 && !bytes.Contains(bytes.ToUpper(in), []byte("QUIT")) {
			t.Errorf("Commit called %d times without QUIT", n)
		}
		if got := fb.retrievedCalls(); len(got) > 0 && !bytes.Contains(bytes.ToUpper(in), []byte("RETR")) {
			t.Errorf("Retrieved(%v) without RETR", got)
		}
		for _, i := range fb.retrievedCalls() {
			if i >= 3 {
				t.Errorf("Retrieved(%d) for a message that cannot be sent", i)
			}
		}
		if n := fb.openReaders(); n != 0 {
			t.Errorf("%d message readers not closed", n)
		}
	})
}
