package config

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/imapback"
)

// The snapshot cache is on unless the file says otherwise; 0 turns it
// off, and a negative size is an error that names the key.
func TestSnapshotCacheBytes(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int64
		err  bool
	}{
		{"", imapback.DefaultSnapshotCacheBytes, false},
		{"performance:\n  snapshot_cache_bytes: 0\n", 0, false},
		{"performance:\n  snapshot_cache_bytes: 1048576\n", 1 << 20, false},
		{"performance:\n  snapshot_cache_bytes: -1\n", 0, true},
	} {
		cfg, err := parsed(t, "upstream:\n  address: a:993\n"+tc.yaml)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "performance.snapshot_cache_bytes") {
				t.Errorf("%q: Check() = %v, want an error naming the key", tc.yaml, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := cfg.Performance.SnapshotCacheSize(); got != tc.want {
			t.Errorf("%q: cache size %d, want %d", tc.yaml, got, tc.want)
		}
	}
}
