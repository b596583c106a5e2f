package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

func TestUpstreamErrorsMapToResponseCodes(t *testing.T) {
	other := errors.New("something else")
	for _, tc := range []struct {
		err  error
		want error
	}{
		{nil, nil},
		{fmt.Errorf("%w: NO", imapback.ErrAuthFailed), pop3front.ErrAuthFailed},
		{fmt.Errorf("%w: dial", imapback.ErrUnavailable), pop3front.ErrUnavailable},
		{fmt.Errorf("%w: SELECT", imapback.ErrMailbox), errMailbox},
		{fmt.Errorf("%w: SELECT", imapback.ErrInUse), pop3front.ErrInUse},
		{fmt.Errorf("%w: UID 7", imapback.ErrGone), pop3front.ErrNoMessage},
		{other, other},
	} {
		if got := popError(slog.New(slog.DiscardHandler), tc.err); got != tc.want {
			t.Errorf("popError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestPerformanceKeysReachTheBackend(t *testing.T) {
	for _, tt := range []struct {
		yaml    string
		wantErr string
		want    config.PerformanceConfig
	}{
		{"", "", config.PerformanceConfig{}},
		{"performance: {read_ahead_bytes: -1}", "", config.PerformanceConfig{ReadAheadBytes: -1}},
		{"performance: {read_ahead_bytes: 65536, read_ahead_messages: 8, read_ahead_total_bytes: 1048576}", "",
			config.PerformanceConfig{ReadAheadBytes: 65536, ReadAheadMessages: 8, ReadAheadTotalBytes: 1048576}},
		{"performance: {read_ahead_bytes: -2}", "performance.read_ahead_bytes", config.PerformanceConfig{}},
		{"performance: {read_ahead_messages: -1}", "performance.read_ahead_messages", config.PerformanceConfig{}},
		{"performance: {read_ahead_total_bytes: -1}", "performance.read_ahead_total_bytes", config.PerformanceConfig{}},
		{"performance: {chunk_size: 262144}", "", config.PerformanceConfig{ChunkSize: 262144}},
		{"performance: {chunk_size: 100}", "performance.chunk_size", config.PerformanceConfig{}},
	} {
		cfg, err := config.ParseConfig([]byte("upstream: {address: \"127.0.0.1:143\", tls: none}\n" + tt.yaml + "\n"))
		if err == nil {
			err = cfg.Check()
		}
		testkit.WantError(t, tt.yaml, err, tt.wantErr)
		if err != nil || tt.wantErr != "" {
			continue
		}
		if cfg.Performance != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.yaml, cfg.Performance, tt.want)
		}
		opts, err := upstreamOptions(cfg, config.DefaultUpstreamName, cfg.Upstream, Hooks{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if opts.ReadAheadBytes != tt.want.ReadAheadBytes || opts.ReadAheadMessages != tt.want.ReadAheadMessages ||
			opts.ReadAheadTotal != tt.want.ReadAheadTotalBytes || opts.ChunkSize != tt.want.ChunkSize {
			t.Errorf("%q: backend options %+v", tt.yaml, opts)
		}
	}
}
