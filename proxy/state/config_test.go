package state

// Tests of Config.Check and Config.WithDefaults.

import (
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

func TestConfigCheck(t *testing.T) {
	const addr = "redis.example:6379"
	cases := []struct {
		cfg  Config
		want string // "" for no error, else a part of the message
	}{
		{Config{}, ""},
		{Config{Address: addr}, ""},
		{Config{Address: "[::1]:6380", TLS: true, CAFile: "/etc/ca.pem", OnFailure: FailModes{Logins: FailClosed, Locks: FailOpen}}, ""},
		{Config{KeyPrefix: "x:"}, "state.address is empty"},
		{Config{Address: "redis.example"}, "state.address"},
		{Config{Address: ":6379"}, "state.address"},
		{Config{Address: "redis.example:0"}, "state.address"},
		{Config{Address: "redis.example:http"}, "state.address"},
		{Config{Address: addr, CAFile: "/etc/ca.pem"}, "state.ca_file"},
		{Config{Address: addr, DialTimeout: -time.Second}, "state.dial_timeout"},
		{Config{Address: addr, CommandTimeout: -time.Second}, "state.command_timeout"},
		{Config{Address: addr, LeaseTTL: 2 * time.Second}, "state.lease_ttl"},
		{Config{Address: addr, CommandTimeout: 100 * time.Millisecond, LeaseTTL: 300 * time.Millisecond}, ""},
		{Config{Address: addr, OnFailure: FailModes{Locks: "maybe"}}, "state.on_failure.locks"},
		{Config{Address: addr, OnFailure: FailModes{Connections: "Open"}}, "state.on_failure.connections"},
	}
	for _, c := range cases {
		testkit.WantError(t, c.cfg, c.cfg.Check(), c.want)
	}
}

func TestConfigDefaults(t *testing.T) {
	if got := (Config{}).WithDefaults(); got != (Config{}) {
		t.Errorf("in-process config gained defaults: %+v", got)
	}
	got := Config{Address: "r:6379", OnFailure: FailModes{Logins: FailClosed}}.WithDefaults()
	want := Config{
		Address: "r:6379", KeyPrefix: "popbridge:",
		DialTimeout: time.Second, CommandTimeout: time.Second, LeaseTTL: 30 * time.Second,
		OnFailure: FailModes{Logins: FailClosed, Connections: FailOpen, Locks: FailClosed},
	}
	if got != want {
		t.Errorf("WithDefaults:\n got %+v\nwant %+v", got, want)
	}
}
