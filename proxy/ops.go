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
	"github.com/popbridge/popbridge/proxy/authhttp"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// Hooks connects a Proxy to metrics. Nil fields observe nothing.
type Hooks struct {
	POP3     pop3front.Observer
	Upstream imapback.Observer
	// Tokens observes OAuth2 token requests.
	Tokens oauth2.TokenObserver
	// AuthHTTP observes the auth_http hook's requests.
	AuthHTTP authhttp.Observer
	// Certificates learns the expiry of every certificate in use.
	Certificates CertificateObserver

	certs     *certReports            // set by New: holds reports until the Proxy listens
	snapshots *imapback.SnapshotCache // set by New: shared by every upstream's Backends
	// State observes the shared state store's failures.
	State StateObserver
	// Sizes observes transfers whose octets differ from the listed size.
	Sizes SizeObserver
}

// namedObserver is an upstream observer that makes one for each
// configured upstream, so that its metrics carry the upstream's name.
type namedObserver interface {
	Named(name string) imapback.Observer
}

// upstreamObserver returns the observer of the upstream named name.
func (h Hooks) upstreamObserver(name string) imapback.Observer {
	if n, ok := h.Upstream.(namedObserver); ok {
		return n.Named(name)
	}
	return h.Upstream
}

// CertificateObserver learns when the certificates in use expire. kind is
// "listener" (name: the listen address as configured) or
// "upstream_client" (name: the upstream's name).
type CertificateObserver interface {
	CertificateLoaded(kind, name string, notAfter time.Time)
	// CertificatesReset forgets the certificates reported before: a
	// Proxy that starts listening reports all of its own.
	CertificatesReset()
}

// certLoaded returns what a certificate loader calls with the expiry of
// each certificate it loads; nil without an observer.
func (h Hooks) certLoaded(kind, name string) func(time.Time) {
	if h.Certificates == nil || h.certs == nil {
		return nil
	}
	return func(notAfter time.Time) { h.certs.loaded(kind, name, notAfter) }
}

// Probe checks that the upstreams answer (connect, greeting, LOGOUT)
// without logging in; see router.probe.
func (p *Proxy) Probe(ctx context.Context) error {
	_, err := p.probe(ctx)
	return err
}

func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// probe probes every upstream at once. It succeeds when one answers: the
// process can then do useful work, and every replica would see the same
// failures of the others. Partial failures are logged. It returns every
// upstream's result too, by name.
func (r *router) probe(ctx context.Context, log *slog.Logger) (map[string]error, error) {
	type result struct {
		name string
		err  error
	}
	done := make(chan result, len(r.backends))
	for name, b := range r.backends {
		go func() { done <- result{name, b.Probe(ctx)} }()
	}
	results := make(map[string]error, len(r.backends))
	var failed []error
	for range r.backends {
		res := <-done
		results[res.name] = res.err
		if res.err != nil {
			failed = append(failed, fmt.Errorf("upstream %s: %w", res.name, res.err))
		}
	}
	if len(failed) == len(r.backends) {
		return results, errors.Join(failed...)
	}
	if len(failed) > 0 {
		log.Warn("some upstreams fail their probe", "err", errors.Join(failed...))
	}
	return results, nil
}
