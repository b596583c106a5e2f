package imapback

// UIDLs whose header hashes (%m) are read on first need, not at login.
// Dovecot's own POP3 computes them when the client sends UIDL; a scanner
// that only runs STAT, LIST, RETR and DELE never needs them, and reading
// every message's header at login makes the upstream open every message
// file. So a cold %m login fetches UID and size alone, and the first
// LoadUIDLs (the UIDL command) fetches the headers the snapshot lacks in
// one UID FETCH, then makes the UIDLs as the login would have, and stores
// the hashes in the snapshot cache, so that the next login is warm.
//
// The session takes the hashes at login as before when something needs
// the UIDLs then: retention (its stamps are keyed by UIDL), a caller that
// asked for them (Options.UIDLsAtLogin), or a cache entry that holds
// every hash already, which costs nothing.
//
// A message expunged by another client between the login and the fetch
// has no header to hash: it keeps its place and gets the default
// format's UIDL, as a message expunged during a login's fetch does, and
// makeUIDLs lets it yield to every other message's id, so that it never
// changes another's. Another message with an equal header then keeps
// the plain id that the next session gives it too.

import (
	"context"
	"log/slog"
	"time"

	"github.com/emersion/go-imap/v2"
)

// lazyUIDLs is what a snapshot whose UIDLs wait for their header hashes
// keeps to make them later.
type lazyUIDLs struct {
	vars        []UIDLVars // by message index; HeaderHash "" where missing
	uidValidity uint32
}

// hashesLater reports whether the snapshot leaves the header hashes its
// format needs for the first LoadUIDLs.
func (s *Session) hashesLater() bool {
	return s.b.opts.UIDL.Needs().HeaderHash && !s.b.opts.UIDLsAtLogin && s.pol.RetentionDays <= 0
}

// deferUIDLs keeps vars for LoadUIDLs when some hash is missing from
// them, and reports whether it did; the UIDLs stay empty until then.
func (s *Session) deferUIDLs(vars []UIDLVars, uidValidity uint32) bool {
	if !s.hashesLater() || vars == nil {
		return false // nil: all in the cache entry (fromSnap)
	}
	for _, v := range vars {
		if v.HeaderHash == "" {
			s.lazy = &lazyUIDLs{vars: vars, uidValidity: uidValidity}
			return true
		}
	}
	return false
}

// LoadUIDLs makes the UIDLs of a snapshot taken without the header
// hashes: one UID FETCH of the headers of the messages not known
// expunged, under the bounds and deadline of any command. Messages
// returns them afterwards. It does nothing when the UIDLs are made
// already; after an error it may be called again.
func (s *Session) LoadUIDLs(ctx context.Context) error {
	if s.lazy == nil {
		return nil
	}
	done, err := s.guardSettled(ctx)
	defer done()
	if err != nil {
		return err
	}
	vars := s.lazy.vars
	var missing imap.UIDSet
	for i, m := range s.msgs {
		if vars[i].HeaderHash == "" && !s.Expunged(i) {
			missing.AddNum(m.UID)
		}
	}
	n := uidCount(missing)
	start := time.Now()
	if err := fillMissing(s.msgs, missing, s.fetchHeaderHashes, func(i int, h string) { vars[i].HeaderHash = h }); err != nil {
		return err
	}
	s.cache.fetched += n
	if err := s.makeUIDLs(vars, s.lazy.uidValidity); err != nil {
		return err
	}
	if s.b.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		s.logger().Debug("header hashes fetched for UIDL", "messages", n, "took", time.Since(start))
	}
	s.storeSnapshot(s.lazy.uidValidity, vars)
	s.lazy = nil
	return nil
}
