package pop3front

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// startTLS runs the client side of a TLS handshake on c's connection.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.nc = tc
	c.br = bufio.NewReader(tc)
}

// stls upgrades c's connection with STLS and checks that CAPA now offers
// the password mechanisms and no longer STLS.
func (c *client) stls(cfg *tls.Config) {
	c.t.Helper()
	c.expect("STLS\r\n", "+OK Begin TLS negotiation now\r\n")
	c.startTLS(cfg)
	c.expect("CAPA\r\n", capaCommon+capaAuth+capaImpl)
}

const (
	capaCommon    = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
	capaAuth      = "USER\r\nSASL PLAIN LOGIN\r\n"
	capaImpl      = "IMPLEMENTATION popbridge\r\n.\r\n"
	refusedAnswer = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use STLS or POP3S\r\n"
)

func TestStlsUpgradesAndServerForgetsEarlierState(t *testing.T) {
	srvCfg, cliCfg := testkit.SelfSignedTLS(t)
	fb := newFakeBackend()
	ts := startServer(t, fb, func(s *Server) { s.TLSConfig = srvCfg })
	c := dial(t, ts)
	c.expect("CAPA\r\n", capaCommon+capaAuth+"STLS\r\n"+capaImpl)
	// A USER name given before STLS is forgotten (RFC 2595 section 4).
	c.expect("USER alice\r\n", "+OK Send your password\r\n")
	c.stls(cliCfg)
	c.expect("PASS secret\r\n", "-ERR Send USER first\r\n")
	c.expect("STLS\r\n", "-ERR TLS is already active\r\n")
	c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
	c.expect("RETR 2\r\n", "+OK 22 octets\r\nSubject: two\r\n\r\n..dot\r\n.\r\n")
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	if calls := fb.loginCalls(); len(calls) != 1 || !calls[0].info.TLS {
		t.Errorf("Login calls = %+v, want one with TLS", calls)
	}
}

func TestStlsRules(t *testing.T) {
	srvCfg, _ := testkit.SelfSignedTLS(t)
	tests := []struct {
		name    string
		tls     *tls.Config
		login   bool
		send    string
		want    string
		closed  bool
		noLogin bool
	}{
		{"not configured: unknown command", nil, false, "STLS\r\n", "-ERR Unknown command\r\n", false, false},
		{"not configured: not in CAPA", nil, false, "CAPA\r\n", capaCommon + capaAuth + capaImpl, false, false},
		{"arguments", srvCfg, false, "STLS now\r\n", "-ERR STLS takes no arguments\r\n", false, false},
		{"after login", srvCfg, true, "STLS\r\n", "-ERR Command not valid after login\r\n", false, false},
		{"not in CAPA after login", srvCfg, true, "CAPA\r\n", capaCommon + capaImpl, false, false},
		// Commands pipelined behind STLS were sent in clear: they must
		// not run as if they had come under TLS.
		{"pipelined command after STLS", srvCfg, false, "STLS\r\nUSER alice\r\nPASS secret\r\n",
			"-ERR STLS must be the last command before the TLS handshake\r\n", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := newFakeBackend()
			ts := startServer(t, fb, func(s *Server) { s.TLSConfig = tt.tls })
			var c *client
			if tt.login {
				c = dialLogin(t, ts, "3")
			} else {
				c = dial(t, ts)
			}
			if tt.closed {
				c.expectClosed(tt.send, tt.want)
			} else {
				c.expect(tt.send, tt.want)
				c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
			}
			if n := len(fb.loginCalls()); tt.noLogin && n != 0 {
				t.Errorf("Login called %d times", n)
			}
		})
	}
}

func TestStlsHandshakeFailureClosesTheConnection(t *testing.T) {
	srvCfg, _ := testkit.SelfSignedTLS(t)
	ts := startServer(t, newFakeBackend(), func(s *Server) { s.TLSConfig = srvCfg })
	c := dial(t, ts)
	c.expect("STLS\r\n", "+OK Begin TLS negotiation now\r\n")
	// Not a TLS ClientHello: the handshake fails and the server hangs up
	// (after its TLS alert) instead of reading commands in clear.
	c.write("USER alice\r\nPASS secret\r\n")
	// The server may reset the connection (it leaves bytes unread).
	got, err := io.ReadAll(c.br)
	if strings.Contains(string(got), "+OK") {
		t.Errorf("after a failed handshake the server answered %q", got)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the server did not close the connection")
	}
}

func TestImplicitTLSListener(t *testing.T) {
	srvCfg, cliCfg := testkit.SelfSignedTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := newFakeBackend()
	var refused int
	ts := startServerOn(t, tls.NewListener(ln, srvCfg), fb, func(s *Server) {
		// STLS configured too: it must not be offered on a TLS conn.
		s.TLSConfig = srvCfg
		s.PlaintextAllowed = func(ConnInfo) bool { refused++; return false }
	})
	c := dialRaw(t, ts)
	c.startTLS(cliCfg)
	c.expect("", greeting)
	c.expect("CAPA\r\n", capaCommon+capaAuth+capaImpl)
	c.expect("AUTH PLAIN "+plain("", "alice", "secret")+"\r\n", "+OK Logged in, 3 messages\r\n")
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	calls := fb.loginCalls()
	if len(calls) != 1 || !calls[0].info.TLS || calls[0].info.RemoteAddr.String() != c.nc.LocalAddr().String() {
		t.Errorf("Login calls = %+v, want one with TLS from %s", calls, c.nc.LocalAddr())
	}
	if refused != 0 {
		t.Errorf("PlaintextAllowed was asked %d times on a TLS connection", refused)
	}
}

func TestHandshakeTimeoutClosesSilentTLSClient(t *testing.T) {
	srvCfg, _ := testkit.SelfSignedTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerOn(t, tls.NewListener(ln, srvCfg), newFakeBackend(), func(s *Server) {
		s.HandshakeTimeout = 100 * time.Millisecond
	})
	// The server's handshake deadline starts at accept, which may come
	// before dialRaw returns: measure from before the dial.
	start := time.Now()
	c := dialRaw(t, ts)
	if got := c.readAll(); got != "" {
		t.Errorf("silent client got %q", got)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("closed after %v, before the handshake timeout", d)
	}
	// A connection that is stuck in its handshake does not hold up others.
	c2 := dialRaw(t, ts)
	defer c2.nc.Close()
}

func TestPlaintextAuthRefusedOnUntrustedConnection(t *testing.T) {
	srvCfg, cliCfg := testkit.SelfSignedTLS(t)
	fb := newFakeBackend()
	rec := &recorder{}
	ts := startServer(t, fb, func(s *Server) {
		s.TLSConfig = srvCfg
		s.PlaintextAllowed = func(info ConnInfo) bool { return info.TLS } // trust nobody
		s.Observer = rec
	})
	c := dial(t, ts)
	c.expect("CAPA\r\n", capaCommon+"STLS\r\n"+capaImpl)
	c.expect("AUTH\r\n", "+OK Supported mechanisms follow\r\n.\r\n")
	c.expect("USER alice\r\n", refusedAnswer)
	c.expect("PASS secret\r\n", "-ERR Send USER first\r\n")
	c.expect("AUTH PLAIN "+plain("", "alice", "secret")+"\r\n", refusedAnswer)
	// Refused before the continuation: the client never sends its
	// credentials in clear.
	c.expect("AUTH PLAIN\r\n", refusedAnswer)
	c.expect("AUTH CRAM-MD5\r\n", "-ERR Unsupported authentication mechanism\r\n")
	c.stls(cliCfg)
	c.expect("USER alice\r\nPASS wrong\r\n", "+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n")
	c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	if n := len(fb.loginCalls()); n != 2 {
		t.Errorf("Login called %d times, want 2 (only under TLS)", n)
	}
	ts.waitSessions(t)
	events, _ := rec.get()
	var logins []string
	for _, e := range events {
		if strings.HasPrefix(e, "login ") {
			logins = append(logins, e)
		}
	}
	want := []string{"login refused_plaintext", "login refused_plaintext", "login refused_plaintext", "login auth_failed", "login ok"}
	if !slices.Equal(logins, want) {
		t.Errorf("logins observed = %q, want %q", logins, want)
	}
}

func TestRepeatedPlaintextAttemptsCloseTheConnection(t *testing.T) {
	ts := startServer(t, newFakeBackend(), func(s *Server) {
		s.PlaintextAllowed = func(ConnInfo) bool { return false }
	})
	c := dial(t, ts)
	for range maxBadCommands - 1 {
		c.expect("USER alice\r\n", refusedAnswer)
	}
	c.expectClosed("USER alice\r\n", refusedAnswer+"-ERR Too many bad commands, closing connection\r\n")
}

func TestPlaintextAllowedSeesTheClient(t *testing.T) {
	fb := newFakeBackend()
	var got ConnInfo
	ts := startServer(t, fb, func(s *Server) {
		s.PlaintextAllowed = func(info ConnInfo) bool { got = info; return true }
	})
	c := dial(t, ts)
	c.expect("USER alice\r\nPASS secret\r\n", "+OK Send your password\r\n+OK Logged in, 3 messages\r\n")
	if got.RemoteAddr.String() != c.nc.LocalAddr().String() || got.LocalAddr.String() != ts.addr || got.TLS {
		t.Errorf("PlaintextAllowed got %+v, want remote %s local %s without TLS", got, c.nc.LocalAddr(), ts.addr)
	}
}

func TestMaxConnectionsPerIP(t *testing.T) {
	ts := startServer(t, newFakeBackend(), func(s *Server) { s.MaxConnectionsPerIP = 2 })
	const tooMany = "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
	c1 := dial(t, ts)
	c2 := dialLogin(t, ts, "3")
	c3 := dialRaw(t, ts)
	if got := c3.readAll(); got != tooMany {
		t.Errorf("third connection from 127.0.0.1 got %q", got)
	}
	// Another address is counted on its own.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: clientTimeout}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	other := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	nc.SetDeadline(time.Now().Add(clientTimeout))
	other.expect("", greeting)
	other.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	c2.expect("STAT\r\n", "+OK 3 68\r\n")
	c1.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.expectSlotFreed(t, tooMany)
}

func TestProxyHeaderWhereNoneIsAcceptedClosesTheConnection(t *testing.T) {
	ts := startServer(t, newFakeBackend())
	c := dial(t, ts)
	c.expectClosed("PROXY TCP4 192.0.2.1 127.0.0.1 5555 110\r\nUSER alice\r\n",
		"-ERR PROXY protocol header not accepted from this address\r\n")
	// A v2 header's signature: two empty lines, a NUL, then QUIT.
	c = dial(t, ts)
	c.expectClosed("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c",
		"-ERR Unknown command\r\n-ERR Unknown command\r\n-ERR Unknown command\r\n+OK Logging out\r\n")
}
