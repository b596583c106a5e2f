package proxy

// Several replicas of popbridge sharing one Redis store (issue 20): the
// limits and locks hold across them as they do within one process.

import (
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/redistest"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/state"
)

// sharedLeaseTTL is the lease of the replicas in these tests: short, so
// that a lost holder's lock expires within the test.
const sharedLeaseTTL = 3 * time.Second

// replicas starts n proxies in front of upstreamAddr that share the store
// at storeAddrs[i % len(storeAddrs)], each with configure applied.
func replicas(t *testing.T, n int, upstreamAddr string, storeAddrs []string, configure func(*config.Config)) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = startProxy(t, upstreamAddr, proxyOptions{configure: func(c *config.Config) {
			c.State = state.Config{Address: storeAddrs[i%len(storeAddrs)], LeaseTTL: sharedLeaseTTL}
			if configure != nil {
				configure(c)
			}
		}}).addr
	}
	return addrs
}

// Issue 15, 1 across replicas: 150 guesses spread over three proxies
// that share Redis reach the upstream at most 10 times, the user's limit.
func TestParallelGuessesOverReplicasStayWithinTheLimit(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	up := memUpstream(t)
	up.AddUser("victim", "right")
	logins := countLogins(t, up.Addr)
	addrs := replicas(t, 3, logins.Addr, []string{rs.Addr}, limitedConfig(time.Hour))

	auth, limited := tally(t, guessBurst(t, addrs, "127.0.0.2", 150, func(int) string { return "victim" }))
	t.Logf("%d guesses reached the upstream, %d answered [AUTH], %d rate-limited", logins.n(), auth, limited)
	if got := logins.n(); got > 10 || auth > 10 || auth == 0 {
		t.Errorf("%d guesses reached the upstream over 3 replicas (%d answered [AUTH]), want 1 to 10", got, auth)
	}
}

// lock_session across replicas: a maildrop open on one proxy answers
// [IN-USE] on another; when the holder loses its store (a crashed or cut
// off replica), its session changes nothing at QUIT (-ERR [SYS/TEMP],
// the message stays) and the lock expires within the lease, so the
// other proxy lets the user in.
func TestSessionLockAcrossReplicasAndItsExpiry(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	up := memUpstream(t)
	holderStore := faultrelay.New(t, rs.Addr) // the holder reaches the store through it
	addrs := replicas(t, 2, up.Addr, []string{holderStore.Addr, rs.Addr}, func(c *config.Config) { c.Limits.LockSession = true })

	holder := pop3test.Dial(t, addrs[0])
	holder.Login("alice", "secret")
	holder.OK("DELE 1")
	other := pop3test.Dial(t, addrs[1])
	other.OK("USER alice")
	if got := other.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Fatalf("second session on another replica: %q, want -ERR [IN-USE]", got)
	}

	holderStore.Close() // the holder can no longer renew its lease
	deadline := time.Now().Add(sharedLeaseTTL + 5*time.Second)
	for {
		c := pop3test.Dial(t, addrs[1])
		c.OK("USER alice")
		got := c.Cmd("PASS secret")
		if strings.HasPrefix(got, "+OK") {
			if n, _ := c.Stat(); n != 1 {
				t.Errorf("STAT on the other replica = %d, want 1 (nothing deleted)", n)
			}
			c.Quit()
			break
		}
		if !strings.HasPrefix(got, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("login after the holder lost its store: %q", got)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got := holder.Cmd("QUIT"); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Errorf("QUIT of the session whose lock was lost: %q, want -ERR [SYS/TEMP]", got)
	}
	c := pop3test.Dial(t, addrs[1])
	c.Login("alice", "secret")
	if n, _ := c.Stat(); n != 1 {
		t.Errorf("after the lost session's QUIT, STAT = %d, want 1: it must change nothing", n)
	}
	c.Quit()
}

// Connection counts per address are shared: two replicas with a limit of
// two per address let one address hold two connections in all.
func TestConnectionsPerAddressAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	up := memUpstream(t)
	addrs := replicas(t, 2, up.Addr, []string{rs.Addr}, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 2 })
	for _, a := range addrs {
		if g := greetingFrom(t, "127.0.0.2", a); !strings.HasPrefix(g, "+OK") {
			t.Fatalf("connection within the limit: %q", g)
		}
	}
	if g := greetingFrom(t, "127.0.0.2", addrs[0]); !strings.Contains(g, "Too many connections from your address") {
		t.Errorf("third connection from one address over two replicas: %q", g)
	}
	c := pop3test.DialFrom(t, "127.0.0.3", addrs[1])
	c.Login("alice", "secret")
	c.Quit()
}

// Issue 15, 6 with the shared count: with one connection per address, a
// client that reconnects as soon as it has read QUIT's answer, on either
// replica, is never refused: the slot in the store is free before the
// answer goes out.
func TestReconnectAfterQuitWithASharedSlot(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	up := memUpstream(t)
	addrs := replicas(t, 2, up.Addr, []string{rs.Addr}, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 1 })
	for i := range 40 {
		c := pop3test.DialFrom(t, "127.0.0.2", addrs[i%2])
		if i%4 == 0 {
			c.Login("alice", "secret")
		}
		if got := c.Quit(); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("QUIT %d: %q", i, got)
		}
	}
}

// storeErrorCount counts the store errors the proxy reports, by feature.
type storeErrorCount struct{ testkit.Tally }

func (c *storeErrorCount) StoreError(feature string) { c.Add(feature) }

// The store going away and coming back: the login limits fail open (the
// password is still checked upstream; the store's failure is counted),
// the lock that follows fails closed (-ERR [SYS/TEMP]), and neither waits
// past the command timeout; once the store is back, the lock works again.
func TestStoreOutageFollowsTheFailModes(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	up := memUpstream(t)
	up.AddUser("bob", "pw")
	errs := &storeErrorCount{}
	addr := startProxy(t, up.Addr, proxyOptions{hooks: Hooks{State: errs}, configure: func(c *config.Config) {
		c.State = state.Config{Address: rs.Addr, LeaseTTL: sharedLeaseTTL}
		c.Limits.LockSession = true
	}}).addr

	rs.Stop()
	start := time.Now()
	c := pop3test.Dial(t, addr)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Errorf("login needing a lock while the store is down: %q, want -ERR [SYS/TEMP]", got)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	if errs.Count("logins") == 0 || errs.Count("locks") == 0 {
		t.Errorf("store errors counted: logins %d, locks %d; want both", errs.Count("logins"), errs.Count("locks"))
	}

	rs.Restart()
	holder := pop3test.Dial(t, addr)
	holder.Login("alice", "secret")
	c = pop3test.Dial(t, addr)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Errorf("second session once the store is back: %q, want -ERR [IN-USE]", got)
	}
	holder.Quit()
}
