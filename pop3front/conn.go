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
	"strconv"
	"strings"
	"sync"
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

// Errors that end the connection loop.
var (
	errLineTooLong = errors.New("line too long")
	errHangUp      = errors.New("connection ends") // after QUIT or too many errors
	errTruncated   = errors.New("message transfer aborted")
)

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
	bad      int
	authFail int

	// Set before serve: over MaxConnections, answer and close.
	overLimit bool
	ip        netip.Addr // counted against MaxConnectionsPerIP
	remote    net.Addr   // the client, behind a PROXY header if any
	stls      *tls.Config

	// TRANSACTION state.
	sess      Session
	msgs      []MessageInfo
	deleted   []bool
	nDeleted  int
	totalSize int64
	delSize   int64

	// Counters for the end-of-session log line.
	started            time.Time
	nRetr, nTop, nDele int
	nRemoved           int // messages removed at QUIT
	octets             int64
	authUser           string
	scratch            [64]byte

	// How the current command went, for the Observer.
	failed    bool // answered -ERR
	truncated bool // a message transfer was cut
	committed int  // messages removed by QUIT
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:     s,
		raw:     nc,
		stls:    s.TLSConfig,
		ctx:     ctx,
		cancel:  cancel,
		started: time.Now(),
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
		if err == errLineTooLong {
			c.fail(&Error{Text: "Line too long"})
			if c.badCommand() {
				return
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Debug("read failed", "err", err)
			}
			return
		}
		if err := c.handle(line); err != nil {
			if err != errHangUp && err != errTruncated {
				c.log.Debug("connection closed", "err", err)
			}
			c.bw.Flush()
			return
		}
	}
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

// badCommand counts a protocol error and reports whether the connection
// must now be closed.
func (c *conn) badCommand() bool {
	c.bad++
	if c.bad < maxBadCommands {
		return false
	}
	c.fail(&Error{Text: "Too many bad commands, closing connection"})
	c.bw.Flush()
	c.log.Info("closing connection after too many bad commands")
	return true
}

// dispatch runs one command line.
func (c *conn) dispatch(line []byte) error {
	kw, args, _ := bytes.Cut(line, []byte{' '})
	cmd := strings.ToUpper(string(kw))
	if cmd != "AUTH" && len(line)+2 > maxLine {
		c.fail(&Error{Text: "Line too long"})
		return c.protocolError()
	}
	var err error
	switch cmd {
	case "CAPA":
		err = c.handleCapa(args)
	case "QUIT":
		return c.handleQuit(args)
	case "NOOP":
		err = c.handleNoop(args)
	case "USER":
		err = c.handleUser(args)
	case "PASS":
		err = c.handlePass(args)
	case "AUTH":
		err = c.handleAuth(args)
	case "STLS":
		err = c.handleStls(args)
	case "STAT":
		err = c.handleStat(args)
	case "LIST":
		err = c.handleList(args, false)
	case "UIDL":
		err = c.handleList(args, true)
	case "RETR":
		err = c.handleRetr(args)
	case "TOP":
		err = c.handleTop(args)
	case "DELE":
		err = c.handleDele(args)
	case "RSET":
		err = c.handleRset(args)
	case "PROXY":
		// A PROXY protocol v1 header where none is accepted: someone
		// trying to pass as another client address, or a load balancer
		// sending headers to a listener not configured for them. (A v2
		// header's signature ends in "QUIT", which closes as well.)
		c.log.Warn("PROXY protocol header not accepted from this address, closing connection")
		c.fail(&Error{Text: "PROXY protocol header not accepted from this address"})
		return errHangUp
	case "APOP":
		c.fail(&Error{Text: "APOP is not supported, use USER/PASS or AUTH PLAIN"})
		return c.protocolError()
	default:
		c.fail(&Error{Text: "Unknown command"})
		return c.protocolError()
	}
	var pe protoError
	if errors.As(err, &pe) {
		c.fail(&Error{Text: string(pe)})
		return c.protocolError()
	}
	return err
}

// protoError is a client mistake: answered with -ERR and counted.
type protoError string

func (e protoError) Error() string { return string(e) }

func (c *conn) protocolError() error {
	if c.badCommand() {
		return errHangUp
	}
	return nil
}

// need checks the session state for a command.
func (c *conn) need(s state) error {
	if c.state == s {
		return nil
	}
	if s == stateAuthorization {
		return protoError("Command not valid after login")
	}
	return protoError("Command not valid before login")
}

func (c *conn) ok(text string) {
	c.bw.WriteString("+OK")
	if text != "" {
		c.bw.WriteByte(' ')
		c.bw.WriteString(text)
	}
	c.bw.Write(crlf)
}

func (c *conn) fail(e *Error) {
	c.failed = true
	c.bw.WriteString("-ERR ")
	c.bw.WriteString(e.Error())
	c.bw.Write(crlf)
}

// failErr answers a backend error: an *Error as it is, anything else as
// an internal error, with the details in the log only.
func (c *conn) failErr(op string, err error) {
	var e *Error
	if errors.As(err, &e) {
		c.fail(e)
		return
	}
	c.log.Error(op+" failed", "user", c.authUser, "err", err)
	c.fail(errInternal)
}

func (c *conn) commandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, orDefault(c.srv.CommandTimeout, DefaultCommandTimeout))
}

func (c *conn) handleCapa(args []byte) error {
	if len(args) > 0 {
		return protoError("CAPA takes no arguments")
	}
	c.ok("Capability list follows")
	c.bw.WriteString("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n")
	if c.state == stateAuthorization {
		if c.plaintextAllowed() {
			c.bw.WriteString("USER\r\nSASL PLAIN\r\n")
		}
		if c.stlsAvailable() {
			c.bw.WriteString("STLS\r\n")
		}
	}
	c.bw.WriteString("IMPLEMENTATION " + c.implementation() + "\r\n.\r\n")
	return nil
}

func (c *conn) implementation() string {
	if c.srv.Implementation != "" {
		return c.srv.Implementation
	}
	return DefaultImplementation
}

func (c *conn) handleNoop(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	if len(args) > 0 {
		return protoError("NOOP takes no arguments")
	}
	ctx, cancel := c.commandContext()
	defer cancel()
	if err := c.sess.Noop(ctx); err != nil {
		c.failErr("noop", err)
		return nil
	}
	c.ok("")
	return nil
}

func (c *conn) handleQuit(args []byte) error {
	if len(args) > 0 {
		c.fail(&Error{Text: "QUIT takes no arguments"})
		return c.protocolError()
	}
	if c.state != stateTransaction {
		c.ok("Logging out")
		return errHangUp
	}
	c.state = stateUpdate
	var dele []int
	for i, d := range c.deleted {
		if d {
			dele = append(dele, i)
		}
	}
	ctx, cancel := c.commandContext()
	defer cancel()
	if err := c.sess.Commit(ctx, dele); err != nil {
		// RFC 1939 section 6: "some deleted messages not removed".
		c.log.Error("update failed", "user", c.authUser, "deleted", len(dele), "err", err)
		c.fail(&Error{Code: "SYS/TEMP", Text: "Some deleted messages not removed, try again later"})
		return errHangUp
	}
	c.nRemoved, c.committed = len(dele), len(dele)
	if len(dele) == 0 {
		c.ok("Logging out")
	} else {
		c.ok("Logging out, " + strconv.Itoa(len(dele)) + " messages deleted")
	}
	return errHangUp
}

func (c *conn) handleUser(args []byte) error {
	if err := c.need(stateAuthorization); err != nil {
		return err
	}
	if len(args) == 0 {
		return protoError("USER needs a user name")
	}
	if !c.plaintextAllowed() {
		return c.refusePlaintext()
	}
	c.user = string(args)
	c.ok("Send your password")
	return nil
}

func (c *conn) handlePass(args []byte) error {
	if err := c.need(stateAuthorization); err != nil {
		return err
	}
	if c.user == "" {
		return protoError("Send USER first")
	}
	user := c.user
	c.user = ""
	// RFC 1939 section 7: the password is the rest of the line, spaces
	// included.
	return c.login(user, string(args))
}

func (c *conn) handleAuth(args []byte) error {
	if err := c.need(stateAuthorization); err != nil {
		return err
	}
	mech, initial, hasInitial := bytes.Cut(args, []byte{' '})
	if len(mech) == 0 {
		// Pre-RFC 5034 clients (Outlook among them) list the mechanisms
		// with a bare AUTH.
		c.ok("Supported mechanisms follow")
		if c.plaintextAllowed() {
			c.bw.WriteString("PLAIN\r\n")
		}
		c.bw.WriteString(".\r\n")
		return nil
	}
	if !strings.EqualFold(string(mech), "PLAIN") {
		c.fail(&Error{Text: "Unsupported authentication mechanism"})
		return nil
	}
	if !c.plaintextAllowed() {
		// Refused before the client sends its credentials in clear.
		return c.refusePlaintext()
	}
	if !hasInitial {
		c.bw.WriteString("+ \r\n")
		if err := c.bw.Flush(); err != nil {
			return err
		}
		line, err := c.readLine(maxAuthLine)
		if err == errLineTooLong {
			return protoError("Authentication line too long")
		}
		if err != nil {
			return err
		}
		initial = line
	}
	if string(initial) == "*" {
		c.fail(&Error{Text: "Authentication cancelled"})
		return nil
	}
	authz, user, pass, err := decodePlain(initial) // sasl.go
	if err != nil {
		return err
	}
	if authz != "" && authz != user {
		c.fail(&Error{Code: "AUTH", Text: "Authorization identity must match the user"})
		return nil
	}
	return c.login(user, pass)
}

func (c *conn) login(user, pass string) error {
	ctx, cancel := c.commandContext()
	defer cancel()
	info := c.info()
	sess, err := c.srv.Backend.Login(ctx, user, pass, info)
	if err == nil && sess == nil {
		err = errors.New("backend returned no session")
	}
	if f := c.srv.OnLogin; f != nil {
		f(info, err)
	}
	c.observeLogin(err)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == "AUTH" {
			c.log.Info("login failed", "user", user)
			c.authFail++
			if d := c.srv.AuthFailureDelay; d > 0 {
				c.bw.Flush()
				select {
				case <-time.After(d):
				case <-c.ctx.Done():
					return c.ctx.Err()
				}
			}
		} else {
			c.log.Warn("login error", "user", user, "err", err)
		}
		c.failErr("login", err)
		if c.authFail >= maxAuthFailures {
			return errHangUp
		}
		return nil
	}
	c.sess = sess
	c.authUser = user
	c.msgs = sess.Messages()
	c.deleted = make([]bool, len(c.msgs))
	for _, m := range c.msgs {
		c.totalSize += m.Size
	}
	c.state = stateTransaction
	c.log.Info("logged in", "user", user, "messages", len(c.msgs))
	c.ok("Logged in, " + strconv.Itoa(len(c.msgs)) + " messages")
	return nil
}

func (c *conn) handleStat(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	if len(args) > 0 {
		return protoError("STAT takes no arguments")
	}
	b := append(c.scratch[:0], "+OK "...)
	b = strconv.AppendInt(b, int64(len(c.msgs)-c.nDeleted), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, c.totalSize-c.delSize, 10)
	b = append(b, crlf...)
	c.bw.Write(b)
	return nil
}

// handleList answers LIST (sizes) and UIDL (unique ids), with or without a
// message number.
func (c *conn) handleList(args []byte, uidl bool) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	item := func(b []byte, i int) []byte {
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ' ')
		if uidl {
			b = append(b, c.msgs[i].UID...)
		} else {
			b = strconv.AppendInt(b, c.msgs[i].Size, 10)
		}
		return append(b, crlf...)
	}
	if len(args) > 0 {
		i, err := c.message(args)
		if err != nil {
			return err
		}
		if i < 0 {
			return nil
		}
		c.bw.Write(item(append(c.scratch[:0], "+OK "...), i))
		return nil
	}
	if uidl {
		c.ok("Unique-ID listing follows")
	} else {
		c.ok(strconv.Itoa(len(c.msgs)-c.nDeleted) + " messages")
	}
	for i := range c.msgs {
		if !c.deleted[i] {
			c.bw.Write(item(c.scratch[:0], i))
		}
	}
	c.bw.WriteString(".\r\n")
	return nil
}

// message parses a message-number argument. A syntax error is returned as
// a protoError; a number that names no message is answered here and
// reported as i < 0.
func (c *conn) message(arg []byte) (int, error) {
	n, ok := parseNumber(arg)
	if !ok {
		return -1, protoError("Invalid message number")
	}
	if n < 1 || n > len(c.msgs) {
		c.fail(&Error{Text: "No such message"})
		return -1, nil
	}
	if c.deleted[n-1] {
		c.fail(&Error{Text: "Message " + strconv.Itoa(n) + " already deleted"})
		return -1, nil
	}
	return n - 1, nil
}

// parseNumber parses a non-negative decimal number of at most 9 digits
// (larger numbers name no message and no sensible line count).
func parseNumber(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int(ch-'0')
	}
	return n, true
}

func (c *conn) handleRetr(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	i, err := c.message(args)
	if err != nil || i < 0 {
		return err
	}
	if sent, err := c.send(i, -1); !sent {
		return err
	}
	c.nRetr++
	c.sess.Retrieved(i)
	return nil
}

func (c *conn) handleTop(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	msg, lines, ok := bytes.Cut(args, []byte{' '})
	if !ok {
		return protoError("TOP needs a message number and a line count")
	}
	n, ok := parseNumber(lines)
	if !ok {
		// A line count too large for parseNumber is as good as "all".
		if len(lines) == 0 || bytes.IndexFunc(lines, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return protoError("Invalid line count")
		}
		n = int(^uint32(0) >> 1)
	}
	i, err := c.message(msg)
	if err != nil || i < 0 {
		return err
	}
	if sent, err := c.send(i, n); !sent {
		return err
	}
	c.nTop++
	return nil
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// send streams message i as a multi-line response: all of it when
// lines < 0, else the header and that many body lines. If the message
// cannot be read in full, the connection is closed without the terminating
// line: the client must not take a truncated message for a whole one.
// sent reports whether the message went out in full; when it is false
// and err is nil, the client got an -ERR answer and the session goes on.
func (c *conn) send(i, lines int) (sent bool, err error) {
	if c.sess.Expunged(i) {
		c.failGone(i)
		return false, nil
	}
	rc, err := c.sess.Retrieve(c.ctx, i, lines)
	if errors.Is(err, ErrNoMessage) {
		c.failGone(i)
		return false, nil
	}
	if err != nil {
		c.failErr("retrieve", err)
		return false, nil
	}
	defer rc.Close()

	if lines < 0 {
		c.ok(strconv.FormatInt(c.msgs[i].Size, 10) + " octets")
	} else {
		c.ok("Top of message follows")
	}
	dw := newDotWriter(c.bw)
	var rerr error
	if wt, ok := rc.(io.WriterTo); ok && lines < 0 {
		// The backend writes from its own buffers: no copy through a
		// buffer of ours.
		c.cw = clientWriter{dw: dw}
		_, rerr = wt.WriteTo(&c.cw)
		c.octets += c.cw.n
		if c.cw.err != nil {
			return false, c.cw.err // the client is gone
		}
	} else {
		var werr error
		if rerr, werr = c.copyMessage(dw, rc, lines); werr != nil {
			return false, werr // the client is gone
		}
	}
	if rerr != nil {
		c.log.Error("message transfer failed, closing connection without the terminating line",
			"user", c.authUser, "msg", i+1, "err", rerr)
		// Send what is buffered so far but never the final ".".
		c.truncated = true
		c.bw.Flush()
		return false, errTruncated
	}
	if err := dw.Close(); err != nil {
		return false, err
	}
	return true, nil
}

// copyMessage copies a message (or, with lines >= 0, its top) from rc to
// dw. rerr is a failure to read the message, werr one to write it.
func (c *conn) copyMessage(dw *dotWriter, rc io.Reader, lines int) (rerr, werr error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	top := topCutter{n: lines}
	for {
		n, err := rc.Read(buf)
		p := buf[:n]
		if lines >= 0 {
			p = top.cut(p)
		}
		if _, werr := dw.Write(p); werr != nil {
			return nil, werr
		}
		c.octets += int64(len(p))
		if err == io.EOF || top.done {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// clientWriter is where a backend's io.WriterTo writes a message: it
// keeps the client's write error apart from the backend's read error.
type clientWriter struct {
	dw  *dotWriter
	n   int64
	err error
}

func (w *clientWriter) Write(p []byte) (int, error) {
	n, err := w.dw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// failGone answers a command on a message another client removed.
func (c *conn) failGone(i int) {
	c.fail(&Error{Text: "Message " + strconv.Itoa(i+1) + " was removed by another client"})
}

func (c *conn) handleDele(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	i, err := c.message(args)
	if err != nil || i < 0 {
		return err
	}
	if c.sess.Expunged(i) {
		c.failGone(i)
		return nil
	}
	c.deleted[i] = true
	c.nDeleted++
	c.delSize += c.msgs[i].Size
	c.nDele++
	c.ok("Message " + strconv.Itoa(i+1) + " deleted")
	return nil
}

func (c *conn) handleRset(args []byte) error {
	if err := c.need(stateTransaction); err != nil {
		return err
	}
	if len(args) > 0 {
		return protoError("RSET takes no arguments")
	}
	clear(c.deleted)
	c.nDeleted, c.delSize = 0, 0
	c.ok(strconv.Itoa(len(c.msgs)) + " messages")
	return nil
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
