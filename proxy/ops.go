package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// Hooks connects a Proxy to metrics. Nil fields observe nothing.
type Hooks struct {
	POP3     pop3front.Observer
	Upstream imapback.Observer
	// Tokens observes OAuth2 token requests.
	Tokens oauth2.TokenObserver
	// State observes the shared state store's failures.
	State StateObserver
	// Sizes observes transfers whose octets differ from the listed size.
	Sizes SizeObserver
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
