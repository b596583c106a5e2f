package imapback

// What a snapshot fetches for its UIDLs beyond UID and size: the
// identities of %g (through itemTap, rawfetch.go), and the header hashes
// of %m that the snapshot's own FETCH did not bring (it asks for the
// header beside the size), one UID FETCH each, both keyed by UID; and how
// the snapshot's UIDLs are made from them and from an imported UIDL map.

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// UIDLMap holds the unique-ids an old POP3 server gave messages that were
// since copied into the upstream mailbox (popbridge uidl import), so that
// POP3 clients moved to popbridge download none of them again.
type UIDLMap interface {
	// UIDLs returns user's imported unique-ids by UID for the mailbox
	// with the given UIDVALIDITY: nil when there are none, or when they
	// were made for another UIDVALIDITY.
	UIDLs(user string, uidValidity uint32) (map[imap.UID]string, error)
}

// ErrNoIdentity: the UIDL format has %g and the upstream offers no
// message identity. The error names what it would need.
var ErrNoIdentity = errors.New("upstream offers no message identity for %g (OBJECTID, X-GM-EXT-1 or Dovecot's X-GUID)")

// uidlVars fetches, for each message of msgs, what the UIDL format needs
// beyond UID and UIDVALIDITY and known does not hold (known: the snapshot
// cache's material, by index of msgs, or nil). A message missing from an
// answer (expunged meanwhile) gets empty values: the snapshot takes the
// expunge for a reason to fetch again. For a format that needs nothing
// more it returns nil, which varsAt reads as empty values for all.
// Header hashes that may wait (hashesLater) are left empty, for
// LoadUIDLs.
func (s *Session) uidlVars(msgs []Message, known []UIDLVars) ([]UIDLVars, error) {
	needs := s.b.opts.UIDL.Needs()
	if !needs.Identity && !needs.HeaderHash {
		return nil, nil
	}
	if s.cache.fromSnap {
		if s.cache.snap.complete(needs) {
			return nil, nil // makeUIDLs reads it from the entry
		}
		s.cache.fromSnap = false
		known = s.cache.snap.allVars()
	}
	vars := known
	if vars == nil {
		vars = make([]UIDLVars, len(msgs))
	}
	if len(msgs) == 0 {
		return vars, nil
	}
	var noID, noHash imap.UIDSet
	for i, m := range msgs {
		if needs.Identity && vars[i].Identity == "" {
			noID.AddNum(m.UID)
		}
		if needs.HeaderHash && vars[i].HeaderHash == "" && !s.hashesLater() {
			noHash.AddNum(m.UID)
		}
	}
	s.cache.fetched += uidCount(noID) + uidCount(noHash)
	if err := fillMissing(msgs, noID, s.fetchIdentities, func(i int, id string) { vars[i].Identity = id }); err != nil {
		return nil, err
	}
	if err := fillMissing(msgs, noHash, s.fetchHeaderHashes, func(i int, h string) { vars[i].HeaderHash = h }); err != nil {
		return nil, err
	}
	return vars, nil
}

// fillMissing fetches the values of the messages uids names, if any, and
// sets each one the upstream gave with set, by the message's index.
func fillMissing(msgs []Message, uids imap.UIDSet, fetch func(imap.UIDSet) (map[imap.UID]string, error), set func(i int, v string)) error {
	if len(uids) == 0 {
		return nil
	}
	got, err := fetch(uids)
	if err != nil {
		return err
	}
	for i, m := range msgs {
		if v, ok := got[m.UID]; ok {
			set(i, v)
		}
	}
	return nil
}

// identityItem names the FETCH item of the upstream's message identity:
// RFC 8474's EMAILID where OBJECTID is offered, Gmail's X-GM-MSGID, and
// otherwise Dovecot's X-GUID, which no capability announces.
func (s *Session) identityItem() string {
	caps := s.c.Caps()
	switch {
	case caps.Has("OBJECTID"):
		return "EMAILID"
	case caps.Has("X-GM-EXT-1"):
		return "X-GM-MSGID"
	}
	return "X-GUID"
}

func (s *Session) fetchIdentities(uids imap.UIDSet) (map[imap.UID]string, error) {
	item := s.identityItem()
	start := time.Now()
	s.bc.Expect(snapshotExpectation(uint32(len(uids))))
	ids, err := s.tap.fetch(uids, item, s.b.opts.CommandTimeout, s.nc, s.c.Closed())
	err = s.upstreamErr(err)
	s.observe("UID FETCH", start, err)
	if errors.Is(err, errRawRefused) {
		return nil, fmt.Errorf("%w: %w: %v", ErrMailbox, ErrNoIdentity, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: identities: %w", ErrUnavailable, err)
	}
	return ids, nil
}

// fetchHeaderHashesSlowly fetches BODY.PEEK[HEADER] of uids through
// go-imap and hashes each header as it streams in, however large: for
// the few headers fetchHeaderHashes leaves.
func (s *Session) fetchHeaderHashesSlowly(uids imap.UIDSet) (map[imap.UID]string, error) {
	start := time.Now()
	hashes := make(map[imap.UID]string)
	s.bc.Expect(snapshotExpectation(uint32(uidCount(uids))))
	cmd := s.c.Fetch(uids, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{headerSection}})
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		var hash string
		for item := m.Next(); item != nil; item = m.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataBodySection:
				h, err := hashSection(item)
				if err != nil {
					return nil, fmt.Errorf("%w: headers: %w", ErrUnavailable, s.headerFailed(start, err))
				}
				hash = cmp.Or(h, hash) // a section that is no header keeps one hashed
			}
		}
		if uid != 0 && hash != "" {
			hashes[uid] = hash
		}
	}
	err := s.upstreamErr(cmd.Close())
	s.observe("UID FETCH", start, err)
	if err != nil {
		return nil, fmt.Errorf("%w: headers: %w", ErrUnavailable, err)
	}
	return hashes, nil
}

// hashSection hashes a header as it streams in: none is held. A header
// answered NIL has no hash (""), nor has any other section an upstream
// answers with (BODY[TEXT], a part, a range): hashed, it would give the
// message a UIDL that the next session, answered properly, changes, and
// the POP3 client would download it again. go-imap discards the literal
// left unread.
func hashSection(item imapclient.FetchItemDataBodySection) (string, error) {
	sec := item.Section
	if item.Literal == nil || sec == nil || sec.Specifier != imap.PartSpecifierHeader ||
		len(sec.Part) > 0 || sec.Partial != nil || len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0 {
		return "", nil
	}
	return HeaderHash(item.Literal)
}

// headerFailed ends a FETCH whose header could not be hashed, as a read
// of its literal failed: go-imap's reader goroutine then owns the
// connection's buffer again, and reading on (the next item or closing
// the command, both of which discard what is left of the literal) would
// read the literal once more, racing with it. The connection is broken
// anyway: closing it ends the command.
func (s *Session) headerFailed(start time.Time, err error) error {
	s.nc.Close()
	s.observe("UID FETCH", start, err)
	return err
}

var defaultUIDL, _ = ParseUIDLFormat(DefaultUIDLFormat)

// varsAt is message i's UIDL material in vars, which uidlVars left nil
// when the format needs none.
func varsAt(vars []UIDLVars, i int) UIDLVars {
	if vars == nil {
		return UIDLVars{}
	}
	return vars[i]
}

// makeUIDLs sets the UIDLs of the snapshot's messages: an imported one
// where the map has it, the format's otherwise, then made distinct.
func (s *Session) makeUIDLs(vars []UIDLVars, uidValidity uint32) error {
	var imported map[imap.UID]string
	if m := s.b.opts.UIDLMap; m != nil {
		var err error
		if imported, err = m.UIDLs(s.user, uidValidity); err != nil {
			return fmt.Errorf("%w: uidl map: %w", ErrMailbox, err)
		}
	}
	needs := s.b.opts.UIDL.Needs()
	var hexes string
	if s.cache.fromSnap {
		hexes = s.cache.snap.hexHashes()
	}
	var stand []int // the messages given the default format's id instead
	for i, m := range s.msgs {
		if id, ok := imported[m.UID]; ok {
			s.msgs[i].UIDL = id
			continue
		}
		v := varsAt(vars, i)
		if s.cache.fromSnap {
			v = s.cache.snap.vars(i, hexes)
		}
		v.UID, v.UIDValidity = uint32(m.UID), uidValidity
		if needs.Identity && v.Identity == "" || needs.HeaderHash && v.HeaderHash == "" {
			// Not in the answer: expunged during the snapshot, or a
			// server that skipped it. The default format keeps the
			// message listed; dedupeUIDLs keeps the id distinct.
			s.logger().Warn("no identity or header hash for a message; its UIDL uses the default format", "uid", m.UID)
			s.msgs[i].UIDL = defaultUIDL.Format(v.UID, v.UIDValidity)
			stand = append(stand, i)
			continue
		}
		s.msgs[i].UIDL = s.b.opts.UIDL.FormatVars(v)
	}
	// A format's own ids may only collide with imported ones, or with
	// each other where it is not unique by itself; then they may still
	// be known distinct from the session that cached the material.
	if len(imported) == 0 && len(stand) == 0 && (s.b.opts.UIDL.unique || s.knownDistinct()) {
		s.cache.distinct = true
		return nil
	}
	// The stand-ins go last, so that one never changes another
	// message's id: the message with it is gone or will be fetched again.
	order := make([]int, 0, len(s.msgs))
	for i := range s.msgs {
		if _, found := slices.BinarySearch(stand, i); !found { // stand ascends
			order = append(order, i)
		}
	}
	order = append(order, stand...)
	ids := make([]string, len(order))
	for k, i := range order {
		ids[k] = s.msgs[i].UIDL
	}
	s.cache.distinct = !dedupeUIDLs(ids) && len(imported) == 0 && len(stand) == 0
	for k, i := range order {
		s.msgs[i].UIDL = ids[k]
	}
	return nil
}
