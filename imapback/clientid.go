package imapback

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Every popbridge login reaches the upstream from popbridge's own address,
// so an upstream that slows down or blocks an address after failed logins
// (Dovecot's auth penalty) would punish all users for one guesser, and its
// logs would not show who logged in from where. With
// Options.ForwardClientAddr, the session sends the POP3 client's address
// before logging in, with IMAP ID (RFC 2971) and the fields Dovecot's own
// proxy uses: x-originating-ip and x-originating-port. Dovecot takes them
// only from addresses in its login_trusted_networks; other servers ignore
// unknown ID fields.
//
// go-imap's client cannot send ID fields of its own, so this exchange
// runs on the raw connection before the client takes over, which then
// reads the greeting from a replay.

type clientAddrKey struct{}

// WithClientAddr returns a context carrying the POP3 client's address, for
// Login to forward upstream when Options.ForwardClientAddr is set.
func WithClientAddr(ctx context.Context, addr net.Addr) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, addr)
}

func clientAddrFrom(ctx context.Context) (netip.AddrPort, bool) {
	a, _ := ctx.Value(clientAddrKey{}).(net.Addr)
	if a == nil {
		return netip.AddrPort{}, false
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
}

const (
	maxPreLoginLine  = 8 << 10
	maxPreLoginLines = 64
)

var errPreLogin = errors.New("upstream pre-login exchange failed")

// connectWithID is connect's path when the client address is forwarded:
// TLS or STARTTLS by hand, then ID, then go-imap's client on the result.
// A token login over STARTTLS takes it too, with no client address (and
// so no ID): go-imap's own STARTTLS would put TLS under the plaintext
// layer that turns XOAUTH2's empty response into an empty line.
func (s *Session) connectWithID(ctx context.Context, nc net.Conn, tlsConfig *tls.Config, copts *imapclient.Options, client netip.AddrPort) error {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	conn := nc
	if s.b.opts.TLS == TLSImplicit {
		tc := tls.Client(nc, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, maxPreLoginLine)
	greeting, err := readLine(br)
	if err != nil {
		nc.Close()
		return fmt.Errorf("%w: greeting: %v", errPreLogin, err)
	}
	if s.b.opts.TLS == TLSStartTLS {
		if !bytes.HasPrefix(greeting, []byte("* OK")) {
			nc.Close()
			return fmt.Errorf("%w: greeting %q before STARTTLS", errPreLogin, clip(greeting))
		}
		if _, err := command(conn, br, "P0 STARTTLS"); err != nil {
			nc.Close()
			return err
		}
		tc := tls.Client(nc, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		conn = tc
		br = bufio.NewReaderSize(conn, maxPreLoginLine)
		// go-imap must ask for the capabilities again: those of the
		// plain greeting are void after STARTTLS (RFC 9051 6.2.1).
		greeting = []byte("* OK popbridge: greeting received before STARTTLS\r\n")
	}
	if bytes.HasPrefix(greeting, []byte("* OK")) && client.IsValid() {
		// Only to a server that announces ID: some hang up on an
		// unknown command.
		hasID := s.b.opts.TLS != TLSStartTLS && capsHaveID(greeting)
		if !hasID {
			untagged, err := command(conn, br, "P2 CAPABILITY")
			if err != nil {
				nc.Close()
				return err
			}
			for _, l := range untagged {
				hasID = hasID || capsHaveID(l)
			}
		}
		if hasID {
			id := fmt.Sprintf(`P1 ID ("x-originating-ip" %s "x-originating-port" %s)`,
				strconv.Quote(client.Addr().String()), strconv.Quote(strconv.Itoa(int(client.Port()))))
			// A NO or BAD is fine: the login goes on.
			if _, err := command(conn, br, id); err != nil && !errors.Is(err, errRefused) {
				nc.Close()
				return err
			}
		}
	}
	if br.Buffered() > 0 {
		nc.Close()
		b, _ := br.Peek(br.Buffered())
		return fmt.Errorf("%w: upstream sent unexpected data %q", errPreLogin, clip(b))
	}
	nc.SetDeadline(time.Time{})
	// The greeting (or PREAUTH, or BYE) goes to go-imap as it came.
	s.c = imapclient.New(s.limitResponses(s.saslLayer(&replayConn{Conn: conn, pending: greeting})), copts)
	return nil
}

var errRefused = errors.New("command refused")

// command sends one tagged command line and reads up to its tagged
// answer; it returns the untagged lines before it.
func command(w io.Writer, br *bufio.Reader, line string) (untagged [][]byte, err error) {
	tag, _, _ := strings.Cut(line, " ")
	if _, err := io.WriteString(w, line+"\r\n"); err != nil {
		return nil, fmt.Errorf("%w: %v", errPreLogin, err)
	}
	for range maxPreLoginLines {
		resp, err := readLine(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errPreLogin, err)
		}
		if rest, ok := bytes.CutPrefix(resp, []byte(tag+" ")); ok {
			if bytes.HasPrefix(bytes.ToUpper(rest), []byte("OK")) {
				return untagged, nil
			}
			return nil, fmt.Errorf("%w: %s: %q", errRefused, tag, clip(rest))
		}
		if !bytes.HasPrefix(resp, []byte("* ")) {
			return nil, fmt.Errorf("%w: unexpected %q", errPreLogin, clip(resp))
		}
		untagged = append(untagged, resp)
	}
	return nil, fmt.Errorf("%w: too many lines", errPreLogin)
}

// capsHaveID reports whether a greeting's CAPABILITY response code or an
// untagged CAPABILITY response lists ID.
func capsHaveID(line []byte) bool {
	up := strings.ToUpper(string(bytes.TrimRight(line, "\r\n")))
	_, caps, ok := strings.Cut(up, "CAPABILITY ")
	if !ok {
		return false
	}
	caps, _, _ = strings.Cut(caps, "]")
	return slices.Contains(strings.Fields(caps), "ID")
}

// readLine reads one line with its CRLF, bounded by the reader's size.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.Clone(line), nil
}

func clip(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > 100 {
		b = b[:100]
	}
	return b
}

// replayConn serves pending to the first reads, then the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			// An empty tail would still hold the greeting for the
			// session's life.
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}
