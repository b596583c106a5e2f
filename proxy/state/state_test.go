package state

// The behaviours every Store shares, run against Memory and against Redis
// with one to three clients (as replicas) on one redis-server.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/redistest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// impl opens n stores that share their state, as n replicas would.
type impl struct {
	name string
	open func(t *testing.T, n int) []Store
}

func impls() []impl {
	return []impl{
		{"memory", func(t *testing.T, n int) []Store {
			m := NewMemory()
			out := make([]Store, n)
			for i := range out {
				out[i] = m
			}
			return out
		}},
		{"redis", func(t *testing.T, n int) []Store {
			srv := redistest.Start(t, redistest.Options{})
			out := make([]Store, n)
			for i := range out {
				out[i] = openRedis(t, testConfig(srv.Addr))
			}
			return out
		}},
	}
}

// testConfig has generous timeouts: the concurrent tests put a few hundred
// operations on a loaded machine at once, and none may fail open.
func testConfig(addr string) Config {
	return Config{Address: addr, CommandTimeout: 5 * time.Second, LeaseTTL: 15 * time.Second}
}

func openRedis(t *testing.T, cfg Config) *Redis {
	t.Helper()
	r, err := NewRedis(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var behaviours = []struct {
	name string
	run  func(t *testing.T, open func(t *testing.T, n int) []Store)
}{
	{"ConcurrentReservations", testConcurrentReservations},
	{"ConcurrentReservationsOnThreeReplicas", testReservationsOnThreeReplicas},
	{"ReleaseForgivesOrKeeps", testReleaseForgivesOrKeeps},
	{"FailureCountsAWindowFromTheFailure", testFailureWindow},
	{"NoLimit", testNoLimit},
	{"Remember", testRemember},
	{"ConnectionSlots", testConnectionSlots},
	{"LockRefusesAnotherReplica", testLockRefuses},
}

func TestBehaviours(t *testing.T) {
	for _, im := range impls() {
		for _, b := range behaviours {
			t.Run(im.name+"/"+b.name, func(t *testing.T) {
				t.Parallel()
				b.run(t, im.open)
			})
		}
	}
}

// reserveAll runs n reservations at once, spread over stores, and holds
// every granted one (none released), as logins whose passwords are being
// tried.
func reserveAll(t *testing.T, stores []Store, n, limit int) int {
	t.Helper()
	var ok atomic.Int32
	testkit.AtOnce(n, func(i int) {
		_, granted, err := stores[i%len(stores)].Reserve(context.Background(), "victim", limit, time.Minute)
		if err != nil {
			t.Errorf("Reserve: %v", err)
		}
		if granted {
			ok.Add(1)
		}
	})
	return int(ok.Load())
}

func testConcurrentReservations(t *testing.T, open func(*testing.T, int) []Store) {
	if got := reserveAll(t, open(t, 1), 200, 10); got != 10 {
		t.Fatalf("200 concurrent reservations against a limit of 10: %d granted, want 10", got)
	}
}

func testReservationsOnThreeReplicas(t *testing.T, open func(*testing.T, int) []Store) {
	if got := reserveAll(t, open(t, 3), 200, 10); got != 10 {
		t.Fatalf("200 reservations over three replicas against a limit of 10: %d granted, want 10", got)
	}
}

func reserve(t *testing.T, s Store, key string, limit int, window time.Duration) (func(bool), bool) {
	t.Helper()
	release, ok, err := s.Reserve(context.Background(), key, limit, window)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if ok && release == nil {
		t.Fatal("Reserve granted with a nil release")
	}
	return release, ok
}

func testReleaseForgivesOrKeeps(t *testing.T, open func(*testing.T, int) []Store) {
	stores := open(t, 2)
	a, b := stores[0], stores[1]
	var releases []func(bool)
	for range 3 {
		release, ok := reserve(t, a, "u", 3, time.Minute)
		if !ok {
			t.Fatal("refused below the limit")
		}
		releases = append(releases, release)
	}
	if _, ok := reserve(t, b, "u", 3, time.Minute); ok {
		t.Fatal("a fourth attempt while three are in flight was granted")
	}
	releases[0](false) // a success gives the attempt back
	releases[0](true)  // only the first release counts
	release, ok := reserve(t, b, "u", 3, time.Minute)
	if !ok {
		t.Fatal("refused after a success gave an attempt back")
	}
	release(true)
	releases[1](true)
	if _, ok := reserve(t, a, "u", 3, time.Minute); ok {
		t.Fatal("granted while three attempts failed or are in flight")
	}
	if _, ok := reserve(t, a, "other", 3, time.Minute); !ok {
		t.Fatal("another key was refused")
	}
}

func testFailureWindow(t *testing.T, open func(*testing.T, int) []Store) {
	s := open(t, 1)[0]
	const window = time.Second
	start := time.Now()
	release, ok := reserve(t, s, "u", 1, window)
	if !ok {
		t.Fatal("first attempt refused")
	}
	time.Sleep(600 * time.Millisecond)
	release(true)
	failedAt := time.Now()
	// 1.2 s after the reservation, 0.6 s after the failure: still counted.
	time.Sleep(time.Until(start.Add(1200 * time.Millisecond)))
	_, ok = reserve(t, s, "u", 1, window)
	if elapsed := time.Since(failedAt); ok && elapsed < window {
		t.Fatalf("granted %v after a failure with a window of %v", elapsed, window)
	}
	time.Sleep(time.Until(failedAt.Add(window + 100*time.Millisecond)))
	if _, ok := reserve(t, s, "u", 1, window); !ok {
		t.Fatal("refused a window after the failure")
	}
}

func testNoLimit(t *testing.T, open func(*testing.T, int) []Store) {
	s := open(t, 1)[0]
	for range 3 {
		if release, ok := reserve(t, s, "u", 0, time.Minute); !ok {
			t.Fatal("Reserve with limit 0 refused")
		} else {
			release(true)
		}
		release, ok, err := s.Acquire(context.Background(), "a", 0)
		if !ok || err != nil {
			t.Fatalf("Acquire with limit 0: %v %v", ok, err)
		}
		defer release()
	}
}

func testRemember(t *testing.T, open func(*testing.T, int) []Store) {
	stores := open(t, 2)
	ctx := context.Background()
	if err := stores[0].Remember(ctx, "u\x00addr", 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ok, err := stores[1].Remembered(ctx, "u\x00addr"); !ok || err != nil {
		t.Fatalf("Remembered on another replica: %v %v", ok, err)
	}
	if ok, err := stores[1].Remembered(ctx, "u\x00other"); ok || err != nil {
		t.Fatalf("Remembered of an unknown key: %v %v", ok, err)
	}
	time.Sleep(700 * time.Millisecond)
	if ok, err := stores[1].Remembered(ctx, "u\x00addr"); ok || err != nil {
		t.Fatalf("Remembered after the ttl: %v %v", ok, err)
	}
}

func testConnectionSlots(t *testing.T, open func(*testing.T, int) []Store) {
	stores := open(t, 3)
	ctx := context.Background()
	var mu sync.Mutex
	var releases []func()
	testkit.AtOnce(60, func(i int) {
		release, ok, err := stores[i%3].Acquire(ctx, "192.0.2.1", 3)
		if err != nil {
			t.Errorf("Acquire: %v", err)
		}
		if ok {
			mu.Lock()
			releases = append(releases, release)
			mu.Unlock()
		}
	})
	if len(releases) != 3 {
		t.Fatalf("60 concurrent connections against a limit of 3: %d slots, want 3", len(releases))
	}
	releases[0]()
	releases[0]() // a second release frees nothing more
	if _, ok, _ := stores[1].Acquire(ctx, "192.0.2.1", 3); !ok {
		t.Fatal("refused after a release")
	}
	if _, ok, _ := stores[2].Acquire(ctx, "192.0.2.1", 3); ok {
		t.Fatal("a double release freed two slots")
	}
	if _, ok, _ := stores[2].Acquire(ctx, "192.0.2.2", 3); !ok {
		t.Fatal("another address was refused")
	}
}

func lock(t *testing.T, s Store, key string) (*Lease, bool) {
	t.Helper()
	lease, ok, err := s.Lock(context.Background(), key)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if ok == (lease == nil) {
		t.Fatalf("Lock: ok %v with lease %v", ok, lease)
	}
	return lease, ok
}

func testLockRefuses(t *testing.T, open func(*testing.T, int) []Store) {
	stores := open(t, 2)
	a, b := stores[0], stores[1]
	first, ok := lock(t, a, "imap\x00alice\x00")
	if !ok {
		t.Fatal("a free lock was refused")
	}
	if _, ok := lock(t, b, "imap\x00alice\x00"); ok {
		t.Fatal("a held lock was granted to another replica")
	}
	if _, ok := lock(t, a, "imap\x00alice\x00"); ok {
		t.Fatal("a held lock was granted again to its own replica")
	}
	if _, ok := lock(t, b, "imap\x00bob\x00"); !ok {
		t.Fatal("another maildrop's lock was refused")
	}
	first.Release()
	second, ok := lock(t, b, "imap\x00alice\x00")
	if !ok {
		t.Fatal("refused after the holder released it")
	}
	first.Release() // a late second release must not free the new holder's lock
	if _, ok := lock(t, a, "imap\x00alice\x00"); ok {
		t.Fatal("a stale release freed another session's lock")
	}
	select {
	case <-second.Lost():
		t.Fatal("a held lease reports itself lost")
	default:
	}
	second.Release()
	if _, ok := lock(t, a, "imap\x00alice\x00"); !ok {
		t.Fatal("refused after the second holder released it")
	}
}

// errUnavailable reports whether err says the store could not be asked.
func errUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
