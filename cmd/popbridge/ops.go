package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/popbridge/popbridge/metrics"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/proxy/admin"
	"github.com/popbridge/popbridge/proxy/config"
)

// serve runs the bridge for cfg (checked) until ctx is done (SIGTERM,
// SIGINT), then drains. SIGHUP reloads the configuration with load (nil
// without a config file); a config that does not load or check is logged
// and the running one stays.
func serve(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), demo *demoUpstream, stdout, stderr io.Writer) int {
	level := new(slog.LevelVar)
	level.UnmarshalText([]byte(cfg.Log.Level))
	logger := newLogger(cfg.Log.Format, level, stderr)

	m := metrics.New(version)
	r, err := proxy.NewRunner(cfg, proxy.RunnerOptions{
		Logger:  logger,
		Hooks:   proxy.Hooks{POP3: m.POP3(), Upstream: m.Upstream(), Tokens: m.Tokens(), AuthHTTP: m.AuthHTTP(), Certificates: m, State: m.State(), Sizes: m.Sizes()},
		OnProbe: m.ProbeDone,
	})
	if err != nil {
		fmt.Fprintln(stderr, "popbridge:", err)
		var oe *net.OpError
		if errors.As(err, &oe) {
			return exitFail // a listener that cannot be bound
		}
		return exitConfig
	}
	m.SetReadyCheck(r.Ready)
	logWarnings(cfg, logger)

	var hs *http.Server
	var reloadAdmin func(admin.Config) error // nil without an admin listener
	if cfg.Metrics.Listen != "" {
		if hs, err = serveMetrics(cfg.Metrics.Listen, m.Handler(), logger); err != nil {
			fmt.Fprintln(stderr, "popbridge: metrics:", err)
			r.Drain(canceled())
			return exitFail
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			hs.Shutdown(ctx)
		}()
	}
	if cfg.Admin.Listen != "" {
		adm, configErr, bindErr := startAdminView(cfg.Admin, r, logger)
		if configErr != nil || bindErr != nil {
			fmt.Fprintln(stderr, "popbridge: admin:", cmp.Or(configErr, bindErr))
			r.Drain(canceled())
			if configErr != nil {
				return exitConfig
			}
			return exitFail
		}
		// Deferred after the metrics server: it stops first, after the drain.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			adm.Shutdown(ctx)
		}()
		reloadAdmin = adm.Reload
	}
	if demo != nil {
		fmt.Fprintf(stdout, "popbridge demo (user demo, password demo): curl pop3://demo:demo@%s/1\n", r.Addrs()[0])
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	for {
		select {
		case err := <-served:
			logger.Error("server failed", "err", err)
			return exitFail
		case <-hup:
			next := reload(cfg, load, r, m, level, logger)
			if next != cfg {
				reloadAdminView(cfg.Admin, next.Admin, reloadAdmin, logger)
			}
			cfg = next
			continue
		case <-ctx.Done():
		}
		break
	}

	logger.Info("shutting down: not ready, no new connections, waiting for open sessions", "drain_timeout", cfg.Limits.DrainTimeout)
	m.SetDraining(true)
	drain, cancel := context.WithTimeout(context.Background(), cfg.Limits.DrainTimeout)
	defer cancel()
	if err := r.Drain(drain); err != nil {
		logger.Warn("drain timeout: closed the remaining sessions without their UPDATE state, nothing deleted for them")
	} else {
		logger.Info("drained: all sessions ended")
	}
	if err := <-served; err != nil {
		logger.Error("server failed", "err", err)
		return exitFail
	}
	return exitOK
}

// reload loads and applies a new configuration and returns the one in
// force afterwards.
func reload(cur *config.Config, load func() (*config.Config, error), r *proxy.Runner, m *metrics.Metrics,
	level *slog.LevelVar, logger *slog.Logger) *config.Config {
	if load == nil {
		logger.Warn("SIGHUP ignored: no configuration file (-config) to reload")
		return cur
	}
	cfg, err := load()
	if err == nil {
		err = r.Reload(cfg)
	}
	m.ReloadDone(err)
	if err != nil {
		logger.Error("configuration reload failed, keeping the running configuration", "err", err)
		return cur
	}
	if cfg.Metrics.Listen != cur.Metrics.Listen {
		logger.Warn("metrics.listen changed: it takes effect at the next start", "metrics_listen", cur.Metrics.Listen)
	}
	if cfg.Log.Format != cur.Log.Format {
		logger.Warn("log.format changed: it takes effect at the next start", "format", cur.Log.Format)
	}
	level.UnmarshalText([]byte(cfg.Log.Level))
	logWarnings(cfg, logger)
	logger.Info("configuration reloaded", "listen", len(cfg.Listen), "upstream", cfg.Upstream.Address)
	return cfg
}

// logWarnings logs what the checked cfg allows but the operator should
// hear about.
func logWarnings(cfg *config.Config, logger *slog.Logger) {
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
}

// newLogger makes the process's logger. In JSON, durations are seconds
// as a number (1.5), what log pipelines can compare and sum, instead of
// slog's integer nanoseconds; the text format keeps Go's "1.5s".
func newLogger(format string, level slog.Leveler, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		opts.ReplaceAttr = durationSeconds
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// durationSeconds is a slog.HandlerOptions.ReplaceAttr that writes a
// duration as seconds.
func durationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

// serveMetrics serves /metrics, /healthz and /readyz on addr.
func serveMetrics(addr string, h http.Handler, logger *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener failed", "err", err)
		}
	}()
	return hs, nil
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
