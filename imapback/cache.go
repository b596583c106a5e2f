package imapback

// The snapshot cache: what earlier sessions learnt of a mailbox (each
// message's UID, RFC822.SIZE and UIDL material), kept in memory under a
// bound in bytes, least recently used first out. SnapshotCache owns its
// entries; an entry, once stored, is never changed (a session that learns
// more stores a new one), so sessions read entries without a lock.
// cachesnap.go says how a session uses it.

import (
	"container/list"
	"encoding/hex"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/emersion/go-imap/v2"
)

// DefaultSnapshotCacheBytes is the bound of the snapshot cache a
// configuration gets unless it says otherwise: a 10,000-message mailbox
// takes about 120 KB with the default UIDL format, 320 KB with %m.
const DefaultSnapshotCacheBytes = 64 << 20

// CacheOutcome says what a login's snapshot took from the cache.
type CacheOutcome string

// Cache outcomes, reported to Observer.SnapshotCache.
const (
	// CacheHit: every message of the snapshot came from the cache; the
	// upstream only named the UIDs in the mailbox.
	CacheHit CacheOutcome = "hit"
	// CachePartial: the cache held some messages; sizes or UIDL material
	// of the others (new mail) were fetched.
	CachePartial CacheOutcome = "partial"
	// CacheMiss: nothing cached for the mailbox, or its UIDVALIDITY
	// changed: a full snapshot.
	CacheMiss CacheOutcome = "miss"
)

// SnapshotCache keeps snapshots of mailboxes for the sessions of every
// Backend given it (Options.SnapshotCache), bounded in bytes. It is only
// a cache: each replica of popbridge has its own, and a session never
// serves from it anything that the upstream did not confirm (cachesnap.go).
// Safe for concurrent use.
type SnapshotCache struct {
	max  int64
	used atomic.Int64

	mu      sync.Mutex
	lru     list.List // of *cacheEntry, most recently used first
	entries map[cacheKey]*list.Element
}

// NewSnapshotCache returns a cache bounded by maxBytes, or nil (no
// cache) when maxBytes is 0 or less.
func NewSnapshotCache(maxBytes int64) *SnapshotCache {
	if maxBytes <= 0 {
		return nil
	}
	return &SnapshotCache{max: maxBytes, entries: make(map[cacheKey]*list.Element)}
}

// Resized returns a cache bounded by maxBytes with what c holds, so that
// a reloaded configuration keeps what sessions learnt: c itself when its
// bound is maxBytes already, else a new cache with c's most recently used
// entries that fit (entries are never changed, so both may hold one), or
// nil when maxBytes is 0 or less. c may be nil; it is left as it was, for
// the sessions that still use it.
func (c *SnapshotCache) Resized(maxBytes int64) *SnapshotCache {
	if c == nil || maxBytes <= 0 {
		return NewSnapshotCache(maxBytes)
	}
	if c.max == maxBytes {
		return c
	}
	n := NewSnapshotCache(maxBytes)
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*cacheEntry)
		n.put(e.key, e.snap) // oldest first: a smaller bound evicts those
	}
	return n
}

// cacheKey names a mailbox: the upstream's address, the login name the
// upstream accepted and the mailbox name as selected. Different users
// never share an entry, whatever their mailboxes hold.
type cacheKey struct {
	upstream, user, mailbox string
}

type cacheEntry struct {
	key  cacheKey
	snap *mailboxSnapshot
}

// mailboxSnapshot is what is known of the messages of one mailbox with
// one UIDVALIDITY. Within it a UID names one message for ever, whose
// size and header never change: so whatever the upstream still lists
// may be served from here. Flags are not kept; no snapshot needs them.
type mailboxSnapshot struct {
	uidValidity uint32
	uids        []imap.UID // ascending
	sizes       []int64
	// ids are the %g identities: nil when none is known, else "" where
	// one is not.
	ids []string
	// hashes are the %m header hashes, hashLen octets each, decoded
	// from HeaderHash's hex (a third of the memory of the strings): nil
	// when none is known, else all zero where one is not.
	hashes []byte
	// distinctFor is the UIDL format, if any, whose ids made from this
	// material for every message (none imported) are all distinct: a
	// session with that format that lists exactly these messages needs
	// no dedupeUIDLs.
	distinctFor *UIDLFormat
}

// hashLen is the length of a decoded header hash.
const hashLen = 20

// setHash stores message i's header hash h, unless h is not the hex
// HeaderHash makes (it then stays unknown, and is fetched again).
func (m *mailboxSnapshot) setHash(i int, h string) {
	d, err := hex.DecodeString(h)
	if err != nil || len(d) != hashLen || hex.EncodeToString(d) != h {
		return
	}
	copy(m.hashes[i*hashLen:], d)
}

// len returns the number of messages.
func (m *mailboxSnapshot) len() int { return len(m.uids) }

// find returns the index of uid, or -1.
func (m *mailboxSnapshot) find(uid imap.UID) int {
	if i, ok := slices.BinarySearch(m.uids, uid); ok {
		return i
	}
	return -1
}

// next is the lowest UID above every cached one: where new mail starts.
func (m *mailboxSnapshot) next() imap.UID {
	if len(m.uids) == 0 {
		return 1
	}
	return m.uids[len(m.uids)-1] + 1
}

// hexHashes returns the header hashes in hex, 2*hashLen digits each, all
// in one string: a snapshot of 10,000 messages makes one string for
// their vars, not 10,000 ("" when no hash is known).
func (m *mailboxSnapshot) hexHashes() string {
	if m.hashes == nil {
		return ""
	}
	return hex.EncodeToString(m.hashes)
}

// vars returns message i's UIDL material; hexes is m.hexHashes().
func (m *mailboxSnapshot) vars(i int, hexes string) UIDLVars {
	var v UIDLVars
	if m.ids != nil {
		v.Identity = m.ids[i]
	}
	if m.hashes != nil {
		if h := m.hashes[i*hashLen : (i+1)*hashLen]; slices.ContainsFunc(h, func(b byte) bool { return b != 0 }) {
			v.HeaderHash = hexes[2*i*hashLen : 2*(i+1)*hashLen]
		}
	}
	return v
}

// complete reports that the entry knows the material needs names of
// every message.
func (m *mailboxSnapshot) complete(needs UIDLNeeds) bool {
	if needs.Identity && (m.ids == nil || slices.Contains(m.ids, "")) {
		return false
	}
	if needs.HeaderHash {
		if m.hashes == nil {
			return false
		}
		for i := range m.len() {
			if !slices.ContainsFunc(m.hashes[i*hashLen:(i+1)*hashLen], func(b byte) bool { return b != 0 }) {
				return false
			}
		}
	}
	return true
}

// allVars returns the UIDL material of every message.
func (m *mailboxSnapshot) allVars() []UIDLVars {
	hexes := m.hexHashes()
	vars := make([]UIDLVars, m.len())
	for i := range vars {
		vars[i] = m.vars(i, hexes)
	}
	return vars
}

// Sizes of the parts of an entry, for the byte count.
const (
	entryOverhead = int64(unsafe.Sizeof(cacheEntry{})+unsafe.Sizeof(mailboxSnapshot{})+
		unsafe.Sizeof(list.Element{})) + 64 // the map slot
	stringOverhead = int64(unsafe.Sizeof(""))
)

// bytes is the memory the entry of key holding m takes.
func (m *mailboxSnapshot) bytes(key cacheKey) int64 {
	n := entryOverhead + int64(len(key.upstream)+len(key.user)+len(key.mailbox))
	n += int64(cap(m.uids))*int64(unsafe.Sizeof(imap.UID(0))) + int64(cap(m.sizes))*8 + int64(cap(m.hashes))
	n += int64(cap(m.ids)) * stringOverhead
	for _, s := range m.ids {
		n += allocSize(len(s))
	}
	return n
}

// allocSize is about what the allocator takes for n octets: small
// objects come in size classes, 8 apart up to 32 and 16 apart to 256.
func allocSize(n int) int64 {
	switch {
	case n == 0:
		return 0
	case n <= 32:
		return int64(n+7) &^ 7
	case n <= 256:
		return int64(n+15) &^ 15
	}
	return int64(n+31) &^ 31
}

// get returns the snapshot of key and marks it recently used, or nil.
func (c *SnapshotCache) get(key cacheKey) *mailboxSnapshot {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.entries[key]
	if el == nil {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).snap
}

// put stores m as the snapshot of key, replacing any before it, and
// evicts the least recently used entries until the cache fits its
// bound. A snapshot larger than the whole bound is not stored.
func (c *SnapshotCache) put(key cacheKey, m *mailboxSnapshot) {
	if c == nil {
		return
	}
	size := m.bytes(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(key)
	if size > c.max {
		return
	}
	for c.used.Load()+size > c.max {
		c.removeLocked(c.lru.Back().Value.(*cacheEntry).key)
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, snap: m})
	c.used.Add(size)
}

// drop forgets the snapshot of key.
func (c *SnapshotCache) drop(key cacheKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(key)
}

func (c *SnapshotCache) removeLocked(key cacheKey) {
	el := c.entries[key]
	if el == nil {
		return
	}
	e := el.Value.(*cacheEntry)
	c.used.Add(-e.snap.bytes(e.key))
	c.lru.Remove(el)
	delete(c.entries, key)
}

// Bytes returns the memory the cached snapshots take, as counted
// against the bound.
func (c *SnapshotCache) Bytes() int64 {
	if c == nil {
		return 0
	}
	return c.used.Load()
}

// Len returns the number of cached mailboxes.
func (c *SnapshotCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
