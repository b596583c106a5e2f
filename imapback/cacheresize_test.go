package imapback

import "testing"

// A reload keeps the cache: the same one under the same bound, a copy of
// the most recently used entries that fit under another, none when the
// cache is turned off; and the cache it came from is left as it was.
func TestSnapshotCacheResized(t *testing.T) {
	if c := (*SnapshotCache)(nil).Resized(0); c != nil {
		t.Error("no cache resized to 0 bytes should be none")
	}
	if c := (*SnapshotCache)(nil).Resized(1 << 20); c == nil || c.Len() != 0 {
		t.Errorf("no cache resized to 1 MB: %v, want an empty cache", c)
	}
	one := testSnapshot(100, false).bytes(key("a"))
	c := NewSnapshotCache(3 * one)
	for _, u := range []string{"a", "b", "c"} {
		c.put(key(u), testSnapshot(100, false))
	}
	c.get(key("a")) // b is now the least recently used
	if c.Resized(3*one) != c {
		t.Error("the same bound should keep the same cache")
	}
	small := c.Resized(2 * one)
	if small.Len() != 2 || small.Bytes() != 2*one || small.get(key("b")) != nil || small.get(key("a")) == nil || small.get(key("c")) == nil {
		t.Errorf("shrunk to two entries: %d entries, %d bytes; want a and c kept, b gone", small.Len(), small.Bytes())
	}
	large := c.Resized(4 * one)
	if large.Len() != 3 || large.Bytes() != 3*one || large.get(key("a")) != c.get(key("a")) {
		t.Errorf("grown: %d entries, %d bytes; want the 3 entries themselves", large.Len(), large.Bytes())
	}
	// The copy keeps the order of use: b, oldest there too, goes first.
	large.put(key("d"), testSnapshot(100, false))
	large.put(key("e"), testSnapshot(100, false))
	if large.get(key("b")) != nil || large.get(key("c")) == nil || large.get(key("d")) == nil {
		t.Error("the grown copy evicted out of the original's order of use")
	}
	if c.Resized(0) != nil {
		t.Error("a cache turned off should be none")
	}
	if c.Len() != 3 || c.Bytes() != 3*one {
		t.Errorf("the original changed: %d entries, %d bytes", c.Len(), c.Bytes())
	}
}
