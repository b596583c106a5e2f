package imapback

// How a session's snapshot uses the snapshot cache (cache.go). A device
// polls the same mailbox every few minutes and mostly nothing changed,
// yet a snapshot fetches UID and RFC822.SIZE of every message (and, for
// %g and %m, the identity or header of each). Within one UIDVALIDITY a
// UID names one message for ever, whose size, identity and header never
// change: only which UIDs are in the mailbox does. So a login that finds
// its mailbox cached asks the upstream for exactly that, and for the
// sizes of messages it has not seen:
//
//	UID FETCH <next>:* (UID RFC822.SIZE) mail that arrived since
//	UID SEARCH RETURN (ALL) ALL          every UID now in the mailbox
//
// both sent with the SELECT, so the warm login costs the round trips of
// a cold one, and read in that order. The FETCH goes first because
// go-imap's client keeps a reference to the commands that finished last
// (in the spare room of its list of pending commands): an idle session
// then holds the small SEARCH, not the FETCH with its channel of 128
// slots, some 1.6 KiB. ESEARCH (RFC 4731) answers the SEARCH in ranges: a line for
// a mailbox whose messages nobody deleted. The answer is the truth the
// snapshot is built from, numbered by rank (sequence numbers follow UID
// order): an expunged message is not in it, a new one is (and is fetched
// if the FETCH missed it), a replaced one has a new UID. A changed
// UIDVALIDITY makes the entry worthless: the snapshot is then taken in
// full. A view (device, age) runs its own UID SEARCH beside the one for
// ALL, and fetches only what the cache lacks of it.
//
// Why not CONDSTORE/QRESYNC (RFC 7162): HIGHESTMODSEQ moves with every
// flag change, the \Seen a RETR sets included, so it would call most
// polls a change; and go-imap's client cannot parse VANISHED, which a
// session that ENABLEd QRESYNC gets instead of every EXPUNGE, the
// responses this session relies on to tell expunged messages. The SEARCH
// needs no extension at all.
//
// The cache is read only after the upstream accepted the login, and its
// key holds the login name: no session ever sees another user's entry.

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// sessionCache is a session's use of the cache during its snapshot.
type sessionCache struct {
	snap *mailboxSnapshot // the cached entry, if usable so far
	// search is the UID SEARCH ALL sent with the SELECT, not yet read.
	search *imapclient.SearchCommand
	// all is every UID in the mailbox, ascending, when the SEARCH ran.
	all []imap.UID
	// fetched counts the messages whose size or UIDL material the
	// snapshot had to fetch.
	fetched int
	// distinct: the format's ids of every message of the snapshot, none
	// imported, were found distinct (makeUIDLs).
	distinct bool
	// fromSnap: the snapshot lists exactly the messages of snap, in its
	// order, and their UIDL material is read from snap when the UIDLs
	// are made, not copied out for each (uidlVars returned nil).
	fromSnap bool
}

// exact reports that the snapshot listed exactly the messages of the
// cached entry, all taken from it: the entry is still what the mailbox
// holds.
func (s *Session) exact() bool {
	old := s.cache.snap
	return old != nil && s.cache.fetched == 0 && len(s.msgs) == old.len()
}

// knownDistinct reports that the ids the format makes for the snapshot
// are known to be distinct from an earlier session: it listed the same
// messages with the same material and format.
func (s *Session) knownDistinct() bool {
	return s.exact() && s.cache.snap.distinctFor == s.b.opts.UIDL
}

// cacheKey is the key of the session's mailbox.
func (s *Session) cacheKey() cacheKey {
	return cacheKey{upstream: s.b.opts.Address, user: s.user, mailbox: s.mailbox}
}

// lookupCache finds the cached entry of s.mailbox, if any.
func (s *Session) lookupCache() {
	s.cache = sessionCache{snap: s.b.opts.SnapshotCache.get(s.cacheKey())}
}

// sendWarm sends the FETCH of new mail and the UID SEARCH for every
// UID, and returns the FETCH.
func (s *Session) sendWarm() *imapclient.FetchCommand {
	fetch := s.c.Fetch(imap.UIDSet{{Start: s.cache.snap.next(), Stop: 0}}, sizeItems())
	s.cache.search = s.c.UIDSearch(&imap.SearchCriteria{}, s.searchOptions())
	return fetch
}

// warmExpectation bounds the responses to a view's SEARCH, the SEARCH
// for every UID and the FETCH of new mail, in a mailbox of exists
// messages: as a snapshot's FETCH, and a SEARCH answered without ESEARCH
// as one long line.
func warmExpectation(exists uint32, b maildropBound) Expectation {
	e := snapshotExpectation(uint32(min(int64(exists), int64(b))))
	e.ResponseOctets = searchExpectation(exists, b).ResponseOctets
	return e
}

// fetchWarm is fetchView for a session that found its mailbox cached.
// sent is the FETCH of new mail sent with the SELECT, or nil.
func (s *Session) fetchWarm(sel *imap.SelectData, sent *imapclient.FetchCommand) ([]Message, []uint32, []UIDLVars, error) {
	snap := s.cache.snap
	limit := maildropBound(s.b.opts.MaxMessages)
	if snap.uidValidity != sel.UIDValidity {
		// Another mailbox now: what was sent for the old one is read and
		// dropped, and the snapshot taken in full.
		s.cache = sessionCache{}
		if sent != nil {
			if err := sent.Close(); ConnectionError(err) {
				return nil, nil, nil, s.upstreamErr(err)
			}
		}
		var none *imapclient.FetchCommand
		return s.fetchView(sel, &none)
	}
	crit := s.viewCriteria()
	s.bc.Expect(warmExpectation(sel.NumMessages, limit))
	var viewCmd *imapclient.SearchCommand
	if s.cache.search == nil {
		// Not sent with the SELECT: a view, a folder found under the
		// namespace, or a snapshot taken again after an EXPUNGE.
		if crit != nil {
			viewCmd = s.c.UIDSearch(crit, s.searchOptions())
		} else {
			sent = s.c.Fetch(imap.UIDSet{{Start: snap.next(), Stop: 0}}, sizeItems())
		}
		s.cache.search = s.c.UIDSearch(&imap.SearchCriteria{}, s.searchOptions())
	}
	search := s.cache.search
	s.cache.search = nil
	var fresh []Message
	var freshVars []UIDLVars
	if sent != nil {
		// Read first, as sent: its answers wait for the session in
		// go-imap's reader, the SEARCH's do not.
		var ferr error
		fresh, _, freshVars, ferr = s.fetchSizes(imap.UIDSet{{Start: snap.next(), Stop: 0}}, sent)
		if ConnectionError(ferr) {
			return nil, nil, nil, s.upstreamErr(ferr)
		}
		// A NO (a server that refuses a FETCH it finds nothing for):
		// what is missing is fetched below.
	}
	var view imap.UIDSet
	var err error
	if viewCmd != nil {
		view, err = searchResult(viewCmd)
	}
	all, aerr := searchResult(search)
	if err = cmp.Or(err, aerr); err != nil {
		return nil, nil, nil, s.upstreamErr(err)
	}
	// Both sets are counted before they are listed: an answer of
	// "1:4294967295" must not cost four billion slots.
	if err := cmp.Or(limit.checkUIDs(all), limit.checkUIDs(view)); err != nil {
		return nil, nil, nil, err
	}
	if s.cache.all, err = ascendingUIDs(all); err != nil {
		return nil, nil, nil, err
	}
	var want []imap.UID
	if crit != nil {
		if want, err = ascendingUIDs(view); err != nil {
			return nil, nil, nil, err
		}
	}
	return s.fromCache(snap, want, crit != nil, fresh, freshVars)
}

// fromCache builds the snapshot of the UIDs in s.cache.all (of those in
// want, for a view), numbered by their rank among all, with what snap
// and fresh (with its UIDL material freshVars, or nil) know of them;
// what neither knows is fetched.
func (s *Session) fromCache(snap *mailboxSnapshot, want []imap.UID, isView bool, fresh []Message, freshVars []UIDLVars) ([]Message, []uint32, []UIDLVars, error) {
	fetched := make(map[imap.UID]fetchedMsg, len(fresh))
	addFetched(fetched, fresh, freshVars)
	n := len(s.cache.all)
	if isView {
		n = len(want)
	}
	msgs, seqs := make([]Message, 0, n), make([]uint32, 0, n)
	// UIDL material only for a format that needs some, and not copied
	// out when every message is snap's in its order (fromSnap): else
	// vars stays nil, as uidlVars leaves it.
	var vars []UIDLVars
	var hexes string
	if needs := s.b.opts.UIDL.Needs(); needs.Identity || needs.HeaderHash {
		if !isView && slices.Equal(s.cache.all, snap.uids) {
			s.cache.fromSnap = true
		} else {
			vars, hexes = make([]UIDLVars, 0, n), snap.hexHashes()
		}
	}
	var missing imap.UIDSet
	// Both lists ascend: j walks want, k the cached UIDs, beside uid.
	j, k := 0, 0
	for i, uid := range s.cache.all {
		if isView {
			for j < len(want) && want[j] < uid {
				j++
			}
			if j == len(want) || want[j] != uid {
				continue
			}
		}
		m, v := Message{UID: uid, Size: -1}, UIDLVars{}
		for k < snap.len() && snap.uids[k] < uid {
			k++
		}
		if k < snap.len() && snap.uids[k] == uid {
			m.Size = snap.sizes[k]
			if vars != nil {
				v = snap.vars(k, hexes)
			}
		} else if f, ok := fetched[uid]; ok {
			m.Size, v = f.size, f.vars
			s.cache.fetched++
		} else {
			missing.AddNum(uid)
		}
		msgs, seqs = append(msgs, m), append(seqs, uint32(i+1))
		if vars != nil {
			vars = append(vars, v)
		}
	}
	if len(missing) == 0 {
		return msgs, seqs, vars, nil
	}
	got, _, gotVars, err := s.fetchSizes(missing, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	addFetched(fetched, got, gotVars)
	s.cache.fetched += len(got)
	// One not answered was expunged meanwhile: its EXPUNGE makes the
	// snapshot start again, and the message is left out until then.
	kept := 0
	for i := range msgs {
		if msgs[i].Size < 0 {
			f, ok := fetched[msgs[i].UID]
			if !ok {
				continue
			}
			msgs[i].Size = f.size
			if vars != nil {
				vars[i] = f.vars
			}
		}
		msgs[kept], seqs[kept] = msgs[i], seqs[i]
		if vars != nil {
			vars[kept] = vars[i]
		}
		kept++
	}
	if vars != nil {
		vars = vars[:kept]
	}
	return msgs[:kept], seqs[:kept], vars, nil
}

// fetchedMsg is what a FETCH of the snapshot's items told of a message.
type fetchedMsg struct {
	size int64
	vars UIDLVars
}

// addFetched adds msgs, with their UIDL material vars (or nil), to byUID.
func addFetched(byUID map[imap.UID]fetchedMsg, msgs []Message, vars []UIDLVars) {
	for i, m := range msgs {
		f := fetchedMsg{size: m.Size}
		if vars != nil {
			f.vars = vars[i]
		}
		byUID[m.UID] = f
	}
}

// ascendingUIDs lists the UIDs of set in ascending order. A UID named
// twice is a server bug, which would misnumber every message after it.
// set must have passed maildropBound.checkUIDs: its count is the room.
func ascendingUIDs(set imap.UIDSet) ([]imap.UID, error) {
	uids := make([]imap.UID, 0, countUIDs(set))
	for _, r := range set {
		lo, hi := min(r.Start, r.Stop), max(r.Start, r.Stop)
		for u := lo; ; u++ {
			uids = append(uids, u)
			if u == hi {
				break
			}
		}
	}
	slices.Sort(uids)
	for i := 1; i < len(uids); i++ {
		if uids[i] == uids[i-1] {
			return nil, fmt.Errorf("UID SEARCH named UID %d twice", uids[i])
		}
	}
	return uids, nil
}

// cacheOutcome says what the snapshot just taken owed to the cache.
func (s *Session) cacheOutcome() CacheOutcome {
	switch {
	case s.cache.snap == nil:
		return CacheMiss
	case s.cache.fetched > 0:
		return CachePartial
	}
	return CacheHit
}

// rememberSnapshot stores what the snapshot learnt: its messages with
// their UIDL material vars, and, from the cached entry, the messages
// still in the mailbox that a view left out. Then it reports the
// outcome.
func (s *Session) rememberSnapshot(uidValidity uint32, vars []UIDLVars) {
	cache := s.b.opts.SnapshotCache
	if cache == nil {
		return
	}
	s.storeSnapshot(uidValidity, vars)
	if o := s.b.opts.Observer; o != nil {
		o.SnapshotCache(s.cacheOutcome(), cache.Bytes())
	}
}

// storeSnapshot is rememberSnapshot without the report: LoadUIDLs
// stores again what it learnt of a snapshot already reported.
func (s *Session) storeSnapshot(uidValidity uint32, vars []UIDLVars) {
	cache := s.b.opts.SnapshotCache
	if cache == nil {
		return
	}
	if s.exact() {
		// Every message came from the entry, which holds no other: it
		// is still exact (and get marked it recently used).
		return
	}
	type known struct {
		size int64
		v    UIDLVars
	}
	byUID := make(map[imap.UID]known, len(s.msgs))
	if old := s.cache.snap; old != nil && s.viewCriteria() != nil {
		hexes := old.hexHashes()
		for _, uid := range s.cache.all {
			if k := old.find(uid); k >= 0 {
				byUID[uid] = known{old.sizes[k], old.vars(k, hexes)}
			}
		}
	}
	for i, m := range s.msgs {
		byUID[m.UID] = known{m.Size, varsAt(vars, i)}
	}
	uids := make([]imap.UID, 0, len(byUID))
	for uid := range byUID {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	snap := &mailboxSnapshot{uidValidity: uidValidity, uids: uids, sizes: make([]int64, len(uids))}
	needs := s.b.opts.UIDL.Needs()
	if needs.Identity {
		snap.ids = make([]string, len(uids))
	}
	if needs.HeaderHash {
		snap.hashes = make([]byte, hashLen*len(uids))
	}
	for i, uid := range uids {
		k := byUID[uid]
		snap.sizes[i] = k.size
		if snap.ids != nil {
			snap.ids[i] = k.v.Identity
		}
		if snap.hashes != nil {
			snap.setHash(i, k.v.HeaderHash)
		}
	}
	if s.cache.distinct && len(uids) == len(s.msgs) {
		snap.distinctFor = s.b.opts.UIDL
	}
	cache.put(s.cacheKey(), snap)
}
