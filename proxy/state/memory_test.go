package state

// Tests of the in-process store alone, on a clock driven by hand.

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// fakeClock drives a Memory's time by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestMemoryWindowAndPrune(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	m := NewMemory()
	m.now = clock.now
	ctx := context.Background()
	const window = time.Minute
	try := func(key string) bool {
		release, ok, err := m.Reserve(ctx, key, 2, window)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			release(true)
		}
		return ok
	}
	if !try("a") {
		t.Fatal("first attempt refused")
	}
	clock.advance(40 * time.Second)
	if !try("a") || try("a") {
		t.Fatal("want the second attempt granted and the third refused")
	}
	// Past the first failure's window: one attempt is free again. Other
	// keys' reservations prune the table meanwhile.
	clock.advance(21 * time.Second)
	for i := range 3 {
		try(fmt.Sprint("other", i))
	}
	if !try("a") || try("a") {
		t.Fatal("want one attempt free a window after the first failure, and only one")
	}
	clock.advance(2 * window)
	try("b") // prunes every key of "a"'s age
	m.mu.Lock()
	_, kept := m.attempts["a"]
	n := len(m.attempts)
	m.mu.Unlock()
	if kept || n != 1 {
		t.Fatalf("after two windows: %d keys, %q kept %v; want only b's", n, "a", kept)
	}
}
