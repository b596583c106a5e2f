package proxy

import (
	"crypto/tls"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/metrics"
	"github.com/popbridge/popbridge/proxy/config"
)

// Counters say what happened, end to end: the command a real client
// sent, what the upstream did at QUIT, why a login was refused, and when
// the certificates in use expire.

// curl logs in with AUTH PLAIN and a continuation line (no initial
// response unless --sasl-ir): that is one AUTH command, not UNKNOWN.
func TestMetricsCountCurlsAuthPlainAsAuth(t *testing.T) {
	curl := testkit.Program(t, "curl")
	u := startMemUpstream(t)
	deliverN(t, u, 1)
	m := metrics.New("test")
	addr := startProxy(t, u.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()}}).addr
	out, err := exec.Command(curl, "-sS", "--max-time", "30", "pop3://"+u.user+":"+u.pass+"@"+addr+"/").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "1 ") {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	reg := m.Registry()
	waitForMetric(t, reg, 1, "popbridge_pop3_session_duration_seconds")
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"command=AUTH", "result=ok"}, 1},
		{[]string{"command=UNKNOWN", "result=err"}, 0},
		{[]string{"command=LIST", "result=ok"}, 1},
	} {
		if v := metricValue(t, reg, "popbridge_pop3_commands_total", tc.labels...); v != tc.want {
			t.Errorf("popbridge_pop3_commands_total%v = %v, want %v", tc.labels, v, tc.want)
		}
	}
	if v := metricValue(t, reg, "popbridge_pop3_logins_total", "result=ok"); v != 1 {
		t.Errorf("logins ok = %v, want 1", v)
	}
}

// With delete: keep or flag, QUIT removes nothing upstream: its answer
// says so and messages_deleted_total stays at 0.
func TestMetricsCountOnlyMessagesRemovedUpstream(t *testing.T) {
	for _, tc := range []struct {
		policy      imapback.DeletePolicy
		wantQuit    string
		wantDeleted float64
	}{
		{"keep", "+OK Logging out, 2 messages kept on the server", 0},
		{"flag", "+OK Logging out, 2 messages marked deleted on the server", 0},
		{"expunge", "+OK Logging out, 2 messages deleted", 2},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			u := startMemUpstream(t)
			deliverN(t, u, 3)
			m := metrics.New("test")
			addr := startProxy(t, u.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()},
				configure: func(c *config.Config) { c.Policy.Delete = tc.policy }}).addr
			c := pop3test.Dial(t, addr)
			c.Login(u.user, u.pass)
			c.OK("DELE 1")
			c.OK("DELE 2")
			if got := c.Cmd("QUIT"); got != tc.wantQuit {
				t.Errorf("QUIT = %q, want %q", got, tc.wantQuit)
			}
			waitForMetric(t, m.Registry(), 1, "popbridge_pop3_session_duration_seconds")
			if v := metricValue(t, m.Registry(), "popbridge_pop3_messages_deleted_total"); v != tc.wantDeleted {
				t.Errorf("messages_deleted_total = %v, want %v", v, tc.wantDeleted)
			}
		})
	}
}

// A login refused because another session holds the maildrop
// (limits.lock_session) is in_use, not an upstream error.
func TestMetricsCountAnInUseRefusalAsInUse(t *testing.T) {
	u := startMemUpstream(t)
	deliverN(t, u, 1)
	m := metrics.New("test")
	addr := startProxy(t, u.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()},
		configure: func(c *config.Config) { c.Limits.LockSession = true }}).addr
	first := pop3test.Dial(t, addr)
	first.Login(u.user, u.pass)
	second := pop3test.Dial(t, addr)
	second.OK("USER " + u.user)
	if got := second.Cmd("PASS " + u.pass); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Fatalf("second login = %q, want -ERR [IN-USE]", got)
	}
	first.Quit()
	reg := m.Registry()
	for result, want := range map[string]float64{"ok": 1, "in_use": 1, "upstream_error": 0} {
		if v := metricValue(t, reg, "popbridge_pop3_logins_total", "result="+result); v != want {
			t.Errorf("logins_total{result=%q} = %v, want %v", result, v, want)
		}
	}
}

// A listener's certificate reports its notAfter when it is loaded; a
// reload that fails keeps the report, one that removes the listener
// removes it.
func TestMetricsCarryTheListenerCertificateExpiry(t *testing.T) {
	u := startMemUpstream(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testkit.WriteSelfSigned(t, certFile, keyFile, 1)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("test")
	withTLS := func(c *config.Config) {
		c.Listen = []config.ListenConfig{{Address: "127.0.0.1:0", TLS: config.ListenTLSStartTLS, CertFile: certFile, KeyFile: keyFile}}
	}
	r := startRunnerWith(t, runnerConfig(t, u.addr, "127.0.0.1:0", withTLS), RunnerOptions{Hooks: Hooks{Certificates: m}})
	expiry := func() float64 {
		return metricValue(t, m.Registry(), "popbridge_certificate_expiry_seconds", "kind=listener", "name=127.0.0.1:0")
	}
	if v, want := expiry(), float64(pair.Leaf.NotAfter.Unix()); v != want {
		t.Errorf("certificate expiry = %v, want %v (%v)", v, want, pair.Leaf.NotAfter)
	}
	// A reload whose build fails (the upstream's client key is missing)
	// leaves the report of the running configuration.
	broken := runnerConfig(t, u.addr, "127.0.0.1:0", withTLS)
	broken.Upstream.CertFile, broken.Upstream.KeyFile = certFile, filepath.Join(dir, "missing.key")
	if err := r.Reload(broken); err == nil {
		t.Fatal("a reload with a missing key succeeded")
	}
	if v := expiry(); v <= 0 {
		t.Errorf("after a failed reload: certificate expiry = %v, want it kept", v)
	}
	if err := r.Reload(runnerConfig(t, u.addr, "127.0.0.1:0", nil)); err != nil {
		t.Fatal(err)
	}
	if v := expiry(); v != -1 {
		t.Errorf("after a reload without TLS: certificate expiry = %v, want no series", v)
	}
}

// With two upstreams, one down: the process stays ready, /readyz names
// the one that is down, and the probe and connection metrics carry the
// upstreams' names.
func TestReadyzAndUpstreamMetricsNameTheUpstream(t *testing.T) {
	u := startMemUpstream(t)
	dead := testkit.FreeAddr(t) // nothing listens there
	m := metrics.New("test")
	cfg := runnerConfig(t, u.addr, "127.0.0.1:0", func(c *config.Config) {
		c.Upstreams = map[string]config.UpstreamConfig{"archive": {Address: dead, TLS: "none"}}
	})
	r := startRunnerWith(t, cfg, RunnerOptions{Hooks: Hooks{Upstream: m.Upstream()}, OnProbe: m.ProbeDone})
	m.SetReadyCheck(r.Ready)
	h := m.Handler()
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		body = rec.Body.String()
		if rec.Code == 200 && strings.Contains(body, "upstream archive: down: ") && strings.Contains(body, "upstream default: up\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q, want 200 naming archive down and default up", rec.Code, body)
		}
	}
	reg := m.Registry()
	if v := metricValue(t, reg, "popbridge_upstream_probe_success", "upstream=archive"); v != 0 {
		t.Errorf("probe_success{archive} = %v, want 0", v)
	}
	if v := metricValue(t, reg, "popbridge_upstream_probe_success", "upstream=default"); v != 1 {
		t.Errorf("probe_success{default} = %v, want 1", v)
	}
	if v := metricValue(t, reg, "popbridge_upstream_connection_errors_total", "upstream=archive", "stage=connect"); v < 1 {
		t.Errorf("connection_errors_total{archive,connect} = %v, want at least 1", v)
	}
	if v := metricValue(t, reg, "popbridge_upstream_connection_errors_total", "upstream=default", "stage=connect"); v != 0 {
		t.Errorf("connection_errors_total{default,connect} = %v, want 0", v)
	}
}

// The snapshot cache is on by default: a second login to an unchanged
// mailbox is a hit, one after new mail a partial hit, and the bytes in
// use are shown; with the cache off nothing is counted.
func TestMetricsCountSnapshotCacheOutcomes(t *testing.T) {
	for _, off := range []bool{false, true} {
		u := startMemUpstream(t)
		deliverN(t, u, 2)
		m := metrics.New("test")
		addr := startProxy(t, u.addr, proxyOptions{hooks: Hooks{Upstream: m.Upstream()}, configure: func(c *config.Config) {
			if off {
				zero := int64(0)
				c.Performance.SnapshotCacheBytes = &zero
			}
		}}).addr
		stat := func(want int) {
			c := pop3test.Dial(t, addr)
			c.Login(u.user, u.pass)
			if n, _ := c.Stat(); n != want {
				t.Fatalf("STAT: %d messages, want %d", n, want)
			}
			c.Quit()
		}
		stat(2)
		stat(2)
		deliverN(t, u, 1)
		stat(3)
		reg := m.Registry()
		want := map[string]float64{"miss": 1, "hit": 1, "partial": 1}
		if off {
			want = map[string]float64{"miss": 0, "hit": 0, "partial": 0}
		}
		for outcome, n := range want {
			if v := metricValue(t, reg, "popbridge_upstream_snapshot_cache_total", "upstream=default", "outcome="+outcome); v != n {
				t.Errorf("cache off %v: %s = %v, want %v", off, outcome, v, n)
			}
		}
		if v := metricValue(t, reg, "popbridge_upstream_snapshot_cache_bytes"); (v > 0) == off {
			t.Errorf("cache off %v: %v bytes in use", off, v)
		}
	}
}
