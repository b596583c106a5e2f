// backend.go holds the seam between the protocol and the mail store: the
// Backend and Session interfaces a store implements, and what they pass.

package pop3front

import (
	"context"
	"crypto/tls"
	"io"
	"iter"
	"log/slog"
	"net"
)

// Backend authenticates POP3 users and opens their maildrops. The server
// calls it once per successful authentication exchange.
type Backend interface {
	// Login checks the credentials and returns the user's maildrop, fixed
	// for the rest of the session. An *Error is sent to the client as it is
	// (use ErrAuthFailed for wrong credentials); any other error is logged
	// and answered as a temporary failure.
	Login(ctx context.Context, user, pass string, info ConnInfo) (Session, error)
}

// ConnInfo describes the client connection a login arrives on.
type ConnInfo struct {
	// RemoteAddr and LocalAddr are the client's address and the one it
	// connected to: behind a PROXY protocol header, the ones it named.
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	// Proxied reports that a PROXY protocol header named RemoteAddr and
	// LocalAddr (see ProxiedConn).
	Proxied bool
	// Listener is the address of the listener that accepted the
	// connection: the socket's own, whatever a PROXY header said.
	Listener net.Addr
	TLS      bool
	// TLSState is the client connection's TLS state when TLS is on.
	TLSState *tls.ConnectionState
	// LoginAttempt numbers this login on the connection: 1 plus the
	// logins refused before it for their credentials ([AUTH]).
	LoginAttempt int
	// Session is the id that every log line of the session carries.
	Session string
	// Logger is the server's logger with the session id and the client
	// address: a Backend that logs with it puts its lines beside the
	// connection's. Nil outside a connection.
	Logger *slog.Logger
}

// MessageInfo is one message of a maildrop snapshot.
type MessageInfo struct {
	// Size is the message size in octets, as LIST and STAT report it.
	Size int64
	// UID is the unique-id listing (UIDL) of the message: 1 to 70
	// characters in the range 0x21 to 0x7E, stable across sessions.
	UID string
	// Seen reports that the message was read before the session (IMAP's
	// \Seen): LAST starts from the highest such message, as Dovecot's
	// does. A backend that does not know leaves it false.
	Seen bool
}

// UpdateResult is what the UPDATE state did with the messages marked
// deleted. Those neither removed nor flagged were left as they were (a
// policy that keeps mail on the server).
type UpdateResult struct {
	// Removed counts the messages that left the mailbox: expunged, or
	// moved to another folder.
	Removed int
	// Flagged counts the messages still in the mailbox but marked as
	// deleted there (IMAP's \Deleted, or a per-device mark that hides
	// them from this maildrop), for another client or a later expunge.
	Flagged int
	// Expired counts the messages the backend added to the client's
	// deletes because their time on the server was up (ExpireSession);
	// Removed and Flagged count them too.
	Expired int
}

// Session is one authenticated user's maildrop. Messages are addressed by
// their index i into the slice returned by Messages (POP3 message number
// minus one). A Session is used by one goroutine at a time.
type Session interface {
	// Messages returns the snapshot taken at login. It never changes
	// during the session: POP3 message numbers are fixed (RFC 1939);
	// only an UIDLSession's LoadUIDLs fills in the UIDs.
	Messages() []MessageInfo

	// Retrieve opens message i. lines < 0 asks for the whole message;
	// lines >= 0 tells the backend that the caller will stop reading after
	// the header and that many body lines (TOP), so it may fetch less. The
	// caller cuts the message itself. An error from Read means the message
	// could not be read in full: the caller must not present what it got
	// as a complete message. ErrNoMessage means the message is gone. A
	// reader that is also an io.WriterTo is used as one for RETR, so that
	// the message is written from the backend's buffers without a copy;
	// its WriteTo must return the error of a failed read, like Read.
	Retrieve(ctx context.Context, i int, lines int) (io.ReadCloser, error)

	// Retrieved reports that message i was sent to the client in full by
	// RETR (not TOP), so that the backend can mark it as seen.
	Retrieved(i int)

	// Expunged reports whether message i is known to have been removed
	// from the maildrop by someone else since the snapshot.
	Expunged(i int) bool

	// Noop keeps the session alive and refreshes what Expunged knows.
	Noop(ctx context.Context) error

	// Commit runs the UPDATE state: it applies the backend's delete
	// policy to exactly the messages in deleted, and says what became of
	// them. It returns a nil error only when the upstream confirmed.
	Commit(ctx context.Context, deleted []int) (UpdateResult, error)

	// Close ends the session without removing anything.
	Close() error
}

// DeviceSession is a Session that serves one of the user's devices (a
// per-device view of the maildrop). Server.Sessions shows the device; a
// Session without the method has none.
type DeviceSession interface {
	Session
	// Device names the device, or is empty.
	Device() string
}

// UIDLSession is a Session whose unique-ids may be left out of the
// snapshot until they are asked for, because making them costs the store
// (hashing every message's header): MessageInfo.UID is empty until
// LoadUIDLs has succeeded.
type UIDLSession interface {
	Session
	// LoadUIDLs fills the UIDs of the slice Messages returns; it is
	// called before they are read, and may be called again after an
	// error (answered as any handler's) or a success (then it does
	// nothing).
	LoadUIDLs(ctx context.Context) error
}

// PipelinedSession is a Session that can use the RETR and TOP commands a
// pipelining client already sent behind the one that runs, to fetch their
// messages together.
type PipelinedSession interface {
	Session
	// SetUpcoming is called once, after Login. upcoming yields, in order,
	// the message index and line count (as Retrieve takes them: -1 for
	// RETR) of each RETR and TOP already received after the running
	// command, leaving out those that will fail as they stand. It never
	// blocks and consumes nothing; the session may call it only from
	// within Retrieve.
	SetUpcoming(upcoming iter.Seq2[int, int])
}
