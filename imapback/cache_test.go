package imapback

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// testSnapshot is a snapshot of n messages, with header hashes if hashes.
func testSnapshot(n int, hashes bool) *mailboxSnapshot {
	m := &mailboxSnapshot{uidValidity: 7, uids: make([]imap.UID, n), sizes: make([]int64, n)}
	if hashes {
		m.hashes = make([]byte, hashLen*n)
	}
	for i := range n {
		m.uids[i], m.sizes[i] = imap.UID(i+1), int64(1000+i)
		if hashes {
			m.setHash(i, fmt.Sprintf("%040x", i+1))
		}
	}
	return m
}

func key(user string) cacheKey { return cacheKey{"imap.example.org:993", user, "INBOX"} }

// The byte count follows every put, replace and eviction, and the least
// recently used entry goes first.
func TestSnapshotCacheLRU(t *testing.T) {
	one := testSnapshot(100, false).bytes(key("a"))
	c := NewSnapshotCache(3 * one)
	for _, u := range []string{"a", "b", "c"} {
		c.put(key(u), testSnapshot(100, false))
	}
	if c.Bytes() != 3*one || c.Len() != 3 {
		t.Fatalf("3 entries: %d bytes, %d entries; want %d, 3", c.Bytes(), c.Len(), 3*one)
	}
	c.get(key("a")) // b is now the oldest
	c.put(key("d"), testSnapshot(100, false))
	if c.get(key("b")) != nil || c.get(key("a")) == nil || c.get(key("d")) == nil {
		t.Errorf("after a fourth entry: b should be gone, a and d kept")
	}
	if c.Bytes() != 3*one {
		t.Errorf("%d bytes, want %d", c.Bytes(), 3*one)
	}
	// Replacing an entry counts only the new one.
	c.put(key("a"), testSnapshot(10, false))
	small := testSnapshot(10, false).bytes(key("a"))
	if c.Bytes() != 2*one+small {
		t.Errorf("after a replace: %d bytes, want %d", c.Bytes(), 2*one+small)
	}
	// A larger one evicts as many as it needs.
	c.put(key("e"), testSnapshot(250, false))
	if c.Bytes() > 3*one || c.get(key("e")) == nil {
		t.Errorf("after a large entry: %d bytes (bound %d), entry kept: %v", c.Bytes(), 3*one, c.get(key("e")) != nil)
	}
	// One larger than the bound is not kept, and its old value goes.
	c.put(key("e"), testSnapshot(1000, false))
	if c.get(key("e")) != nil {
		t.Error("an entry larger than the bound was kept")
	}
	c.drop(key("a"))
	c.drop(key("c"))
	c.drop(key("d"))
	if c.Bytes() != 0 || c.Len() != 0 {
		t.Errorf("emptied: %d bytes, %d entries", c.Bytes(), c.Len())
	}
}

func TestSnapshotCacheOff(t *testing.T) {
	c := NewSnapshotCache(0)
	if c != nil {
		t.Fatal("a cache of 0 bytes should be none")
	}
	c.put(key("a"), testSnapshot(1, false)) // a nil cache takes nothing
	if c.get(key("a")) != nil || c.Bytes() != 0 {
		t.Error("a nil cache returned something")
	}
}

// Users never share an entry, and the byte count stays exact under
// concurrent sessions (run with -race).
func TestSnapshotCacheConcurrent(t *testing.T) {
	c := NewSnapshotCache(20 * testSnapshot(50, true).bytes(key("user00")))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				u := fmt.Sprintf("user%02d", (g*7+i)%30)
				snap := testSnapshot(50, true)
				snap.uidValidity = uint32(len(u))
				snap.ids = make([]string, 50)
				snap.ids[0] = u
				c.put(key(u), snap)
				if got := c.get(key(u)); got != nil && got.ids[0] != u {
					t.Errorf("%s got the entry of %s", u, got.ids[0])
					return
				}
			}
		})
	}
	wg.Wait()
	var sum int64
	c.mu.Lock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*cacheEntry)
		sum += e.snap.bytes(e.key)
	}
	c.mu.Unlock()
	if sum != c.Bytes() || sum > c.max {
		t.Errorf("entries take %d bytes, counted %d, bound %d", sum, c.Bytes(), c.max)
	}
}

// The count is the memory the entries really take: measured for a
// 10,000-message mailbox, with the default format, %m and %g. The
// figures are those docs/operations.md states.
func TestSnapshotCacheMemoryPer10000(t *testing.T) {
	for _, format := range []string{DefaultUIDLFormat, "%m", "%g"} {
		hashes := format == "%m"
		const mailboxes = 20
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := NewSnapshotCache(1 << 30)
		for i := range mailboxes {
			snap := testSnapshot(10_000, hashes)
			if format == "%g" { // Cyrus's EMAILIDs: M and 24 hex digits
				snap.ids = make([]string, 10_000)
				for k := range snap.ids {
					snap.ids[k] = fmt.Sprintf("M%024x", i*10_000+k)
				}
			}
			c.put(key(fmt.Sprint(i)), snap)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := int64(after.HeapAlloc-before.HeapAlloc) / mailboxes
		counted := c.Bytes() / mailboxes
		t.Logf("10,000 messages, %s: %d bytes counted, %d on the heap", format, counted, heap)
		if heap > counted*11/10 || heap < counted*8/10 {
			t.Errorf("%s: counted %d bytes per mailbox, the heap grew by %d", format, counted, heap)
		}
		if max := map[string]int64{DefaultUIDLFormat: 130_000, "%m": 330_000, "%g": 610_000}[format]; counted > max {
			t.Errorf("%s: %d bytes per 10,000-message mailbox, more than the %d documented", format, counted, max)
		}
		runtime.KeepAlive(c)
	}
}

// A header hash goes in decoded and comes out as it was; one that is
// not HeaderHash's hex stays unknown.
func TestSnapshotCacheHashes(t *testing.T) {
	m := testSnapshot(3, true)
	h := "0123456789abcdef0123456789abcdef01234567"
	m.setHash(1, h)
	m.setHash(2, "0123456789ABCDEF0123456789ABCDEF01234567")
	if got := m.vars(1, m.hexHashes()).HeaderHash; got != h {
		t.Errorf("hash %q came back as %q", h, got)
	}
	if got := m.vars(2, m.hexHashes()).HeaderHash; got != fmt.Sprintf("%040x", 3) {
		t.Errorf("an upper-case hash replaced the stored one: %q", got)
	}
	m.hashes = make([]byte, hashLen*3)
	if got := m.vars(0, m.hexHashes()).HeaderHash; got != "" {
		t.Errorf("unknown hash = %q", got)
	}
}

func TestAscendingUIDs(t *testing.T) {
	for _, tc := range []struct {
		set  imap.UIDSet
		want string
		err  bool
	}{
		{nil, "[]", false},
		{imap.UIDSet{{Start: 3, Stop: 5}, {Start: 1, Stop: 1}}, "[1 3 4 5]", false},
		{imap.UIDSet{{Start: 5, Stop: 3}}, "[3 4 5]", false},
		{imap.UIDSet{{Start: 4294967295, Stop: 4294967295}}, "[4294967295]", false},
		{imap.UIDSet{{Start: 1, Stop: 3}, {Start: 3, Stop: 4}}, "", true},
	} {
		got, err := ascendingUIDs(tc.set)
		if (err != nil) != tc.err || !tc.err && fmt.Sprint(got) != tc.want {
			t.Errorf("ascendingUIDs(%v) = %v, %v; want %s, error %v", tc.set, got, err, tc.want, tc.err)
		}
	}
}

// A mailbox whose every message the cache holds costs, warm, a FETCH of
// what is above the last cached UID and one UID SEARCH, in that order
// (the one that finished last is what go-imap keeps): no FETCH of sizes
// or headers for the cached messages.
func TestSnapshotCacheCommands(t *testing.T) {
	srv := startMem(t, mail(1), mail(2), mail(3))
	u := tapUpstream(t, srv.Addr)
	p := newCachedPair(t, Options{Address: u.Addr, UIDL: uidlFormat(t, "%m")})
	p.check(t, "first", CacheMiss, Policy{}).Close()
	cold := len(u.sent.String())
	p.check(t, "warm", CacheHit, Policy{}).Close()
	var warm []string
	for _, line := range strings.Split(u.sent.String()[cold:], "\r\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "UID" {
			warm = append(warm, strings.Join(f[1:], " "))
		}
	}
	// The fresh login's commands are in the tap too: take the cached
	// one's, sent first.
	want := []string{"UID FETCH 4:* (UID RFC822.SIZE)", "UID SEARCH ALL"}
	if len(warm) < 2 || warm[0] != want[0] || !strings.HasPrefix(warm[1], "UID SEARCH") {
		t.Errorf("warm login sent %q, want %q first", warm, want)
	}
}

// An entry serves a session's UIDL material directly only when it knows
// all of it; allVars gives each message's, as vars does.
func TestSnapshotCacheComplete(t *testing.T) {
	hash, id := UIDLNeeds{HeaderHash: true}, UIDLNeeds{Identity: true}
	m := testSnapshot(3, true)
	if !m.complete(hash) || !m.complete(UIDLNeeds{}) || m.complete(id) {
		t.Errorf("complete: %v for %%m, %v for nothing, %v for %%g; want true, true, false", m.complete(hash), m.complete(UIDLNeeds{}), m.complete(id))
	}
	for i, v := range m.allVars() {
		if want := m.vars(i, m.hexHashes()); v != want || v.HeaderHash == "" {
			t.Errorf("allVars()[%d] = %+v, want %+v", i, v, want)
		}
	}
	clear(m.hashes[hashLen : 2*hashLen]) // message 2's hash unknown
	if m.complete(hash) {
		t.Error("complete with a hash unknown")
	}
	m.ids = []string{"a", "", "c"}
	if m.complete(id) {
		t.Error("complete with an identity unknown")
	}
	m.ids[1] = "b"
	if !m.complete(id) {
		t.Error("not complete with every identity known")
	}
}
