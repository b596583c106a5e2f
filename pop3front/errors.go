// errors.go holds the negative responses, the errors handlers return, and
// reply: the one function that turns a handler's error into what the
// client sees and how the command counts for the observer.

package pop3front

import (
	"errors"
	"strings"
)

// Error is a negative POP3 response. Code is an RFC 2449 extended response
// code such as "AUTH", "SYS/TEMP", "SYS/PERM" or "IN-USE" (RFC 3206), or
// empty.
type Error struct {
	Code string
	Text string
}

// Error returns the response text as the client sees it, without "-ERR ".
func (e *Error) Error() string {
	if e.Code == "" {
		return e.Text
	}
	return "[" + e.Code + "] " + e.Text
}

// Errors a Backend returns so that the client gets the right response code.
var (
	// ErrAuthFailed: the credentials were rejected.
	ErrAuthFailed = &Error{Code: "AUTH", Text: "Authentication failed"}
	// ErrUnavailable: the maildrop cannot be reached now; try again later.
	ErrUnavailable = &Error{Code: "SYS/TEMP", Text: "Mail server temporarily unavailable, try again later"}
	// ErrInUse: the maildrop is locked by another session.
	ErrInUse = &Error{Code: "IN-USE", Text: "Mailbox is in use by another session"}
	// ErrNoMessage: the message was removed from the maildrop by another
	// client during this session.
	ErrNoMessage = errors.New("message no longer exists")

	// ErrPlaintextRefused: USER/PASS or AUTH PLAIN on a connection without
	// TLS from a client that Server.PlaintextAllowed does not trust (as
	// Dovecot's disable_plaintext_auth). The server answers it itself,
	// without asking the Backend.
	ErrPlaintextRefused = &Error{Code: "AUTH", Text: "Plaintext authentication disallowed on non-secure connections, use STLS or POP3S"}
	// ErrRateLimited: too many failed logins from the client's address or
	// for the user name; the password was not checked. A Backend that
	// enforces rate limits returns it. It is a temporary condition, not
	// wrong credentials, so it carries SYS/TEMP: a client should not ask
	// its user for a new password.
	ErrRateLimited = &Error{Code: "SYS/TEMP", Text: "Too many failed logins, try again later"}
)

// errInternal is what the client sees for any error that is not an *Error:
// details stay in the log.
var errInternal = &Error{Code: "SYS/TEMP", Text: "Internal error, try again later"}

// What a handler returns besides nil (answered +OK) and an *Error
// (answered -ERR, the session goes on).
var (
	// errHangUp: the handler answered, and the connection ends (QUIT).
	errHangUp = errors.New("connection ends")
	// errTruncated: a message could not be read in full; the client got
	// part of it and no terminating line, and the connection ends.
	errTruncated = errors.New("message transfer aborted")
)

// protoError is a client mistake: answered like its *Error and counted;
// after maxBadCommands the connection ends.
type protoError struct{ reply *Error }

func (e protoError) Error() string { return e.reply.Error() }
func (e protoError) Unwrap() error { return e.reply }

// badCommand is a protoError without a response code.
func badCommand(text string) error { return protoError{&Error{Text: text}} }

// finalError is answered like the error it wraps, then the connection
// ends.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }
func (e finalError) Unwrap() error { return e.err }

func closeAfter(err error) error { return finalError{err} }

// abortError ends the connection without a further answer: the client is
// gone, the server is closing, or a message transfer was cut.
type abortError struct{ err error }

func (e abortError) Error() string { return e.err.Error() }
func (e abortError) Unwrap() error { return e.err }

func abort(err error) error { return abortError{err} }

// reply answers a handler's error for command name and tells how the
// command ended: result is "ok", "err" or "aborted", as CommandEvent.Result
// says, and end reports whether the connection must now be closed. An
// *Error is answered as it is; any other error is logged and answered
// errInternal, so that no detail reaches the client.
func (c *conn) reply(name string, err error) (result string, end bool) {
	if err == nil {
		return "ok", false
	}
	if errors.Is(err, errHangUp) {
		return "ok", true
	}
	var ab abortError
	if errors.As(err, &ab) {
		if errors.Is(err, errTruncated) {
			c.endAs(endUpstreamFailed)
		} else {
			c.log.Debug("connection closed", "err", ab.err)
			c.writeFailed(ab.err) // a read failure has set why already
		}
		return "aborted", true
	}
	var e *Error
	if !errors.As(err, &e) {
		c.log.Error(strings.ToLower(name)+" failed", "user", c.authUser, "err", err)
		e = errInternal
	}
	c.writeErr(e)
	var fe finalError
	if errors.As(err, &fe) {
		return "err", true
	}
	var pe protoError
	if errors.As(err, &pe) {
		return "err", c.tooManyBadCommands()
	}
	return "err", false
}

// tooManyBadCommands counts a protocol error and reports whether the
// connection must now be closed, having said why.
func (c *conn) tooManyBadCommands() bool {
	c.bad++
	if c.bad < maxBadCommands {
		return false
	}
	c.writeErr(&Error{Text: "Too many bad commands, closing connection"})
	c.log.Info("closing connection after too many bad commands")
	c.endAs(endBadCommands)
	return true
}
