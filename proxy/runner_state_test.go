package proxy

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// The Runner's store outlives reloads: failed logins counted before a
// reload still count after it, and a lock held by a session of the old
// config still holds for a login under the new one. A reload that
// changes the state section is refused, naming it.
func TestRunnerKeepsLimitsAndLocksAcrossReloads(t *testing.T) {
	up := memUpstream(t)
	listen := testkit.FreeAddr(t)
	configure := func(c *config.Config) {
		c.Limits.AuthFailuresPerUser = intp(2)
		c.Limits.LockSession = true
	}
	r := startRunner(t, runnerConfig(t, up.Addr, listen, configure))

	up.AddUser("bob", "right")
	for range 2 {
		c := pop3test.DialFrom(t, "127.0.0.2", listen)
		c.OK("USER bob")
		if got := c.Cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR [AUTH]") {
			t.Fatalf("wrong password: %q", got)
		}
	}
	holder := pop3test.Dial(t, listen)
	holder.Login("alice", "secret")

	if err := r.Reload(runnerConfig(t, up.Addr, listen, configure)); err != nil {
		t.Fatal(err)
	}
	c := pop3test.DialFrom(t, "127.0.0.3", listen)
	c.OK("USER bob")
	if got := c.Cmd("PASS right"); got != rateLimitedAnswer {
		t.Errorf("after a reload, bob's third try: %q, want the failures before it counted", got)
	}
	c = pop3test.Dial(t, listen)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Errorf("after a reload, a second session of alice: %q, want -ERR [IN-USE]", got)
	}
	holder.Quit()

	err := r.Reload(runnerConfig(t, up.Addr, listen, func(c *config.Config) {
		configure(c)
		c.State = state.Config{Address: "127.0.0.1:6379"}
	}))
	if err == nil || !strings.Contains(err.Error(), "state:") || !strings.Contains(err.Error(), "restart") {
		t.Errorf("reload with another state section: %v, want a refusal naming state and a restart", err)
	}
}
