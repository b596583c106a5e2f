package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// /readyz names the upstream that is down, in text and in JSON, and the
// probe gauges carry the upstream's name.
func TestReadyzSaysWhichUpstreamIsDown(t *testing.T) {
	m := New("test")
	h := m.Handler()
	m.SetReadyCheck(func() error { return nil })
	m.ProbeDone(map[string]error{"default": nil, "old": nil})
	m.ProbeDone(map[string]error{"default": nil, "archive": errors.New("dial tcp 10.0.0.9:993: connection refused")})
	code, body := get(t, h, "/readyz")
	want := "ready\nupstream archive: down: dial tcp 10.0.0.9:993: connection refused\nupstream default: up\n"
	if code != 200 || body != want {
		t.Errorf("/readyz = %d %q, want 200 %q", code, body, want)
	}
	code, body = get(t, h, "/readyz?format=json")
	want = `{"ready":true,"upstreams":[{"name":"archive","up":false,"error":"dial tcp 10.0.0.9:993: connection refused"},{"name":"default","up":true}]}` + "\n"
	if code != 200 || body != want {
		t.Errorf("/readyz?format=json = %d %s, want 200 %s", code, body, want)
	}
	_, metrics := get(t, h, "/metrics")
	for _, line := range []string{`popbridge_upstream_probe_success{upstream="archive"} 0`, `popbridge_upstream_probe_success{upstream="default"} 1`} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	// An upstream removed by a reload leaves /readyz and the metrics.
	if strings.Contains(body, "old") || strings.Contains(metrics, `upstream="old"`) {
		t.Errorf("a removed upstream is still shown:\n%s\n%s", body, metrics)
	}
}

// Every upstream metric carries the upstream's name, pre-created at zero.
func TestUpstreamMetricsCarryTheUpstreamName(t *testing.T) {
	m := New("test")
	o := m.Upstream().Named("archive")
	o.Connected(time.Millisecond, errors.New("refused"))
	o.CommandDone("SELECT", time.Millisecond, nil)
	_, metrics := get(t, m.Handler(), "/metrics")
	for _, line := range []string{
		`popbridge_upstream_connection_errors_total{stage="connect",upstream="archive"} 1`,
		`popbridge_upstream_connection_errors_total{stage="command",upstream="archive"} 0`,
		`popbridge_upstream_connection_errors_total{stage="connect",upstream="default"} 0`,
		`popbridge_upstream_command_duration_seconds_count{command="SELECT",upstream="archive"} 1`,
		`popbridge_upstream_connect_duration_seconds_count{upstream="archive"} 1`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

func TestCertificateExpiryIsATimestamp(t *testing.T) {
	m := New("test")
	m.CertificateLoaded("listener", "0.0.0.0:995", time.Unix(1900000000, 0))
	_, metrics := get(t, m.Handler(), "/metrics")
	if line := `popbridge_certificate_expiry_seconds{kind="listener",name="0.0.0.0:995"} 1.9e+09`; !strings.Contains(metrics, line+"\n") {
		t.Errorf("/metrics lacks %s", line)
	}
	m.CertificatesReset()
	if _, metrics := get(t, m.Handler(), "/metrics"); strings.Contains(metrics, "popbridge_certificate_expiry_seconds{") {
		t.Errorf("after a reset /metrics still has a certificate")
	}
}
