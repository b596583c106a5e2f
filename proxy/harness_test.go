package proxy

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// The one way a test starts popbridge, and the config it starts from.

// testConfig is the config tests start from: one listener on a free
// loopback port, an upstream without TLS at upstreamAddr, no delay after
// a failed login. It is not checked yet.
func testConfig(upstreamAddr string) *config.Config {
	noDelay := time.Duration(0)
	return &config.Config{
		Listen:   []config.ListenConfig{{Address: "127.0.0.1:0"}},
		Upstream: config.UpstreamConfig{Address: upstreamAddr, TLS: "none", DialTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second},
		Limits:   config.LimitsConfig{AuthFailureDelay: &noDelay},
	}
}

// proxyOptions says how startProxy runs popbridge; the zero value runs
// testConfig as it is.
type proxyOptions struct {
	configure func(*config.Config) // changes testConfig before Check
	logs      io.Writer            // gets the debug log too (t.Log always does)
	hooks     Hooks
	store     state.Store // the shared store; nil: New opens its own
	// noLogs discards the log, for benchmarks that logging would slow.
	noLogs bool
}

// testProxy is a Proxy that serves until its test ends.
type testProxy struct {
	*Proxy
	addrs []string // every listener's address, in config order
	addr  string   // the first one
}

// startProxy runs popbridge in front of the IMAP server at upstreamAddr
// until the test ends, logging at debug level.
func startProxy(t testing.TB, upstreamAddr string, o proxyOptions) *testProxy {
	t.Helper()
	cfg := testConfig(upstreamAddr)
	if o.configure != nil {
		o.configure(cfg)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	w := io.Writer(testkit.LogWriter{T: t})
	if o.logs != nil {
		w = io.MultiWriter(o.logs, w)
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.noLogs {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := New(cfg, Options{Logger: logger, Hooks: o.hooks, Store: o.store})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Serve()
	}()
	t.Cleanup(func() {
		p.Close()
		<-done
	})
	tp := &testProxy{Proxy: p}
	for _, a := range p.Addrs() {
		tp.addrs = append(tp.addrs, a.String())
	}
	tp.addr = tp.addrs[0]
	return tp
}
