package config

import (
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/state"
)

func TestLimitsAndBoundsDefaults(t *testing.T) {
	cfg := checked(t, "upstream:\n  address: imap.example.com:993\nupstreams:\n  b:\n    address: b:993\n")
	l := cfg.Limits
	if l.MaxConnections != 0 || l.MaxConnectionsPerIP != DefaultMaxConnectionsPerIP || l.AuthTimeout != time.Minute {
		t.Errorf("limits: %+v", l)
	}
	for name, u := range map[string]UpstreamConfig{"upstream": cfg.Upstream, "upstreams.b": cfg.Upstreams["b"]} {
		if u.ForwardClientAddress == nil || !*u.ForwardClientAddress || u.MaxMessages != imapback.DefaultMaxMessages ||
			u.MaxLiteralBytes != imapback.DefaultMaxLiteral || u.MaxResponseBytes != imapback.DefaultMaxResponse {
			t.Errorf("%s: bounds not filled in: %+v", name, u)
		}
	}
	if cfg.State != (state.Config{}) {
		t.Errorf("no state section, yet %+v", cfg.State)
	}
}

func TestLimitsStateAndBoundsFromYAML(t *testing.T) {
	cfg := checked(t, `
upstream:
  address: imap.example.com:993
  forward_client_address: false
  max_messages: 5000
  max_response_bytes: 8388608
  max_literal_bytes: 65536
limits:
  max_connections: -1
  max_connections_per_ip: -1
  auth_timeout: 20s
state:
  address: redis.example.com:6379
  key_prefix: "site-a:"
  on_failure:
    logins: closed
`)
	u, l, s := cfg.Upstream, cfg.Limits, cfg.State
	if *u.ForwardClientAddress || u.MaxMessages != 5000 || u.MaxResponseBytes != 8<<20 || u.MaxLiteralBytes != 64<<10 {
		t.Errorf("upstream: %+v", u)
	}
	if l.MaxConnections != NoLimit || l.MaxConnectionsPerIP != NoLimit || l.AuthTimeout != 20*time.Second {
		t.Errorf("limits: %+v", l)
	}
	if s.KeyPrefix != "site-a:" || s.OnFailure.Logins != state.FailClosed || s.OnFailure.Locks != state.FailClosed ||
		s.LeaseTTL != state.DefaultLeaseTTL {
		t.Errorf("state defaults not filled in: %+v", s)
	}
}

func TestLimitsStateAndBoundsErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"limits:\n  max_connections: -2\n", "limits.max_connections"},
		{"limits:\n  max_connections_per_ip: -5\n", "limits.max_connections_per_ip"},
		{"limits:\n  auth_timeout: -1s\n", "limits.auth_timeout"},
		{"upstream:\n  address: a:993\n  max_messages: -1\n", "upstream.max_messages"},
		{"upstream:\n  address: a:993\n  max_literal_bytes: 100\n", "upstream.max_literal_bytes"},
		{"upstream:\n  address: a:993\n  max_response_bytes: 2147483648\n", "upstream.max_response_bytes"},
		{"upstream:\n  address: a:993\n  max_literal_bytes: 8388608\n", "larger than upstream.max_response_bytes"},
		{"state:\n  key_prefix: x\n", "state.address is empty"},
		{"state:\n  address: nowhere\n", "state.address"},
		{"state:\n  address: r:6379\n  on_failure:\n    locks: maybe\n", "state.on_failure.locks"},
	} {
		y := tc.yaml
		if !strings.Contains(y, "upstream:") {
			y += "upstream:\n  address: a:993\n"
		}
		if _, err := parsed(t, y); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %q", y, err, tc.want)
		}
	}
}

func TestCheckFillsSecurityDefaults(t *testing.T) {
	cfg := checked(t, "upstream:\n  address: imap.example.com:993\n")
	l := cfg.Limits
	if cfg.Listen[0].TLS != "none" || cfg.Listen[0].MinVersion != "1.2" || cfg.Listen[0].ProxyProtocol ||
		strings.Join(cfg.TrustedNetworks, ",") != "127.0.0.0/8,::1/128" ||
		*l.AuthFailuresPerIP != 30 || *l.AuthFailuresPerUser != 10 || l.AuthFailureWindow != 10*time.Minute ||
		l.HandshakeTimeout != 30*time.Second || l.MaxConnectionsPerIP != DefaultMaxConnectionsPerIP ||
		l.AuthTimeout != time.Minute || l.MaxConnections != 0 || // 0: derived from the descriptor limit
		cfg.Upstream.InsecureSkipVerify || !*cfg.Upstream.ForwardClientAddress ||
		cfg.Upstream.MaxMessages != imapback.DefaultMaxMessages {
		t.Errorf("security defaults not filled in: %+v", cfg)
	}
	// An explicit empty list trusts no one; explicit zeros turn limits off.
	cfg = checked(t, "upstream:\n  address: a:993\ntrusted_networks: []\nlimits:\n  auth_failures_per_ip: 0\n")
	if cfg.TrustedNetworks == nil || len(cfg.TrustedNetworks) != 0 || *cfg.Limits.AuthFailuresPerIP != 0 {
		t.Errorf("explicit values replaced: trusted %v, per ip %d", cfg.TrustedNetworks, *cfg.Limits.AuthFailuresPerIP)
	}
}
