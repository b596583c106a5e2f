package proxy

import (
	"errors"

	"github.com/popbridge/popbridge/imapback"
)

// PerformanceConfig tunes read-ahead (imapback/readahead.go): when a
// client retrieves messages in order, the next small ones are fetched
// together in one upstream command. Zero values take imapback's defaults.
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
}

func (p PerformanceConfig) check() []error {
	var errs []error
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

func (p PerformanceConfig) apply(o *imapback.Options) {
	o.ReadAheadBytes = p.ReadAheadBytes
	o.ReadAheadMessages = p.ReadAheadMessages
	o.ReadAheadTotal = p.ReadAheadTotalBytes
	o.ChunkSize = p.ChunkSize
}
