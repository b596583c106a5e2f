package metrics

// The shared state store's collector (proxy.Hooks.State). It is
// registered when State is first called, so that this file adds a
// collector without touching the others.

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// stateFeatures are the features of the shared state store, the values
// of the feature label.
var stateFeatures = []string{"logins", "connections", "locks", "retention"}

// State observes the shared state store (proxy.Hooks.State). Every call
// returns an observer of the same collector.
func (m *Metrics) State() StateObserver {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "state", Name: "store_errors_total",
		Help: "Operations of the shared state store that failed (unreachable, timed out, refused), by feature: " +
			"logins (the failed-login limits, fail open by default), connections (per-address counts, fail open by default), " +
			"locks (lock_session, fail closed by default), retention (retention_days: nothing expires while it fails).",
	}, []string{"feature"})
	if err := m.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err) // a name clash: a programming error
		}
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	for _, f := range stateFeatures {
		c.WithLabelValues(f)
	}
	return StateObserver{c}
}

// StateObserver counts the shared state store's failures; it satisfies
// proxy.StateObserver.
type StateObserver struct{ errs *prometheus.CounterVec }

// StoreError counts one failed operation of feature.
func (o StateObserver) StoreError(feature string) { o.errs.WithLabelValues(feature).Inc() }
