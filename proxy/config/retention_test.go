package config

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// retention_days, in the policy and in rules: days from 0 (never) to a
// hundred years, each error naming the setting and its line.
func TestRetentionChecks(t *testing.T) {
	const base = "upstream:\n  address: 127.0.0.1:143\n"
	for _, tc := range []struct{ yaml, want string }{
		{"policy:\n  retention_days: 30\n", ""},
		{"policy:\n  retention_days: 0\n", ""},
		{"policy:\n  retention_days: -1\n", "policy.retention_days (line 4): -1 is not a number of days from 0 (never) to 36500"},
		{"policy:\n  retention_days: 36501\n", "policy.retention_days"},
		{"policy:\n  retention_days: 7\n  rules:\n    - devices: [scanner]\n      retention_days: 0\n", ""},
		{"policy:\n  rules:\n    - users: [a]\n      retention_days: -3\n", "policy.rules[0].retention_days (line 6): -3 is not"},
	} {
		_, err := parsed(t, base+tc.yaml)
		testkit.WantError(t, tc.yaml, err, tc.want)
	}
	cfg, err := ParseConfig([]byte(base + "policy:\n  retention_days: 14\n  rules:\n    - devices: [scanner]\n      retention_days: 0\n"))
	if err != nil || cfg.Policy.RetentionDays != 14 || cfg.Policy.Rules[0].RetentionDays == nil || *cfg.Policy.Rules[0].RetentionDays != 0 {
		t.Errorf("parsed %+v, %v; want 14 and a rule's explicit 0", cfg.Policy, err)
	}
}

// retention_days that no session can act on (delete: keep, no device view,
// no rule that deletes, no hook) is accepted with a warning naming the
// key: the config still starts, and a later edit may give it work.
func TestRetentionWithKeepAndNoDeviceIsAWarning(t *testing.T) {
	const base = "upstream:\n  address: 127.0.0.1:143\npolicy:\n  retention_days: 30\n"
	for _, tc := range []struct {
		yaml string
		warn bool
	}{
		{"  delete: keep\n", true},
		{"  delete: keep\n  rules:\n    - devices: [scanner]\n      seen: never\n", true},
		{"  delete: keep\n  rules:\n    - users: [archive]\n      delete: keep\n", true},
		{"  delete: expunge\n", false},
		{"  delete: flag\n", false},
		{"  delete: keep\n  devices:\n    separator: \"+\"\n", false},
		{"  delete: keep\n  devices:\n    addresses:\n      - {network: 10.0.0.0/8, device: scanner}\n", false},
		{"  delete: keep\n  rules:\n    - users: [bob]\n      delete: expunge\n", false},
		{"  delete: keep\nauth_http:\n  url: http://127.0.0.1:9000/auth\n", false},
	} {
		cfg := checked(t, base+tc.yaml)
		var got []string
		for _, w := range cfg.Warnings() {
			if strings.Contains(w, "retention") {
				got = append(got, w)
			}
		}
		if tc.warn && (len(got) != 1 || !strings.HasPrefix(got[0], "policy.retention_days 30 removes nothing")) || !tc.warn && len(got) != 0 {
			t.Errorf("%q: retention warnings %q, want one: %v", tc.yaml, got, tc.warn)
		}
	}
	if w := checked(t, "upstream:\n  address: 127.0.0.1:143\npolicy:\n  delete: keep\n").Warnings(); len(w) != 0 {
		t.Errorf("keep without retention: warnings %q, want none", w)
	}
}
