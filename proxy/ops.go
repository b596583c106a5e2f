package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

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

// Hooks connects a Proxy to metrics. Nil fields observe nothing.
type Hooks struct {
	POP3     pop3front.Observer
	Upstream imapback.Observer
	// Tokens observes OAuth2 token requests (oauth2tokens.go).
	Tokens TokenObserver
}

// Probe checks that the upstream answers (connect, greeting, LOGOUT)
// without logging in.
func (p *Proxy) Probe(ctx context.Context) error { return p.probe(ctx) }

func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// probe probes every upstream at once. It succeeds when one answers: the
// process can then do useful work, and every replica would see the same
// failures of the others. Partial failures are logged.
func (r *router) probe(ctx context.Context, log *slog.Logger) error {
	errs := make(chan error, len(r.backends))
	for name, b := range r.backends {
		go func() {
			err := b.Probe(ctx)
			if err != nil {
				err = fmt.Errorf("upstream %s: %w", name, err)
			}
			errs <- err
		}()
	}
	var failed []error
	for range r.backends {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) == len(r.backends) {
		return errors.Join(failed...)
	}
	if len(failed) > 0 {
		log.Warn("some upstreams fail their probe", "err", errors.Join(failed...))
	}
	return nil
}
