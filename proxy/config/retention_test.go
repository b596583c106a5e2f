package config

import (
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
		cfg, err := ParseConfig([]byte(base + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		testkit.WantError(t, tc.yaml, cfg.Check(), tc.want)
	}
	cfg, err := ParseConfig([]byte(base + "policy:\n  retention_days: 14\n  rules:\n    - devices: [scanner]\n      retention_days: 0\n"))
	if err != nil || cfg.Policy.RetentionDays != 14 || cfg.Policy.Rules[0].RetentionDays == nil || *cfg.Policy.Rules[0].RetentionDays != 0 {
		t.Errorf("parsed %+v, %v; want 14 and a rule's explicit 0", cfg.Policy, err)
	}
}
