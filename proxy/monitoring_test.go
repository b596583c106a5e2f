package proxy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/metrics"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

var metricName = regexp.MustCompile(`\bpopbridge_[a-z0-9_]+`)

// registeredNames runs a session so that every labelled metric has a
// series, and returns the names a query can use (histograms with their
// _bucket, _count and _sum series).
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	u := startMemUpstream(t)
	deliverN(t, u, 1)
	m := metrics.New("test")
	c := pop3test.Dial(t, startProxy(t, u.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream(), State: m.State(), Sizes: m.Sizes()}}).addr)
	c.Login(u.user, u.pass)
	c.Multi("RETR 1")
	c.Quit()
	waitForMetric(t, m.Registry(), 1, "popbridge_pop3_session_duration_seconds")
	// A refused connection (pop3front's tests cover when that happens).
	m.POP3().ConnRefused(pop3front.ConnEvent{Listener: "127.0.0.1:110"})
	// An OAuth2 token request (the token cache's tests cover when).
	var tokens oauth2.TokenObserver = m.Tokens()
	tokens.TokenRequest("m365", oauth2.RefreshOK, 1e9)
	// A probe and a certificate (the runner's and the listeners' tests
	// cover when).
	m.ProbeDone(map[string]error{"default": nil})
	m.CertificateLoaded("listener", "127.0.0.1:995", time.Now())
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string]bool)
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// readMonitoringFile decodes the file name of deploy/monitoring into v.
func readMonitoringFile(t *testing.T, name string, unmarshal func([]byte, any) error, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../deploy/monitoring", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// dashboardExprs returns every PromQL expression of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var dash any
	readMonitoringFile(t, "grafana-dashboard.json", json.Unmarshal, &dash)
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	return exprs
}

type alertRules struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	var rules alertRules
	readMonitoringFile(t, "popbridge-alerts.yaml", yaml.Unmarshal, &rules)
	exprs := make(map[string]string)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr
		}
	}
	return exprs
}

// The alert rules, the dashboard and docs/operations.md name only metrics
// that popbridge exports, and the docs name every one of them.
func TestMonitoringUsesRealMetricNames(t *testing.T) {
	names := registeredNames(t)
	check := func(where, expr string) {
		t.Helper()
		found := metricName.FindAllString(expr, -1)
		for _, n := range found {
			if !names[n] {
				t.Errorf("%s uses %s, which popbridge does not export", where, n)
			}
		}
	}
	alerts := alertExprs(t)
	for _, want := range []string{"PopbridgeNotReady", "PopbridgeLoginFailureRateHigh", "PopbridgeUpstreamErrors", "PopbridgeTruncatedTransfers"} {
		if alerts[want] == "" {
			t.Errorf("no alert %s", want)
		}
	}
	for name, expr := range alerts {
		check("alert "+name, expr)
	}
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Errorf("dashboard has %d queries", len(exprs))
	}
	for _, expr := range exprs {
		check("dashboard query "+expr, expr)
	}
	docs, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	check("docs/operations.md", string(docs))
	for n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		if strings.HasPrefix(n, "popbridge_") && names[base] && !strings.Contains(string(docs), base) {
			t.Errorf("docs/operations.md does not document %s", base)
		}
	}
}

// promtool parses every dashboard query (as a recording rule) and the
// alert rules.
func TestMonitoringQueriesParse(t *testing.T) {
	promtool := testkit.Program(t, "promtool")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	r := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*", "$job", ".*")
	exprs := dashboardExprs(t)
	slices.Sort(exprs)
	for i, e := range exprs {
		q, _ := json.Marshal(r.Replace(e))
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{path, "../deploy/monitoring/popbridge-alerts.yaml"} {
		out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", filepath.Base(file), err, out)
		}
	}
}
