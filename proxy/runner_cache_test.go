package proxy

import (
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/metrics"
	"github.com/popbridge/popbridge/proxy/config"
)

// A reload keeps what the snapshot cache learnt, so that no device's next
// poll takes a full snapshot: the same cache under the same bound, its
// entries under another, none once the cache is turned off (and the
// metric of its bytes shows 0).
func TestReloadKeepsTheSnapshotCache(t *testing.T) {
	up := memUpstream(t) // alice/secret, one message
	bound := func(n int64) func(*config.Config) {
		return func(c *config.Config) { c.Performance.SnapshotCacheBytes = &n }
	}
	m := metrics.New("test")
	r := startRunnerWith(t, runnerConfig(t, up.Addr, "127.0.0.1:0", nil), RunnerOptions{Hooks: Hooks{Upstream: m.Upstream()}})
	cacheBytes := func() float64 { return metricValue(t, m.Registry(), "popbridge_upstream_snapshot_cache_bytes") }
	addr := r.Addrs()[0].String()
	cache := func() *imapback.SnapshotCache {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.cur.hooks.snapshots
	}
	reload := func(configure func(*config.Config)) *imapback.SnapshotCache {
		t.Helper()
		if err := r.Reload(runnerConfig(t, up.Addr, "127.0.0.1:0", configure)); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		return cache()
	}
	c := pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	c.Quit()
	first := cache()
	if first == nil || first.Len() != 1 {
		t.Fatalf("after a login the cache holds %d mailboxes, want 1", first.Len())
	}
	if got := reload(nil); got != first {
		t.Error("a reload under the same bound replaced the cache")
	}
	if got := reload(bound(1 << 20)); got == first || got.Len() != 1 {
		t.Errorf("a reload under another bound: the same cache %v, %d mailboxes; want a new cache with the 1 entry", got == first, got.Len())
	}
	if v := cacheBytes(); v <= 0 {
		t.Errorf("with a mailbox cached, the cache bytes metric shows %v", v)
	}
	if got := reload(bound(0)); got != nil {
		t.Error("a reload that turns the cache off kept one")
	}
	if v := cacheBytes(); v != 0 {
		t.Errorf("with the cache turned off, the cache bytes metric shows %v, want 0", v)
	}
	if got := reload(nil); got == nil || got.Len() != 0 {
		t.Errorf("a reload that turns the cache on again: %v, want an empty cache", got)
	}
	// A login under the last config fills the cache it has. The Proxy
	// that retires may still accept a connection or two on the shared
	// socket, so a few logins are allowed.
	for i := 0; i < 20 && cache().Len() == 0; i++ {
		c = pop3test.Dial(t, addr)
		c.Login("alice", "secret")
		c.Quit()
	}
	if n := cache().Len(); n != 1 {
		t.Errorf("after logins under the reloaded config the cache holds %d mailboxes, want 1", n)
	}
}
