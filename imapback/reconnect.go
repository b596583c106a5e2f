package imapback

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Reconnecting. IMAP servers close idle connections (Dovecot after 30
// minutes, with "* BYE Disconnected for inactivity"), NAT boxes and load
// balancers drop them silently, and a command that timed out leaves its
// connection closed. A POP3 client that then sends its next command should
// not lose its session: before each upstream command a session whose
// connection is closed logs in again, selects the mailbox and checks that
// its snapshot still holds: the same UIDVALIDITY, so that its UIDs still
// name the same messages. Messages expunged meanwhile are marked gone, as
// if their EXPUNGE had been seen. If the UIDVALIDITY changed (the mailbox
// was recreated), the snapshot means nothing any more: every later
// command fails with ErrUnavailable, and QUIT deletes nothing.
//
// The price is that the session keeps the user's password (or OAuth2
// token source, which is asked again for every reconnect) in memory for
// its lifetime (bounded by the POP3 idle timeout), where it would otherwise
// be dropped after the login. It is never logged. Options.NoReconnect
// turns reconnecting off; a lost connection then fails every later
// command.
//
// A command whose connection breaks while it runs still fails: its effect
// upstream is unknown (a RETR may be half sent), so only the next command
// reconnects.

// maxReconnects bounds the reconnects of one session, so a flapping
// upstream cannot keep a session logging in forever.
const maxReconnects = 5

// reconnectState is what a session needs to log in again.
type reconnectState struct {
	cr          Credentials // zero when reconnecting is off
	on          bool
	uidValidity uint32
	count       int
	broken      error // set once the snapshot cannot be served any more
}

// rememberLogin keeps the credentials for reconnects, unless configured
// not to.
func (s *Session) rememberLogin(cr Credentials) {
	if s.b.opts.NoReconnect {
		return
	}
	s.rc.cr, s.rc.on = cr, true
}

// closed reports whether the upstream connection has ended.
func (s *Session) closed() bool {
	select {
	case <-s.c.Closed():
		return true
	default:
		return false
	}
}

// revive reconnects a session whose upstream connection has closed. It
// returns nil at once when the connection is open.
func (s *Session) revive(ctx context.Context) error {
	if s.rc.broken != nil {
		return s.rc.broken
	}
	if !s.closed() {
		return nil
	}
	// A \Seen STORE that was pending on the old connection is sent
	// again on the new one, with those not sent yet.
	if s.seen != nil {
		if err := s.seen.Close(); err != nil {
			s.toSee.AddSet(s.seenSet)
		}
		s.seen, s.seenSet = nil, nil
	}
	s.c.Close()
	if !s.rc.on {
		return fmt.Errorf("%w: upstream connection lost", ErrUnavailable)
	}
	if s.rc.count >= maxReconnects {
		s.rc.broken = fmt.Errorf("%w: upstream connection lost %d times in one session", ErrUnavailable, s.rc.count)
		return s.rc.broken
	}
	s.rc.count++
	s.logger().Info("upstream connection lost, reconnecting", "attempt", s.rc.count)
	o := &s.b.opts
	// A fresh token for every login: the one of the first login may
	// have expired meanwhile.
	token, err := s.b.token(ctx, s.rc.cr)
	if err != nil {
		// Mid-session this is an upstream failure like any other;
		// ErrToken and the source's error stay visible to errors.Is.
		return fmt.Errorf("%w: reconnect: %w", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout+2*o.CommandTimeout)
	defer cancel()
	if err := s.connect(ctx); err != nil {
		return fmt.Errorf("%w: reconnect: %v", ErrUnavailable, err)
	}
	defer context.AfterFunc(ctx, func() { s.nc.Close() })()
	err = s.reselect(token)
	if err != nil {
		s.c.Close()
		var broken *snapshotInvalid
		if errors.As(err, &broken) {
			s.rc.broken = fmt.Errorf("%w: %v", ErrUnavailable, err)
			s.logger().Warn("snapshot no longer valid after reconnect, ending the session", "err", err)
			return s.rc.broken
		}
		return fmt.Errorf("%w: reconnect: %v", ErrUnavailable, err)
	}
	return nil
}

// snapshotInvalid says the upstream mailbox is no longer the one the
// snapshot was taken of.
type snapshotInvalid struct{ was, now uint32 }

func (e *snapshotInvalid) Error() string {
	return fmt.Sprintf("UIDVALIDITY changed from %d to %d", e.was, e.now)
}

// reselect logs in on the new connection, selects the mailbox and maps
// the snapshot onto it.
func (s *Session) reselect(token string) error {
	if err := s.authenticate(s.rc.cr, token); err != nil {
		// A changed password or a locked account ends the session too,
		// but as an upstream failure: the POP3 login had succeeded.
		return err
	}
	sel, err := s.c.Select(s.mailbox, nil).Wait()
	if err != nil {
		return fmt.Errorf("SELECT: %v", err)
	}
	if sel.UIDValidity != s.rc.uidValidity {
		return &snapshotInvalid{s.rc.uidValidity, sel.UIDValidity}
	}
	// EXPUNGEs that arrive before the new map is in place would be
	// numbered against the old one: ignore them (an empty seq does) and
	// map again if any came.
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		s.seq = nil
		before := s.expunges
		s.mu.Unlock()
		got, err := s.snapshotSeqs()
		if err != nil {
			return err
		}
		x, present, err := remapSeqIndex(s.msgs, got)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.expunges == before || attempt == 3 {
			s.seq = x
			for i := range s.msgs {
				if !present[i] {
					s.gone[i] = true
				}
			}
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
	}
}

// snapshotSeqs asks for the sequence numbers of the snapshot's messages
// still in the mailbox: one answer each, whatever the mailbox holds
// besides.
func (s *Session) snapshotSeqs() ([]seqUID, error) {
	if len(s.msgs) == 0 {
		return nil, nil
	}
	var uids imap.UIDSet
	for _, m := range s.msgs {
		uids.AddNum(m.UID)
	}
	limit := maildropBound(s.b.opts.MaxMessages)
	s.bc.Expect(snapshotExpectation(uint32(len(s.msgs))))
	cmd := s.c.Fetch(uids, &imap.FetchOptions{UID: true})
	var got []seqUID
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		for item := m.Next(); item != nil; item = m.Next() {
			if u, ok := item.(imapclient.FetchItemDataUID); ok {
				uid = u.UID
			}
		}
		got = append(got, seqUID{seq: m.SeqNum, uid: uid})
		if err := limit.checkFetched(len(got)); err != nil {
			s.nc.Close()
			cmd.Close()
			return nil, err
		}
	}
	if err := s.upstreamErr(cmd.Close()); err != nil {
		return nil, fmt.Errorf("UID FETCH (UID): %v", err)
	}
	return got, nil
}
