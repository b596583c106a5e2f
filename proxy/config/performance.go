package config

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// The performance and metrics sections: read-ahead tuning, and the HTTP
// listener with the upstream probe behind /readyz.

// PerformanceConfig tunes read-ahead (when a client retrieves messages in
// order, the next small ones are fetched together in one upstream
// command) and the snapshot cache. Zero values take imapback's defaults.
type PerformanceConfig struct {
	// ReadAheadBytes bounds one session's prefetched messages; -1 turns
	// read-ahead off.
	ReadAheadBytes int `yaml:"read_ahead_bytes"`
	// ReadAheadMessages bounds the messages of one prefetch.
	ReadAheadMessages int `yaml:"read_ahead_messages"`
	// ReadAheadTotalBytes bounds the prefetched messages of all sessions
	// on one upstream together.
	ReadAheadTotalBytes int `yaml:"read_ahead_total_bytes"`
	// ChunkSize is the size of one ranged FETCH of a large message
	// (0: imapback.DefaultChunkSize).
	ChunkSize int `yaml:"chunk_size"`
	// SnapshotCacheBytes bounds the memory of the snapshot cache, which
	// keeps each mailbox's UIDs, sizes and UIDL material for the next
	// login of its user, so that a device polling an unchanged mailbox
	// fetches nothing but its list of UIDs. Unset:
	// imapback.DefaultSnapshotCacheBytes; 0 turns the cache off.
	SnapshotCacheBytes *int64 `yaml:"snapshot_cache_bytes"`
}

// SnapshotCacheSize is the bound of the snapshot cache, the default
// where none is set; 0: no cache.
func (p PerformanceConfig) SnapshotCacheSize() int64 {
	if p.SnapshotCacheBytes == nil {
		return imapback.DefaultSnapshotCacheBytes
	}
	return *p.SnapshotCacheBytes
}

func (p PerformanceConfig) check() []error {
	var errs []error
	if p.SnapshotCacheSize() < 0 {
		errs = append(errs, errors.New("performance.snapshot_cache_bytes: must be 0 (off) or positive"))
	}
	if p.ReadAheadBytes < -1 {
		errs = append(errs, errors.New("performance.read_ahead_bytes: must be -1 (off), 0 (default) or positive"))
	}
	if p.ReadAheadMessages < 0 {
		errs = append(errs, errors.New("performance.read_ahead_messages: must not be negative"))
	}
	if p.ReadAheadTotalBytes < 0 {
		errs = append(errs, errors.New("performance.read_ahead_total_bytes: must not be negative"))
	}
	if p.ChunkSize != 0 && (p.ChunkSize < 4<<10 || p.ChunkSize > 64<<20) {
		errs = append(errs, errors.New("performance.chunk_size: must be 0 (default) or between 4096 and 67108864"))
	}
	return errs
}

// MetricsConfig is the HTTP listener for /metrics, /healthz and /readyz,
// and the upstream probe behind /readyz.
type MetricsConfig struct {
	// Listen is the host:port of the HTTP listener; empty means none.
	Listen string `yaml:"listen"`
	// ProbeInterval is how often the upstream is probed.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout bounds one probe.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
}

// Defaults of MetricsConfig, applied by Check.
const (
	DefaultProbeInterval = 10 * time.Second
	DefaultProbeTimeout  = 5 * time.Second
)

func (m *MetricsConfig) check() []error {
	var errs []error
	if m.Listen != "" {
		if _, _, err := net.SplitHostPort(m.Listen); err != nil {
			errs = append(errs, fmt.Errorf("metrics.listen: %v", err))
		}
	}
	if m.ProbeInterval == 0 {
		m.ProbeInterval = DefaultProbeInterval
	}
	if m.ProbeTimeout == 0 {
		m.ProbeTimeout = DefaultProbeTimeout
	}
	if m.ProbeInterval < 0 {
		errs = append(errs, errors.New("metrics.probe_interval: must be positive"))
	}
	if m.ProbeTimeout < 0 {
		errs = append(errs, errors.New("metrics.probe_timeout: must be positive"))
	}
	return errs
}
