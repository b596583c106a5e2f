package imapback

// The \Seen flags of retrieved messages: Retrieved collects them, and one
// UID STORE +FLAGS.SILENT (\Seen) goes out with the next upstream command,
// never waited for unless a FETCH of one of its messages follows (go-imap
// would hand that FETCH's answer to the STORE). Sent on its own, the STORE
// would cost popbridge a write and the upstream a read and a wake-up of
// their own, right before the command that follows it anyway: heldConn,
// between go-imap and the rest of the connection, keeps it back. The
// session's goroutine turns holding on around the STORE (go-imap writes a
// command from the calling goroutine and returns), and the next write,
// from whichever goroutine sends the next command, carries the held
// octets in front of its own. Whoever waits for the STORE's answer
// releases it first (waitSeen); a connection that breaks with the STORE
// held fails it, as it fails one sent and not answered, and the flags
// are sent again after the reconnect.
//
// A RETR's own FETCH does not carry them (beforeRetr): a client reading
// messages at random would otherwise cost the upstream a STORE, with its
// index transaction and, on maildir, its lock and re-scan, per message.
// They wait for the next upstream command that is not a RETR's (a TOP,
// NOOP, QUIT's UPDATE, the LOGOUT of a session that ends however it ends),
// for at most seenHold and seenHoldCount messages.

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Retrieved marks message i \Seen (unless configured not to). The STORE
// goes out with a later upstream command (see above) and nobody waits for
// it then, so that messages served from read-ahead cost no round trip each.
func (s *Session) Retrieved(i int) {
	switch s.pol.Seen {
	case SeenNever:
		return
	case SeenQuit:
		s.retrieved = append(s.retrieved, i)
		return
	}
	if len(s.toSee) == 0 {
		s.toSeeSince = time.Now()
	}
	s.toSee.AddNum(s.msgs[i].UID)
	s.toSeeCount++
}

// seenHold and seenHoldCount bound how long RETRs in a row keep \Seen
// flags back: a client reading for longer than that sees them set while
// it reads, and one STORE stays short.
const (
	seenHold      = time.Second
	seenHoldCount = 64
)

// beforeRetr is beforeFetch for a RETR's FETCH of uid, which leaves the
// pending \Seen flags for a later command within the bounds above.
func (s *Session) beforeRetr(uid imap.UID) {
	if len(s.toSee) == 0 || s.toSeeCount >= seenHoldCount || time.Since(s.toSeeSince) >= seenHold {
		s.beforeFetch(uid)
		return
	}
	if s.seen != nil && s.seenSet.Contains(uid) {
		s.waitSeen() // see beforeFetch
	}
}

// flushSeen sends one UID STORE +FLAGS.SILENT (\Seen) for the messages
// retrieved since the last one, without waiting for its answer. It goes
// out in one write with the next command (heldConn).
func (s *Session) flushSeen() {
	if len(s.toSee) == 0 {
		return
	}
	s.waitSeen()
	s.held.hold()
	s.seen = s.c.Store(s.toSee, &imap.StoreFlags{
		Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen},
	}, nil)
	s.held.unhold()
	s.seenSet, s.toSee, s.toSeeCount = s.toSee, nil, 0
}

// beforeFetch sends pending \Seen flags ahead of a FETCH of uids. go-imap
// hands a FETCH response to the first pending command whose UID set holds
// its UID, so a STORE still pending for one of uids would take the body
// meant for the FETCH: then the STORE is waited for first.
func (s *Session) beforeFetch(uids ...imap.UID) {
	s.flushSeen()
	if s.seen == nil {
		return
	}
	for _, uid := range uids {
		if s.seenSet.Contains(uid) {
			s.waitSeen()
			return
		}
	}
}

// settle sends and waits for pending \Seen STOREs. Their failure is
// logged, not returned: the message was delivered, only the flag is
// missing.
func (s *Session) settle() {
	s.flushSeen()
	s.waitSeen()
}

// guardSettled is guard for a FETCH whose answers a \Seen STORE still
// pending would take (it names the same UIDs): the STORE goes first.
func (s *Session) guardSettled(ctx context.Context) (func(), error) {
	done, err := s.guard(ctx)
	if err == nil {
		s.settle()
	}
	return done, err
}

func (s *Session) waitSeen() {
	if s.seen == nil {
		return
	}
	s.held.release() // a write error fails the STORE too
	if err := s.seen.Close(); err != nil {
		s.logger().Warn("setting \\Seen failed", "err", err)
	}
	s.seen = nil
}

type heldConn struct {
	net.Conn

	mu      sync.Mutex
	holding bool   // writes go to held
	held    []byte // written while holding, not sent yet
}

// hold starts keeping writes back; unhold ends that, leaving what was
// written for the next write or release.
func (c *heldConn) hold() { c.setHolding(true) }

func (c *heldConn) unhold() { c.setHolding(false) }

func (c *heldConn) setHolding(on bool) {
	c.mu.Lock()
	c.holding = on
	c.mu.Unlock()
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	held := len(c.held)
	n, err := c.Conn.Write(append(c.held, p...))
	c.reset()
	return max(n-held, 0), err
}

// reset empties held, keeping a small buffer for the next STORE.
func (c *heldConn) reset() {
	c.held = c.held[:0]
	if cap(c.held) > 1<<10 {
		c.held = nil
	}
}

// release sends what is held now.
func (c *heldConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.reset()
	return err
}
