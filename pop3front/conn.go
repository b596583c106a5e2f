// conn.go holds one client connection: its state, the command loop that
// reads a line, dispatches it to its handler and turns the handler's error
// into the answer, the end of the session and its last log line, and the
// low-level reads and writes. The connection's own goroutine runs
// everything here; other goroutines only close raw and cancel ctx (through
// closeBy), and read what publish left in live. The handlers live in files
// named after their POP3 state.

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
	"os"
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
	// bigWriteBufferSize is the write buffer while a large message
	// goes out (growWriteBuffer).
	bigWriteBufferSize = 128 << 10
)

type state int

const (
	stateAuthorization state = iota
	stateTransaction
	stateUpdate
)

var errLineTooLong = errors.New("line too long")

// Why a session ended, as its last log line and SessionStats.Reason say.
const (
	endQuit           = "quit"
	endClientClosed   = "client closed"
	endIdleTimeout    = "idle timeout"
	endAuthTimeout    = "auth timeout"
	endWriteTimeout   = "write timeout"
	endShutdown       = "shutdown"
	endKicked         = "kicked"
	endUpstreamFailed = "upstream failed"
	endBadCommands    = "bad commands"
	endAuthFailures   = "auth failures"
	endProtocol       = "protocol error"
	endTLSFailed      = "tls handshake failed"
)

// The answers before an autologout (RFC 1939 section 3 lets the server
// close without one; a person testing by hand then sees why).
var (
	errIdleTimeout = &Error{Text: "Autologout; idle for too long"}
	errAuthTimeout = &Error{Text: "Autologout; authentication took too long"}
)

// conn is one client connection: a state machine driven by serve.
type conn struct {
	srv    *Server
	id     string   // the session id on every log line
	raw    net.Conn // as accepted; other goroutines close this one
	nc     net.Conn // raw, or the TLS conn over it after STLS
	br     *bufio.Reader
	bw     *bufio.Writer
	log    *slog.Logger
	ctx    context.Context // cancelled when the connection is closed (stop)
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
	// in is what br reads. br and bw are nil while c waits for a
	// command (idle.go).
	in wakeReader

	state    state
	user     string // from USER, waiting for PASS
	bad      int    // protocol errors, up to maxBadCommands
	authFail int    // failed logins, up to maxAuthFailures

	// Set before serve: over MaxConnections, answer and close.
	overLimit bool
	released  bool       // the connection's place under the limits was given back (under srv.mu)
	ip        netip.Addr // counted against MaxConnectionsPerIP
	// slotRelease gives back the slot that Server.ConnectionSlot gave.
	slotRelease func()
	remote      net.Addr // the client, behind a PROXY header if any
	stls        *tls.Config

	authUser     string    // the logged-in user, for the log
	authDeadline time.Time // end of the AUTHORIZATION state's AuthTimeout
	served       bool      // past the handshake and the limits: a session to log
	why          string    // why the session ended, once known
	maildrop               // set by the login
	tally
	live liveStatus // what Server.Sessions shows, and how to kick

	scratch [64]byte // where single-line answers are built
	// pipelined: the client sent commands ahead of our answers, so its
	// socket may hold more (upcoming).
	pipelined bool
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
	// lastSeen is LAST's answer (RFC 1460): the highest message number
	// retrieved, or seen before the session.
	lastSeen int
}

// tally counts what a connection did, for the end-of-session log line and
// the Observer's SessionStats.
type tally struct {
	started               time.Time
	nRetr, nTop, nDele    int
	retrOctets, topOctets int64
	update                UpdateResult // what QUIT's UPDATE did, which ends the session
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	id := newSessionID()
	c := &conn{
		srv:    s,
		id:     id,
		raw:    nc,
		stls:   s.TLSConfig,
		ctx:    ctx,
		cancel: cancel,
		tally:  tally{started: time.Now()},
		// RemoteAddr may block (it reads a PROXY header): the address
		// is added in serve.
		log: s.logger().With("session", id),
	}
	c.setConn(nc)
	return c
}

// setConn makes nc the client connection, at the start and after STLS.
func (c *conn) setConn(nc net.Conn) {
	c.nc = nc
	c.in = wakeReader{nc: nc}
	_, isTLS := nc.(*tls.Conn)
	c.sent.w = deadlineWriter{nc, orDefault(c.srv.WriteTimeout, DefaultWriteTimeout), isTLS}
	// After STLS nothing is buffered on either side: the reader was
	// empty (handleStls checks) and the answer flushed.
	c.busy()
}

func (c *conn) serve() {
	defer c.close()
	if !c.start() {
		return
	}
	c.served = true
	c.publish()
	c.observeOpened()
	c.ok(c.implementation() + " ready")
	// AuthTimeout runs from the greeting, whatever the client does.
	c.authDeadline = time.Now().Add(orDefault(c.srv.AuthTimeout, DefaultAuthTimeout))
	for {
		if !c.lineQueued() {
			// Flush only when the client has no further command queued,
			// so that pipelined commands get their answers in one write.
			if err := c.bw.Flush(); err != nil {
				c.reply("", c.writeFailed(err))
				return
			}
			c.idle()
		}
		line, err := c.readLine(maxAuthLine)
		c.busy()
		var end bool
		switch {
		case err == nil:
			end = c.command(line)
		case err == errLineTooLong:
			// Not a command: the observer does not see it.
			_, end = c.reply("", badCommand("Line too long"))
		default:
			_, end = c.reply("", c.readFailed(err))
		}
		if end {
			// The connection's place under the limits is free before the
			// client sees the last answer: a client that reconnects as
			// soon as it has read it is never refused as one too many.
			c.markEnded()
			c.srv.releaseSlot(c)
			c.bw.Flush()
			return
		}
	}
}

// readFailed ends the connection after a read failed with err. A timeout
// is answered first; anything else means that the client left or that
// the server closed the connection.
func (c *conn) readFailed(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.state == stateAuthorization && !time.Now().Before(c.authDeadline) {
			c.endAs(endAuthTimeout)
			c.log.Info("closing connection: no login within the authentication timeout")
			return closeAfter(errAuthTimeout)
		}
		c.endAs(endIdleTimeout)
		return closeAfter(errIdleTimeout)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Debug("read failed", "err", err)
	}
	c.endAs(endClientClosed)
	return abort(err)
}

// writeFailed ends the connection after a write to the client failed.
func (c *conn) writeFailed(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.endAs(endWriteTimeout)
	} else {
		c.endAs(endClientClosed)
	}
	return abort(err)
}

// endAs records why the session ends, unless an earlier cause is known.
func (c *conn) endAs(why string) {
	if c.why == "" {
		c.why = why
	}
}

// command runs one command line: the handler's error becomes the reply,
// and the outcome goes to the observer. It reports whether the connection
// ends.
func (c *conn) command(line []byte) (end bool) {
	start := time.Now()
	kw, args, _ := bytes.Cut(line, []byte{' '})
	name := strings.ToUpper(string(kw))
	if name == "AUTH" {
		// AUTH reads its SASL lines into the buffer that args points into:
		// the log would show them (the password) in place of the mechanism.
		args = bytes.Clone(args)
	}
	var err error
	if name != "AUTH" && len(line)+2 > maxLine {
		err = badCommand("Line too long")
	} else {
		err = c.dispatch(name, args)
	}
	result, end := c.reply(name, err)
	c.observeCommand(name, args, start, result, err)
	c.publish()
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
	case "LAST":
		return c.handleLast(args)
	case "QUIT":
		return c.handleQuit(args)
	case "PROXY":
		// A PROXY protocol v1 header where none is accepted: someone
		// trying to pass as another client address, or a load balancer
		// sending headers to a listener not configured for them. (A v2
		// header's signature ends in "QUIT", which closes as well.)
		c.log.Warn("PROXY protocol header not accepted from this address, closing connection")
		c.endAs(endProtocol)
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

// needBare is need for a command that takes no arguments: the state is
// checked first, as for every command.
func (c *conn) needBare(s state, cmd string, args []byte) error {
	if err := c.need(s); err != nil {
		return err
	}
	if len(args) > 0 {
		return badCommand(cmd + " takes no arguments")
	}
	return nil
}

// lineQueued reports whether a whole command line is already buffered. A
// partial line does not count: its sender may be waiting for our answers
// before it sends the rest.
func (c *conn) lineQueued() bool {
	if c.br == nil {
		return false
	}
	n := c.br.Buffered()
	if n == 0 {
		return false
	}
	buf, _ := c.br.Peek(n)
	return bytes.IndexByte(buf, '\n') >= 0
}

func (c *conn) close() {
	closedBy := c.markEnded()
	// The limits first, then the client: it need not wait for the
	// upstream logout.
	c.srv.releaseSlot(c)
	c.nc.Close()
	if c.sess != nil {
		if err := c.sess.Close(); err != nil {
			// Whatever broke the upstream connection was logged already.
			c.log.Debug("closing maildrop failed", "user", c.authUser, "err", err)
		}
	}
	c.stop()
	if closedBy != "" && c.why != endQuit {
		// The server closed the connection: whatever failed then
		// followed from that.
		c.why = closedBy
	}
	c.endAs(endClientClosed)
	st := c.stats()
	if c.opened {
		c.srv.Observer.ConnClosed(c.event(), st)
	}
	if c.served {
		// One line per session, like Dovecot's pop3_logout_format.
		c.log.Info("session ended", "user", c.authUser, "reason", c.why, "duration", st.Duration.Seconds(),
			"messages", len(c.msgs), "size", c.totalSize, "retr", c.nRetr, "retr_octets", c.retrOctets,
			"top", c.nTop, "top_octets", c.topOctets, "marked", c.nDeleted, "removed", c.update.Removed,
			"flagged", c.update.Flagged, "sent", st.Sent)
	}
}

// readLine reads one line of at most limit octets with its line end
// (CRLF, or a bare LF from lenient clients) and returns it without.
func (c *conn) readLine(limit int) ([]byte, error) {
	if !c.lineQueued() {
		// Only a read that may block needs the idle deadline; setting it
		// for each of many pipelined commands costs a timer update each.
		deadline := time.Now().Add(orDefault(c.srv.IdleTimeout, DefaultIdleTimeout))
		if c.state == stateAuthorization && c.authDeadline.Before(deadline) {
			deadline = c.authDeadline
		}
		c.nc.SetReadDeadline(deadline)
		if c.br == nil {
			if err := c.awaitInput(); err != nil {
				return nil, err
			}
		}
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
	return c.callContext(orDefault(c.srv.CommandTimeout, DefaultCommandTimeout))
}
