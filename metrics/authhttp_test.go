package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/popbridge/popbridge/proxy/authhttp"
)

// Every result is counted under its own label, and only requests that
// took time are observed in the histogram.
func TestHookObserverCountsByResultAndTimesRequests(t *testing.T) {
	m := New("test")
	var o authhttp.Observer = m.AuthHTTP()
	o.HookRequest(authhttp.ResultOK, 20*time.Millisecond)
	o.HookRequest(authhttp.ResultOK, 30*time.Millisecond)
	o.HookRequest(authhttp.ResultDenied, 10*time.Millisecond)
	o.HookRequest(authhttp.ResultCached, 0)
	for result, want := range map[string]float64{
		authhttp.ResultOK: 2, authhttp.ResultDenied: 1, authhttp.ResultCached: 1, authhttp.ResultTimeout: 0,
	} {
		if got := testutil.ToFloat64(m.hook.requests.WithLabelValues(result)); got != want {
			t.Errorf("requests_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.hook.requests); n != len(hookResults) {
		t.Errorf("%d result series, want all %d from the start", n, len(hookResults))
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "popbridge_auth_http_request_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 3 {
				t.Errorf("%d requests timed, want 3 (a cache hit is not a request)", n)
			}
			return
		}
	}
	t.Fatal("no popbridge_auth_http_request_duration_seconds")
}
