package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"

	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
)

// limits.auth_failure_delay in the config file reaches the server: a wrong
// password is answered -ERR [AUTH] no sooner than the delay (every other
// test sets it to 0, so that nothing else would notice it got lost).
func TestConfiguredAuthFailureDelayHoldsTheAnswer(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	up, err := memimap.Listen(memimap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	up.AddUser("alice", "secret")
	pop3, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
	b := startBridge(t, fmt.Sprintf(`listen:
  - address: %q
upstream:
  address: %q
  tls: none
limits:
  auth_failure_delay: %s
metrics:
  listen: %q
  probe_interval: 100ms
`, pop3, up.Addr, delay, metrics), metrics)

	c := pop3test.Dial(t, pop3)
	c.OK("USER alice")
	start := time.Now()
	resp := c.Cmd("PASS wrong")
	if took := time.Since(start); took < delay {
		t.Errorf("wrong password answered after %v, want at least the configured %v", took, delay)
	}
	if !strings.HasPrefix(resp, "-ERR [AUTH]") {
		t.Errorf("wrong password: %q, want -ERR [AUTH]", resp)
	}
	// The right password still works on the same connection.
	c.OK("USER alice")
	c.OK("PASS secret")
	if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
		t.Errorf("QUIT = %q\n%s", resp, b.stderr.String())
	}
}
