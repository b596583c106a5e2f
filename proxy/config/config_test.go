package config

import (
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// parsed is the configuration yaml holds, which must decode, and what
// its Check says.
func parsed(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	cfg, err := ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatalf("parsing %q: %v", yaml, err)
	}
	return cfg, cfg.Check()
}

// checked is the configuration yaml holds, which must decode and pass
// Check.
func checked(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := parsed(t, yaml)
	if err != nil {
		t.Fatalf("checking %q: %v", yaml, err)
	}
	return cfg
}

func TestCheckFillsDefaults(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		wantTLS imapback.TLSMode
	}{
		{"upstream:\n  address: imap.example.com:993\n", "implicit"},
		{"upstream:\n  address: imap.example.com:143\n", "starttls"},
		{"upstream:\n  address: imap.example.com:1143\n", "starttls"},
		{"upstream:\n  address: 127.0.0.1:993\n  tls: none\n", "none"},
	} {
		cfg := checked(t, tc.yaml)
		if cfg.Upstream.TLS != tc.wantTLS {
			t.Errorf("%q: tls %q, want %q", tc.yaml, cfg.Upstream.TLS, tc.wantTLS)
		}
		if cfg.Listen[0].Address != DefaultListen || cfg.Upstream.Mailbox != "INBOX" ||
			cfg.Policy.Delete != "expunge" || cfg.Policy.Seen != "retr" || cfg.Policy.UIDLFormat != "%08Xu%08Xv" ||
			cfg.Limits.IdleTimeout != 10*time.Minute || *cfg.Limits.AuthFailureDelay != 2*time.Second ||
			cfg.Upstream.CommandTimeout != time.Minute || cfg.Log.Level != "info" || cfg.Log.Format != "text" {
			t.Errorf("%q: defaults not filled in: %+v", tc.yaml, cfg)
		}
	}
}

func TestConfigDecodesDurationsAndAnExplicitZeroDelay(t *testing.T) {
	cfg := checked(t, "upstream:\n  address: a:993\nlimits:\n  idle_timeout: 15m\n  auth_failure_delay: 0s\n")
	if cfg.Limits.IdleTimeout != 15*time.Minute || *cfg.Limits.AuthFailureDelay != 0 {
		t.Errorf("idle %v, auth delay %v; want 15m and 0", cfg.Limits.IdleTimeout, *cfg.Limits.AuthFailureDelay)
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	_, err := parsed(t, "listen:\n  - address: nope\nupstream:\n  address: a:993\n  auth: kerberos\npolicy:\n  delete: shred\nlog:\n  format: xml\n")
	for _, want := range []string{"listen[0].address", "upstream.auth", "policy.delete", "log.format"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to name %s", err, want)
		}
	}
}

func TestShortIdleTimeoutIsAWarningNotAnError(t *testing.T) {
	for idle, want := range map[string]int{"": 0, "idle_timeout: 10m": 0, "idle_timeout: 5m": 1} {
		cfg := checked(t, "upstream: {address: a:993}\nlimits: {"+idle+"}\n")
		if w := cfg.Warnings(); len(w) != want || want > 0 && !strings.Contains(w[0], "limits.idle_timeout") {
			t.Errorf("%q: warnings %q, want %d about limits.idle_timeout", idle, w, want)
		}
	}
}
