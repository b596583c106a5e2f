// observer.go holds the Observer interface, the events it receives, and
// the connection's calls to it, each made from the connection's goroutine.

package pop3front

import (
	"bytes"
	"errors"
	"log/slog"
	"time"
)

// Observer receives what the server's connections do, for metrics. Its
// methods are called from the connection goroutines, concurrently, and
// must return quickly. Set it in Server.Observer; nil observes nothing.
type Observer interface {
	// ConnOpened reports an accepted connection that will be served.
	ConnOpened(c ConnEvent)
	// ConnRefused reports an accepted connection that was closed at once,
	// over Server.MaxConnections or MaxConnectionsPerIP.
	ConnRefused(c ConnEvent)
	// LoginDone reports the result of one login attempt.
	LoginDone(c ConnEvent, result LoginResult)
	// CommandDone reports one command (never its arguments).
	CommandDone(c ConnEvent, cmd CommandEvent)
	// ConnClosed reports the end of a connection served after ConnOpened.
	ConnClosed(c ConnEvent, s SessionStats)
}

// ConnEvent names the connection an event belongs to, without saying who
// the client is: metrics must not carry user names or addresses.
type ConnEvent struct {
	// Listener is the address of the listener that accepted the
	// connection.
	Listener string
	// TLS reports whether the connection is protected by TLS now.
	TLS bool
}

// LoginResult classifies a login attempt.
type LoginResult string

// Login results.
const (
	LoginOK               LoginResult = "ok"
	LoginAuthFailed       LoginResult = "auth_failed"       // wrong credentials
	LoginUpstreamError    LoginResult = "upstream_error"    // the backend could not check them
	LoginRefusedPlaintext LoginResult = "refused_plaintext" // plaintext password without TLS
	LoginRateLimited      LoginResult = "rate_limited"      // too many attempts
	LoginInUse            LoginResult = "in_use"            // another session holds the maildrop ([IN-USE])
)

// CommandEvent is one command and how it ended.
type CommandEvent struct {
	// Name is the upper-case command keyword, or "UNKNOWN" for anything
	// that is not a POP3 command (which keeps the label set bounded).
	Name string
	// Result is "ok" (+OK), "err" (-ERR) or "aborted" (the connection
	// ended without a complete answer: the client left, or a message
	// transfer was cut).
	Result string
	// Duration is the time from reading the command to answering it.
	Duration time.Duration
	// Sent is the number of bytes queued for the client since the
	// previous CommandDone of the connection: the answer to this command,
	// and for the first command also the greeting.
	Sent int64
	// Truncated reports a message transfer that was cut because the
	// message could not be read in full; the client got no terminating
	// line.
	Truncated bool
	// Deleted is the number of messages the UPDATE state removed from
	// the mailbox, for a QUIT whose UPDATE was confirmed; messages only
	// flagged or kept upstream do not count.
	Deleted int
}

// SessionStats sums up one connection, as its end-of-session log line does.
type SessionStats struct {
	// Reason says why the session ended: "quit", "client closed", "idle
	// timeout", "auth timeout", "write timeout", "shutdown", "kicked",
	// "upstream failed", "bad commands", "auth failures", "protocol
	// error" or "tls handshake failed".
	Reason   string
	Duration time.Duration
	// LoggedIn reports whether the client reached the TRANSACTION state.
	LoggedIn bool
	// Retr, Top and Dele count the completed commands.
	Retr, Top, Dele int
	// Deleted is the number of messages removed upstream at QUIT;
	// Flagged the number marked deleted there but left in the mailbox.
	Deleted, Flagged int
	// Octets is the message content sent by RETR and TOP, before
	// dot-stuffing.
	Octets int64
	// Sent is every byte queued for the client.
	Sent int64
	// Unreported is the part of Sent that no CommandDone reported (the
	// greeting of a connection that sent no command).
	Unreported int64
}

// commandNames are the keywords an Observer sees by name.
var commandNames = map[string]bool{
	"CAPA": true, "QUIT": true, "NOOP": true, "USER": true, "PASS": true, "AUTH": true, "STAT": true,
	"LIST": true, "UIDL": true, "RETR": true, "TOP": true, "DELE": true, "RSET": true, "APOP": true,
	"STLS": true, "LAST": true,
}

// observeCommand reports one command, answered with result (as reply
// classified its error err), to the observer and, at debug level, to the
// log, never with secret arguments.
func (c *conn) observeCommand(name string, args []byte, start time.Time, result string, err error) {
	if !commandNames[name] {
		name = "UNKNOWN"
	}
	queued := c.queued()
	ev := CommandEvent{Name: name, Result: result, Duration: time.Since(start), Sent: queued - c.reported,
		Truncated: errors.Is(err, errTruncated)}
	if errors.Is(err, errHangUp) {
		// Only the QUIT that ends the session sets update.
		ev.Deleted = c.update.Removed
	}
	c.reported = queued
	if c.srv.Observer != nil {
		c.srv.Observer.CommandDone(c.event(), ev)
	}
	if c.log.Enabled(c.ctx, slog.LevelDebug) {
		// Built only when logged: the attributes cost allocations per
		// command, thousands per second under a pipelining client.
		c.log.Debug("command", "cmd", name, "args", loggableArgs(name, args), "result", ev.Result,
			"duration", ev.Duration.Seconds(), "sent", ev.Sent)
	}
}

// loggableArgs returns a command's arguments as they may be logged: PASS
// loses all of them, AUTH everything after the mechanism name (the SASL
// response carries the password), and unknown commands everything (they
// may be a password sent at the wrong moment).
func loggableArgs(name string, args []byte) string {
	switch name {
	case "PASS", "UNKNOWN":
		if len(args) > 0 {
			return "<redacted>"
		}
		return ""
	case "AUTH":
		mech, _, more := bytes.Cut(args, []byte{' '})
		if more {
			return string(mech) + " <redacted>"
		}
		return string(mech)
	}
	if len(args) > 64 {
		args = args[:64]
	}
	return string(args)
}

// loginResultOf classifies the outcome of a login attempt: nil for a
// successful one, else the error that was answered (ErrPlaintextRefused,
// ErrAuthFailed, ErrRateLimited, ErrUnavailable or a Backend's own error).
func loginResultOf(err error) LoginResult {
	var e *Error
	switch {
	case err == nil:
		return LoginOK
	case errors.Is(err, ErrPlaintextRefused):
		return LoginRefusedPlaintext
	case errors.Is(err, ErrRateLimited), errors.As(err, &e) && e.Code == "LOGIN-DELAY":
		return LoginRateLimited
	case errors.As(err, &e) && e.Code == "AUTH":
		return LoginAuthFailed
	case errors.As(err, &e) && e.Code == "IN-USE":
		return LoginInUse
	}
	return LoginUpstreamError
}

// countingWriter counts the bytes written to the client.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

func (c *conn) event() ConnEvent {
	return ConnEvent{Listener: c.listener, TLS: c.isTLS()}
}

// observeOpened reports a connection that passed its handshake and limits.
func (c *conn) observeOpened() {
	if c.srv.Observer != nil {
		c.opened = true
		c.srv.Observer.ConnOpened(c.event())
	}
}

// observeLogin reports a login attempt; err is nil for a successful one.
func (c *conn) observeLogin(err error) {
	if c.srv.Observer == nil {
		return
	}
	c.srv.Observer.LoginDone(c.event(), loginResultOf(err))
}

func (c *conn) stats() SessionStats {
	return SessionStats{Reason: c.why, Duration: time.Since(c.started), LoggedIn: c.authUser != "", Retr: c.nRetr,
		Top: c.nTop, Dele: c.nDele, Deleted: c.update.Removed, Flagged: c.update.Flagged,
		Octets: c.retrOctets + c.topOctets, Sent: c.queued(), Unreported: c.queued() - c.reported}
}

// queued is what was written to the client or is waiting in the buffer.
func (c *conn) queued() int64 {
	if c.bw == nil {
		return c.sent.n
	}
	return c.sent.n + int64(c.bw.Buffered())
}
