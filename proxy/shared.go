package proxy

// The shared state store (proxy/state) as the proxy uses it: opened once
// per Runner, so that limits and locks survive reloads, and the one place
// that turns a store failure into a log line and a metric.

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// StateObserver counts the shared store's failures, for metrics. Its
// methods are called from session goroutines and must return quickly.
type StateObserver interface {
	// StoreError reports that the store could not be asked; feature is
	// "logins", "connections" or "locks".
	StoreError(feature string)
}

// storeErrors logs and counts the store's failures.
type storeErrors struct {
	log *slog.Logger
	obs StateObserver // nil observes nothing
}

// failed reports err, which the store returned for feature. The session
// goes on or is refused by the feature's fail mode; either way the
// operator hears of it.
func (e storeErrors) failed(feature string, err error) {
	e.log.Warn("shared state store unavailable", "feature", feature, "err", err)
	if e.obs != nil {
		e.obs.StoreError(feature)
	}
}

// openStore opens the store that cfg.State describes: in process
// without state.address, else Redis or Valkey.
func openStore(cfg *config.Config, errs storeErrors) (state.Store, error) {
	return state.Open(cfg.State, state.Options{OnError: errs.failed})
}

// connectionSlots counts connections per client address in the store,
// for pop3front.Server.ConnectionSlot: in process, shared by the Proxies
// of one Runner across reloads, or across replicas with Redis. limit 0
// or less is no limit.
func connectionSlots(st state.Counter, limit int, errs storeErrors) func(context.Context, netip.Addr) (func(), bool) {
	return func(ctx context.Context, ip netip.Addr) (func(), bool) {
		release, ok, err := st.Acquire(ctx, "addr:"+ip.Unmap().String(), limit)
		if err != nil {
			errs.failed("connections", err)
		}
		return release, ok
	}
}
