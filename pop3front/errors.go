package pop3front

import "errors"

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
