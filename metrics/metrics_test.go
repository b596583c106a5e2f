package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestReadyzFollowsTheReadyCheck(t *testing.T) {
	m := New("test")
	h := m.Handler()
	var state error = errors.New("upstream probe failed")
	for _, tc := range []struct {
		name      string
		set       func()
		wantCode  int
		wantBody  string
		wantGauge float64
	}{
		{"before the check is set", func() {}, 503, "not ready: not started\n", 0},
		{"check fails", func() { m.SetReadyCheck(func() error { return state }) }, 503, "not ready: upstream probe failed\n", 0},
		{"check passes", func() { state = nil }, 200, "ready\n", 1},
		{"draining", func() { state = errors.New("draining") }, 503, "not ready: draining\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			code, body := get(t, h, "/readyz")
			if code != tc.wantCode || body != tc.wantBody {
				t.Errorf("/readyz = %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
			if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("/healthz = %d %q, want 200 ok", code, body)
			}
			_, metrics := get(t, h, "/metrics")
			want := "popbridge_ready " + map[float64]string{0: "0", 1: "1"}[tc.wantGauge] + "\n"
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		})
	}
}

func TestMetricsFollowNamingConventions(t *testing.T) {
	m := New("test")
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "popbridge_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	_, body := get(t, m.Handler(), "/metrics")
	for _, name := range []string{"popbridge_build_info{goversion=", "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestUnknownPathsAndMethodsAreRefused(t *testing.T) {
	h := New("test").Handler()
	if code, _ := get(t, h, "/"); code != 404 {
		t.Errorf("GET / = %d, want 404", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d, want 405", rec.Code)
	}
}
