// auth.go holds the handlers of the AUTHORIZATION state: USER, PASS, AUTH
// PLAIN (RFC 5034) and LOGIN, and STLS (RFC 2595), the login that moves a
// connection to TRANSACTION, and CAPA, which is valid in every state but
// lists what AUTHORIZATION offers.

package pop3front

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"time"
)

func (c *conn) handleCapa(args []byte) error {
	if len(args) > 0 {
		return badCommand("CAPA takes no arguments")
	}
	c.ok("Capability list follows")
	c.bw.WriteString("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n")
	if c.state == stateAuthorization {
		if c.plaintextAllowed() {
			c.bw.WriteString("USER\r\nSASL PLAIN LOGIN\r\n")
		}
		if c.stlsAvailable() {
			c.bw.WriteString("STLS\r\n")
		}
	}
	c.bw.WriteString(c.expireCapability())
	c.bw.WriteString("IMPLEMENTATION " + c.implementation() + "\r\n.\r\n")
	return nil
}

func (c *conn) implementation() string {
	if c.srv.Implementation != "" {
		return c.srv.Implementation
	}
	return DefaultImplementation
}

func (c *conn) handleUser(args []byte) error {
	if err := c.need(stateAuthorization); err != nil {
		return err
	}
	if len(args) == 0 {
		return badCommand("USER needs a user name")
	}
	if !c.plaintextAllowed() {
		return c.refusePlaintext()
	}
	if hasControl(args) {
		c.user = ""
		return errControlChars
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
		return badCommand("Send USER first")
	}
	user := c.user
	c.user = ""
	if hasControl(args) {
		return errControlChars
	}
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
			c.bw.WriteString("PLAIN\r\nLOGIN\r\n")
		}
		c.bw.WriteString(".\r\n")
		return nil
	}
	login := strings.EqualFold(string(mech), "LOGIN")
	if !login && !strings.EqualFold(string(mech), "PLAIN") {
		return &Error{Text: "Unsupported authentication mechanism"}
	}
	if !c.plaintextAllowed() {
		// Refused before the client sends its credentials in clear.
		return c.refusePlaintext()
	}
	if hasInitial && string(initial) == "*" {
		return errCancelled
	}
	if login {
		return c.authLogin(initial, hasInitial)
	}
	if !hasInitial {
		line, err := c.saslResponse("")
		if err != nil {
			return err
		}
		initial = line
	}
	authz, user, pass, err := decodePlain(initial)
	if err != nil {
		return err
	}
	if authz != "" && authz != user {
		return &Error{Code: "AUTH", Text: "Authorization identity must match the user"}
	}
	return c.login(user, pass)
}

// authLogin runs the LOGIN mechanism, in the form Dovecot and Exchange
// accept: the server asks "Username:" and "Password:" (in base64), the
// client answers each in base64; an initial response is the user name,
// and then only the password is asked for.
func (c *conn) authLogin(initial []byte, hasInitial bool) error {
	if !hasInitial {
		line, err := c.saslResponse("VXNlcm5hbWU6") // "Username:"
		if err != nil {
			return err
		}
		initial = line
	}
	user, err := decodeLogin(initial)
	if err != nil {
		return err
	}
	if user == "" {
		return errBadLogin
	}
	line, err := c.saslResponse("UGFzc3dvcmQ6") // "Password:"
	if err != nil {
		return err
	}
	pass, err := decodeLogin(line)
	if err != nil {
		return err
	}
	return c.login(user, pass)
}

var errCancelled = &Error{Text: "Authentication cancelled"}

// saslResponse sends a SASL challenge (base64, RFC 5034 section 4) and
// reads the client's response line, which belongs to the AUTH command: it
// is never dispatched as a command of its own. "*" cancels the exchange.
func (c *conn) saslResponse(challenge string) ([]byte, error) {
	c.bw.WriteString("+ " + challenge + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, abort(err)
	}
	line, err := c.readLine(maxAuthLine)
	if err == errLineTooLong {
		return nil, badCommand("Authentication line too long")
	}
	if err != nil {
		return nil, c.readFailed(err)
	}
	if string(line) == "*" {
		return nil, errCancelled
	}
	return line, nil
}

// login runs openMaildrop on a goroutine of its own, and waits for it.
// The login is the deepest call a session makes (dial, IMAP login,
// snapshot, the log line): run here, it would grow this goroutine's
// stack to 8 or 16 KiB, which the session would then keep while it sits
// idle, since a stack shrinks only during a garbage collection. This
// goroutine only waits meanwhile, so the connection is still used by one
// goroutine at a time.
func (c *conn) login(user, pass string) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = c.openMaildrop(user, pass)
	}()
	<-done
	return err
}

// openMaildrop asks the Backend for the user's maildrop and, on success,
// enters the TRANSACTION state.
func (c *conn) openMaildrop(user, pass string) error {
	ctx, cancel := c.commandContext()
	defer cancel()
	sess, err := c.srv.Backend.Login(ctx, user, pass, c.info())
	if err == nil && sess == nil {
		err = errors.New("backend returned no session")
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
					return abort(c.ctx.Err())
				}
			}
		} else {
			c.log.Warn("login error", "user", user, "err", err)
		}
		if c.authFail >= maxAuthFailures {
			c.endAs(endAuthFailures)
			return closeAfter(err)
		}
		return err
	}
	c.sess = sess
	if ps, ok := sess.(PipelinedSession); ok {
		ps.SetUpcoming(c.upcoming)
	}
	c.authUser = user
	c.msgs = sess.Messages()
	c.deleted = make([]bool, len(c.msgs))
	for i, m := range c.msgs {
		c.totalSize += m.Size
		if m.Seen {
			c.lastSeen = i + 1
		}
	}
	c.state = stateTransaction
	c.log.Info("logged in", "user", user, "messages", len(c.msgs), "size", c.totalSize)
	c.ok("Logged in, " + strconv.Itoa(len(c.msgs)) + " messages")
	return nil
}

// stlsAvailable reports whether CAPA lists STLS: TLS is configured and not
// active yet (RFC 2595 section 4).
func (c *conn) stlsAvailable() bool {
	return c.stls != nil && !c.isTLS()
}

// plaintextAllowed reports whether USER/PASS and AUTH PLAIN may be used
// now: always over TLS, otherwise as Server.PlaintextAllowed decides.
func (c *conn) plaintextAllowed() bool {
	if c.isTLS() || c.srv.PlaintextAllowed == nil {
		return true
	}
	return c.srv.PlaintextAllowed(c.info())
}

// refusePlaintext answers USER or AUTH PLAIN on a connection where they
// are not allowed. The refusal counts as a protocol error, so a client
// that keeps trying is disconnected.
func (c *conn) refusePlaintext() error {
	c.user = ""
	c.log.Info("plaintext authentication refused on a connection without TLS")
	c.observeLogin(ErrPlaintextRefused)
	return protoError{ErrPlaintextRefused}
}

// handleStls upgrades the connection to TLS (RFC 2595 section 4).
func (c *conn) handleStls(args []byte) error {
	if c.stls == nil {
		// A server without TLS does not know the command at all.
		return badCommand("Unknown command")
	}
	if err := c.needBare(stateAuthorization, "STLS", args); err != nil {
		return err
	}
	if c.isTLS() {
		return badCommand("TLS is already active")
	}
	if c.br.Buffered() > 0 {
		// Whatever follows STLS in the same pipeline was sent in clear
		// and must not be taken as a command sent under TLS (the command
		// injection of CVE-2011-0411). A correct client waits for +OK.
		c.log.Warn("data after STLS before the TLS handshake, closing connection")
		c.endAs(endProtocol)
		return closeAfter(&Error{Text: "STLS must be the last command before the TLS handshake"})
	}
	c.ok("Begin TLS negotiation now")
	if err := c.bw.Flush(); err != nil {
		return abort(err)
	}
	timeout := orDefault(c.srv.HandshakeTimeout, DefaultHandshakeTimeout)
	tc := tls.Server(c.nc, c.stls)
	tc.SetDeadline(time.Now().Add(timeout))
	ctx, cancel := c.callContext(timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		// The command was answered; the client could not follow.
		c.log.Info("STLS handshake failed", "err", err)
		c.endAs(endTLSFailed)
		return errHangUp
	}
	tc.SetDeadline(time.Time{})
	c.setConn(tc)
	// RFC 2595 section 4: the server discards what it learnt from the
	// client before TLS (a USER name); the client asks CAPA again.
	c.user = ""
	return nil
}
