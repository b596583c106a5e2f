package metrics

// The counter of transfers whose octets differ from the listed size
// (proxy.Hooks.Sizes), registered when Sizes is first called.

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Sizes observes RETR transfers whose octets differ from the size LIST
// gave (proxy.Hooks.Sizes). Every call returns an observer of the same
// counter.
func (m *Metrics) Sizes() SizeObserver {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "pop3", Name: "size_mismatches_total",
		Help: "Complete RETR transfers whose octets differ from the size LIST and STAT gave: the upstream's RFC822.SIZE " +
			"is an estimate (see upstream.exact_sizes).",
	})
	if err := m.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err) // a name clash: a programming error
		}
		c = are.ExistingCollector.(prometheus.Counter)
	}
	return SizeObserver{c}
}

// SizeObserver counts size mismatches; it satisfies proxy.SizeObserver.
type SizeObserver struct{ n prometheus.Counter }

// SizeMismatch counts one transfer.
func (o SizeObserver) SizeMismatch() { o.n.Inc() }
