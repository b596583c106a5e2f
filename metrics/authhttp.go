// authhttp.go holds the collectors of the auth_http hook's requests and
// the observer that feeds them.

package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/popbridge/popbridge/proxy/authhttp"
)

// hookResults are every result the hook's client reports, counted from
// zero so that a dashboard sees the series before the first one.
var hookResults = []string{authhttp.ResultOK, authhttp.ResultDenied, authhttp.ResultWait, authhttp.ResultCached,
	authhttp.ResultTimeout, authhttp.ResultBusy, authhttp.ResultUnavailable, authhttp.ResultMalformed, authhttp.ResultCanceled}

type hookMetrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
}

func newHookMetrics(f factory, latency []float64) *hookMetrics {
	h := &hookMetrics{
		requests: f.counterVec("auth_http", "requests_total",
			"Logins put to the auth_http hook, by result: ok, denied, wait (one per WAIT answer), cached (answered from the cache, no request), "+
				"timeout, busy (no request slot), unavailable (no connection, closed early or not 200), malformed, canceled (the client left first).",
			"result"),
		duration: f.histogram("auth_http", "request_duration_seconds",
			"Duration of auth_http hook requests, the wait for a request slot included; cache hits are not observed.", latency),
	}
	for _, r := range hookResults {
		h.requests.WithLabelValues(r)
	}
	return h
}

// AuthHTTP observes the auth_http hook (proxy.Hooks.AuthHTTP).
func (m *Metrics) AuthHTTP() HookObserver { return HookObserver{m.hook} }

// HookObserver counts the hook's requests; it satisfies authhttp.Observer.
type HookObserver struct{ h *hookMetrics }

// HookRequest counts one outcome; a latency above zero is the duration
// of the request it made.
func (o HookObserver) HookRequest(result string, latency time.Duration) {
	o.h.requests.WithLabelValues(result).Inc()
	if latency > 0 {
		o.h.duration.Observe(latency.Seconds())
	}
}
