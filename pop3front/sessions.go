// sessions.go holds what other goroutines may know of a connection: its
// session id, the status that Server.Sessions lists, and Kick, which
// closes a session without its UPDATE state. The connection's goroutine
// writes the status (publish); the others read it and close the
// connection, under the status's lock. Here too is the context of the
// call the connection is making (callContext), which a close cancels.

package pop3front

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SessionInfo describes one open session, as Server.Sessions lists it.
type SessionInfo struct {
	// ID is the session id that the session's log lines carry.
	ID string
	// User is the login name as the client sent it (with a device
	// suffix, if the Backend uses one); empty before the login.
	User string
	// Device is the device the session serves, when its Session is a
	// DeviceSession.
	Device string
	// RemoteAddr is the client, behind a PROXY protocol header if any.
	RemoteAddr net.Addr
	// Listener is the address of the listener that accepted it.
	Listener string
	TLS      bool
	// Since is when the connection was accepted.
	Since time.Time
	// State is "authorization", "transaction" or "update".
	State string
	// Sent is every byte queued for the client; Retrieved counts the
	// completed RETRs, Marked the messages marked deleted now. All three
	// are as of the end of the session's last command.
	Sent      int64
	Retrieved int
	Marked    int
}

// liveStatus is the part of a connection that other goroutines read.
type liveStatus struct {
	mu       sync.Mutex
	info     SessionInfo
	state    state
	closedBy string // endShutdown or endKicked, once the server closed it
	ended    bool   // the session ended by itself: a later close is no reason
	stopped  bool   // the connection was closed: no call may start
	// call cancels the context of the call under way (callContext).
	call context.CancelFunc
}

// publish copies what Sessions shows of c, from c's goroutine.
func (c *conn) publish() {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	var device string
	if d, ok := c.sess.(DeviceSession); ok {
		device = d.Device()
	}
	c.live.info = SessionInfo{ID: c.id, User: c.authUser, Device: device, RemoteAddr: c.remote, Listener: c.listener, TLS: c.isTLS(),
		Since: c.started, State: c.state.String(), Sent: c.queued(), Retrieved: c.nRetr, Marked: c.nDeleted}
	c.live.state = c.state
}

// enterUpdate moves c to the UPDATE state, unless the server closed it
// first: then it reports false, and nothing may change upstream.
func (c *conn) enterUpdate() bool {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	if c.live.closedBy != "" {
		return false
	}
	c.state = stateUpdate
	c.live.state = stateUpdate
	c.live.info.State = stateUpdate.String()
	return true
}

// closeBy closes c from another goroutine, for the reason why. A session
// in its UPDATE state is closed only by a shutdown, never by a kick, so
// that an UPDATE under way is not cut in the middle; closeBy reports
// whether it closed c.
func (c *conn) closeBy(why string) bool {
	c.live.mu.Lock()
	if why == endKicked && c.live.state == stateUpdate {
		c.live.mu.Unlock()
		return false
	}
	// Only the first close counts: a session already closing (kicked a
	// moment ago, or ending by itself) is not closed again by a second
	// kick, even while it is still listed.
	first := c.live.closedBy == "" && !c.live.ended
	if first {
		c.live.closedBy = why
	}
	c.live.mu.Unlock()
	c.raw.Close()
	c.stop()
	return first
}

// callContext returns the context of a call that ends with it (the
// login, a TLS handshake): it ends after timeout, when the call's cancel
// runs, or when the connection is closed. Calls run one at a time: on
// the connection's goroutine, or on the login's while that one waits.
// The context is not a child of c.ctx, as a context that ever had a
// child keeps the table of its children (some 400 octets) for as long
// as it lives: every idle session would hold one. (A RETR's stream may
// leave a read-ahead running after it, so Retrieve gets c.ctx itself.)
func (c *conn) callContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c.live.mu.Lock()
	if c.live.stopped {
		cancel()
	} else {
		c.live.call = cancel
	}
	c.live.mu.Unlock()
	return ctx, func() {
		c.live.mu.Lock()
		c.live.call = nil
		c.live.mu.Unlock()
		cancel()
	}
}

// stop cancels c.ctx and the context of the call under way.
func (c *conn) stop() {
	c.live.mu.Lock()
	c.live.stopped = true
	call := c.live.call
	c.live.mu.Unlock()
	c.cancel()
	if call != nil {
		call()
	}
}

// markEnded records that the session is ending by itself (before its last
// answer goes out), and returns why the server closed it before that, or
// "".
func (c *conn) markEnded() string {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	c.live.ended = true
	return c.live.closedBy
}

func (s state) String() string {
	switch s {
	case stateAuthorization:
		return "authorization"
	case stateTransaction:
		return "transaction"
	}
	return "update"
}

// Sessions returns the sessions open now, in no particular order: past
// their TLS handshake and the connection limits, and not ended yet.
func (s *Server) Sessions() []SessionInfo {
	var list []SessionInfo
	for _, c := range s.allConns() {
		c.live.mu.Lock()
		if c.live.info.ID != "" {
			list = append(list, c.live.info)
		}
		c.live.mu.Unlock()
	}
	return list
}

// Kick closes the session with this id without its UPDATE state: nothing
// marked deleted is removed. It reports whether it closed one; a session
// already in its UPDATE state is left to finish it.
func (s *Server) Kick(id string) bool {
	for _, c := range s.allConns() {
		if c.id == id {
			return c.closeBy(endKicked)
		}
	}
	return false
}

// KickUser kicks every session logged in as user (the login name as
// Sessions shows it) and returns how many it closed.
func (s *Server) KickUser(user string) int {
	n := 0
	for _, c := range s.allConns() {
		c.live.mu.Lock()
		match := c.live.info.User == user && user != ""
		c.live.mu.Unlock()
		if match && c.closeBy(endKicked) {
			n++
		}
	}
	return n
}

// Session ids are a random prefix, drawn once per process, and a counter:
// unique within the process, and unlikely to repeat across restarts.
var (
	sessionPrefix = newSessionPrefix()
	sessionCount  atomic.Uint64
)

func newSessionPrefix() string {
	var b [5]byte
	rand.Read(b[:])
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func newSessionID() string {
	return sessionPrefix + "-" + strconv.FormatUint(sessionCount.Add(1), 36)
}
