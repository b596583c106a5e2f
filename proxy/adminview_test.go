package proxy

import (
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// TestAdminViewSeesRetiringSessions: after a reload, a session opened
// before it is still listed (and kickable) through POP3Servers, and
// Config is the new configuration.
func TestAdminViewSeesRetiringSessions(t *testing.T) {
	up := memUpstream(t)
	addr := testkit.FreeAddr(t)
	r := startRunner(t, runnerConfig(t, up.Addr, addr, nil))
	old := pop3test.Dial(t, addr)
	old.Login("alice", "secret")

	next := runnerConfig(t, up.Addr, addr, func(c *config.Config) { c.Policy.Delete = "keep" })
	if err := r.Reload(next); err != nil {
		t.Fatal(err)
	}
	if r.Config() != next {
		t.Error("Config() is not the reloaded configuration")
	}
	srvs := r.POP3Servers()
	if len(srvs) != 2 {
		t.Fatalf("%d POP3 servers after a reload with a session open, want the new and the retiring one", len(srvs))
	}
	if got := srvs[1].Sessions(); len(got) != 1 || got[0].User != "alice" || len(srvs[0].Sessions()) != 0 {
		t.Fatalf("sessions: new %+v, retiring %+v; want alice's on the retiring server", srvs[0].Sessions(), got)
	}
	if n := srvs[1].KickUser("alice"); n != 1 {
		t.Fatalf("KickUser = %d", n)
	}
	// The retiring server ends with its last session.
	for deadline := time.Now().Add(10 * time.Second); len(r.POP3Servers()) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d POP3 servers after the kick, want 1", len(r.POP3Servers()))
		}
	}
	if st := r.OAuthStatus(); st != nil {
		t.Errorf("OAuthStatus without oauth2 accounts = %+v", st)
	}
}
