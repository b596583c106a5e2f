// conn.go holds one client connection: its state, the command loop that
// reads a line, dispatches it to its handler and turns the handler's error
// into the answer, and the low-level reads and writes. The connection's
// own goroutine runs everything here; other goroutines only close raw and
// cancel ctx. The handlers live in files named after their POP3 state.

package pop3front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Line limits. RFC 2449 section 4 allows command lines of 255 octets,
// CRLF included. SASL lines (AUTH with an initial response, and the
// client's continuation lines) may be longer, up to maxAuthLine.
const (
	maxLine     = 255
	maxAuthLine = 1024
	// maxDiscard bounds how much of an overlong line is read and thrown
	// away before the connection is closed instead.
	maxDiscard = 64 << 10

	// After this many protocol errors (unknown commands, bad syntax,
	// commands in the wrong state, overlong lines) the connection is
	// closed: a well-behaved client never gets there.
	maxBadCommands = 10
	// After this many failed logins the connection is closed.
	maxAuthFailures = 3

	writeBufferSize = 16 << 10
)

type state int

const (
	stateAuthorization state = iota
	stateTransaction
	stateUpdate
)

var errLineTooLong = errors.New("line too long")

// conn is one client connection: a state machine driven by serve.
type conn struct {
	srv    *Server
	raw    net.Conn // as accepted; other goroutines close this one
	nc     net.Conn // raw, or the TLS conn over it after STLS
	br     *bufio.Reader
	bw     *bufio.Writer
	log    *slog.Logger
	ctx    context.Context // cancelled when the server closes the connection
	cancel context.CancelFunc
	// listener is the address of the listener that accepted the
	// connection; opened says the Observer was told about it.
	listener string
	opened   bool
	// sent counts what goes to the client, under bw; reported is how
	// much of it the Observer was told about.
	sent     countingWriter
	cw       clientWriter // where a backend's io.WriterTo writes a message
	reported int64

	state    state
	user     string // from USER, waiting for PASS
	bad      int    // protocol errors, up to maxBadCommands
	authFail int    // failed logins, up to maxAuthFailures

	// Set before serve: over MaxConnections, answer and close.
	overLimit bool
	ip        netip.Addr // counted against MaxConnectionsPerIP
	remote    net.Addr   // the client, behind a PROXY header if any
	stls      *tls.Config

	authUser string // the logged-in user, for the log
	maildrop        // set by the login
	tally

	scratch [64]byte // where single-line answers are built
}

// maildrop is the TRANSACTION state: the session's snapshot and the
// messages marked deleted, which only QUIT removes.
type maildrop struct {
	sess      Session
	msgs      []MessageInfo
	deleted   []bool
	nDeleted  int
	totalSize int64
	delSize   int64
}

// tally counts what a connection did, for the end-of-session log line and
// the Observer's SessionStats.
type tally struct {
	started            time.Time
	nRetr, nTop, nDele int
	nRemoved           int // messages removed at QUIT, which ends the session
	octets             int64
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:    s,
		raw:    nc,
		stls:   s.TLSConfig,
		ctx:    ctx,
		cancel: cancel,
		tally:  tally{started: time.Now()},
		// RemoteAddr may block (it reads a PROXY header): the address
		// is added in serve.
		log: s.logger(),
	}
	c.setConn(nc)
	return c
}

// setConn makes nc the client connection, at the start and after STLS.
func (c *conn) setConn(nc net.Conn) {
	c.nc = nc
	c.br = bufio.NewReaderSize(nc, maxAuthLine)
	c.sent.w = deadlineWriter{nc, orDefault(c.srv.WriteTimeout, DefaultWriteTimeout)}
	c.bw = bufio.NewWriterSize(&c.sent, writeBufferSize)
}

func (c *conn) serve() {
	defer c.close()
	if !c.start() {
		return
	}
	c.observeOpened()
	c.ok(c.implementation() + " ready")
	for {
		if !c.lineQueued() {
			// Flush only when the client has no further command queued,
			// so that pipelined commands get their answers in one write.
			if err := c.bw.Flush(); err != nil {
				return
			}
		}
		line, err := c.readLine(maxAuthLine)
		var end bool
		switch {
		case err == nil:
			end = c.command(line)
		case err == errLineTooLong:
			// Not a command: the observer does not see it.
			_, end = c.reply("", badCommand("Line too long"))
		default:
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Debug("read failed", "err", err)
			}
			return
		}
		if end {
			c.bw.Flush()
			return
		}
	}
}

// command runs one command line: the handler's error becomes the reply,
// and the outcome goes to the observer. It reports whether the connection
// ends.
func (c *conn) command(line []byte) (end bool) {
	start := time.Now()
	kw, args, _ := bytes.Cut(line, []byte{' '})
	name := strings.ToUpper(string(kw))
	var err error
	if name != "AUTH" && len(line)+2 > maxLine {
		err = badCommand("Line too long")
	} else {
		err = c.dispatch(name, args)
	}
	result, end := c.reply(name, err)
	c.observeCommand(name, args, start, result, err)
	return end
}

// dispatch runs the handler of command name.
func (c *conn) dispatch(name string, args []byte) error {
	switch name {
	case "CAPA":
		return c.handleCapa(args)
	case "USER":
		return c.handleUser(args)
	case "PASS":
		return c.handlePass(args)
	case "AUTH":
		return c.handleAuth(args)
	case "STLS":
		return c.handleStls(args)
	case "APOP":
		return badCommand("APOP is not supported, use USER/PASS or AUTH PLAIN")
	case "STAT":
		return c.handleStat(args)
	case "LIST":
		return c.handleList(args, false)
	case "UIDL":
		return c.handleList(args, true)
	case "RETR":
		return c.handleRetr(args)
	case "TOP":
		return c.handleTop(args)
	case "DELE":
		return c.handleDele(args)
	case "RSET":
		return c.handleRset(args)
	case "NOOP":
		return c.handleNoop(args)
	case "QUIT":
		return c.handleQuit(args)
	case "PROXY":
		// A PROXY protocol v1 header where none is accepted: someone
		// trying to pass as another client address, or a load balancer
		// sending headers to a listener not configured for them. (A v2
		// header's signature ends in "QUIT", which closes as well.)
		c.log.Warn("PROXY protocol header not accepted from this address, closing connection")
		return closeAfter(&Error{Text: "PROXY protocol header not accepted from this address"})
	}
	return badCommand("Unknown command")
}

// need checks the session state for a command.
func (c *conn) need(s state) error {
	if c.state == s {
		return nil
	}
	if s == stateAuthorization {
		return badCommand("Command not valid after login")
	}
	return badCommand("Command not valid before login")
}

// lineQueued reports whether a whole command line is already buffered. A
// partial line does not count: its sender may be waiting for our answers
// before it sends the rest.
func (c *conn) lineQueued() bool {
	n := c.br.Buffered()
	if n == 0 {
		return false
	}
	buf, _ := c.br.Peek(n)
	return bytes.IndexByte(buf, '\n') >= 0
}

func (c *conn) close() {
	// The client first: it need not wait for the upstream logout.
	c.nc.Close()
	if c.sess != nil {
		if err := c.sess.Close(); err != nil {
			// Whatever broke the upstream connection was logged already.
			c.log.Debug("closing maildrop failed", "user", c.authUser, "err", err)
		}
	}
	c.cancel()
	st := c.stats()
	if c.opened {
		c.srv.Observer.ConnClosed(c.event(), st)
	}
	if c.authUser != "" {
		// One line per session, like Dovecot's pop3_logout_format.
		c.log.Info("session ended", "user", c.authUser, "duration", st.Duration.Round(time.Millisecond),
			"retr", c.nRetr, "top", c.nTop, "dele", c.nDele, "deleted", c.nRemoved, "octets", c.octets, "sent", st.Sent)
	}
}

// readLine reads one line of at most limit octets with its line end
// (CRLF, or a bare LF from lenient clients) and returns it without.
func (c *conn) readLine(limit int) ([]byte, error) {
	if !c.lineQueued() {
		// Only a read that may block needs the idle deadline; setting it
		// for each of many pipelined commands costs a timer update each.
		c.nc.SetReadDeadline(time.Now().Add(orDefault(c.srv.IdleTimeout, DefaultIdleTimeout)))
	}
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		discarded := len(line)
		for err == bufio.ErrBufferFull && discarded < maxDiscard {
			line, err = c.br.ReadSlice('\n')
			discarded += len(line)
		}
		if err != nil {
			return nil, fmt.Errorf("overlong line: %w", io.EOF)
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > limit {
		return nil, errLineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// ok writes a positive answer.
func (c *conn) ok(text string) {
	c.bw.WriteString("+OK")
	if text != "" {
		c.bw.WriteByte(' ')
		c.bw.WriteString(text)
	}
	c.bw.Write(crlf)
}

// writeErr writes a negative answer; handlers return errors instead and
// reply writes them.
func (c *conn) writeErr(e *Error) {
	c.bw.WriteString("-ERR ")
	c.bw.WriteString(e.Error())
	c.bw.Write(crlf)
}

func (c *conn) commandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, orDefault(c.srv.CommandTimeout, DefaultCommandTimeout))
}

// deadlineWriter gives every write to the client its own deadline.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.nc.Write(p)
}
