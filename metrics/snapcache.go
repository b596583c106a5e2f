// snapcache.go holds the collectors of the upstream snapshot cache, fed
// through the upstream observer.

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/popbridge/popbridge/imapback"
)

var cacheOutcomes = []imapback.CacheOutcome{imapback.CacheHit, imapback.CachePartial, imapback.CacheMiss}

type cacheMetrics struct {
	lookups *prometheus.CounterVec
	bytes   prometheus.Gauge
}

func newCacheMetrics(f factory) *cacheMetrics {
	return &cacheMetrics{
		lookups: f.counterVec("upstream", "snapshot_cache_total",
			"Logins by upstream and what their snapshot took from the snapshot cache: hit (every message from the cache), "+
				"partial (new mail fetched, the rest from the cache), miss (nothing cached, or the mailbox's UIDVALIDITY changed).",
			"upstream", "outcome"),
		bytes: f.gauge("upstream", "snapshot_cache_bytes",
			"Memory the snapshot cache takes, as counted against performance.snapshot_cache_bytes, at the last login or (re)load; 0 when it is off."),
	}
}

// SnapshotCache records what one login's snapshot took from the cache.
func (o UpstreamObserver) SnapshotCache(outcome imapback.CacheOutcome, cacheBytes int64) {
	o.m.cache.lookups.WithLabelValues(o.name, string(outcome)).Inc()
	o.m.cache.bytes.Set(float64(cacheBytes))
}

// SnapshotCacheSized shows the memory of the cache a (re)load put in
// place: a reload that turns the cache off shows 0, not the last login's.
func (o UpstreamObserver) SnapshotCacheSized(cacheBytes int64) {
	o.m.cache.bytes.Set(float64(cacheBytes))
}
