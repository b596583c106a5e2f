package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/metrics"
)

// metricValue returns the value of a counter or gauge, or the sample count
// of a histogram, with exactly the given labels ("name=value" pairs); -1
// if there is no such series.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if !contains(labels, l.GetName()+"="+l.GetValue()) {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A scripted session, sent pipelined, leaves exact counter values: every
// command by result, logins by result, bytes as the client counted them,
// messages retrieved and deleted, and the upstream commands it took.
func TestMetricsCountAScriptedSessionExactly(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		m := metrics.New("test")
		addr := startProxy(t, u.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()}}).addr
		reg := m.Registry()

		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		script := []string{"CAPA", "USER " + u.user, "PASS wrong", "USER " + u.user, "PASS " + u.pass, "STAT", "LIST", "UIDL",
			"RETR 1", "TOP 2 0", "RETR 9", "DELE 1", "NOOP", "XYZZY", "QUIT"}
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := nc.Write([]byte(strings.Join(script, "\r\n") + "\r\n")); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(nc)
		if err != nil {
			t.Fatalf("reading the answers: %v", err)
		}
		if !strings.Contains(string(got), "+OK Logging out, 1 messages deleted\r\n") {
			t.Fatalf("session did not end with a confirmed delete:\n%s", got)
		}
		// The connection's last metrics come after its upstream logout.
		waitForMetric(t, reg, 1, "popbridge_pop3_session_duration_seconds")

		for _, tc := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"popbridge_pop3_connections_total", []string{"listener=" + addr, "tls=false"}, 1},
			{"popbridge_pop3_open_connections", []string{"listener=" + addr}, 0},
			{"popbridge_pop3_logins_total", []string{"result=ok"}, 1},
			{"popbridge_pop3_logins_total", []string{"result=auth_failed"}, 1},
			{"popbridge_pop3_logins_total", []string{"result=upstream_error"}, 0},
			{"popbridge_pop3_commands_total", []string{"command=CAPA", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=USER", "result=ok"}, 2},
			{"popbridge_pop3_commands_total", []string{"command=PASS", "result=err"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=PASS", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=STAT", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=LIST", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=UIDL", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=RETR", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=RETR", "result=err"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=TOP", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=DELE", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=NOOP", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=UNKNOWN", "result=err"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=QUIT", "result=ok"}, 1},
			{"popbridge_pop3_commands_total", []string{"command=QUIT", "result=aborted"}, 0},
			{"popbridge_pop3_sent_bytes_total", nil, float64(len(got))},
			{"popbridge_pop3_messages_retrieved_total", nil, 1},
			{"popbridge_pop3_messages_deleted_total", nil, 1},
			{"popbridge_pop3_truncated_transfers_total", nil, 0},
			{"popbridge_upstream_command_duration_seconds", []string{"upstream=default", "command=SELECT"}, 1},
			{"popbridge_upstream_command_duration_seconds", []string{"upstream=default", "command=UID STORE"}, 1},
			{"popbridge_upstream_command_duration_seconds", []string{"upstream=default", "command=UID EXPUNGE"}, 1},
			{"popbridge_upstream_command_duration_seconds", []string{"upstream=default", "command=NOOP"}, 1},
			{"popbridge_upstream_command_duration_seconds", []string{"upstream=default", "command=LOGOUT"}, 1},
			// One snapshot, and the first batch of RETR 1, which holds
			// the whole small mailbox: TOP 2 is served from it.
			{"popbridge_upstream_command_duration_seconds", []string{"upstream=default", "command=UID FETCH"}, 2},
			{"popbridge_upstream_connect_duration_seconds", []string{"upstream=default"}, 2},
			{"popbridge_upstream_connection_errors_total", []string{"upstream=default", "stage=connect"}, 0},
			{"popbridge_upstream_connection_errors_total", []string{"upstream=default", "stage=command"}, 0},
		} {
			if v := metricValue(t, reg, tc.name, tc.labels...); v != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, v, tc.want)
			}
		}
		// Two logins, by LOGIN or AUTHENTICATE as the upstream offers.
		if v := metricValue(t, reg, "popbridge_upstream_command_duration_seconds", "upstream=default", "command=LOGIN") +
			metricValue(t, reg, "popbridge_upstream_command_duration_seconds", "upstream=default", "command=AUTHENTICATE"); v != 2 {
			t.Errorf("upstream logins = %v, want 2", v)
		}
	})
}

// An upstream cut in the middle of a RETR counts as a truncated transfer
// and a broken upstream connection, and an upstream that cannot be
// reached as a connection error and an upstream_error login.
func TestMetricsCountUpstreamFailures(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		u.deliver(t, testMessage(1, strings.Repeat("a long line of text in a big message\r\n", 90000)))
		relay := faultrelay.New(t, u.addr)
		m := metrics.New("test")
		reg := m.Registry()
		viaRelay := *u
		viaRelay.addr = relay.Addr
		addr := startProxy(t, viaRelay.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()}}).addr

		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		// The upstream dies in the second chunk (3.3 MB in 1 MiB chunks).
		relay.Arm(faultrelay.Fault{Dir: faultrelay.Down, Offset: 1536 << 10, Action: faultrelay.Cut})
		c.Send("RETR 1")
		waitForMetric(t, reg, 1, "popbridge_pop3_session_duration_seconds")

		// A second proxy with the same metrics, its upstream a closed port.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := *u
		dead.addr = ln.Addr().String()
		ln.Close()
		c2 := pop3test.Dial(t, startProxy(t, dead.addr, proxyOptions{hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()}}).addr)
		c2.OK("USER " + u.user)
		if resp := c2.Cmd("PASS " + u.pass); !strings.HasPrefix(resp, "-ERR [SYS/TEMP]") {
			t.Errorf("login with the upstream down: %q", resp)
		}
		for _, tc := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"popbridge_pop3_truncated_transfers_total", nil, 1},
			{"popbridge_pop3_commands_total", []string{"command=RETR", "result=aborted"}, 1},
			{"popbridge_pop3_messages_retrieved_total", nil, 0},
			{"popbridge_pop3_logins_total", []string{"result=ok"}, 1},
			{"popbridge_pop3_logins_total", []string{"result=upstream_error"}, 1},
			{"popbridge_upstream_connection_errors_total", []string{"upstream=default", "stage=connect"}, 1},
			{"popbridge_upstream_connection_errors_total", []string{"upstream=default", "stage=command"}, 1},
		} {
			if v := metricValue(t, reg, tc.name, tc.labels...); v != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, v, tc.want)
			}
		}
	})
}

// waitForMetric waits until a metric has the value want.
func waitForMetric(t *testing.T, reg prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); metricValue(t, reg, name, labels...) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, metricValue(t, reg, name, labels...), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
