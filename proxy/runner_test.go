package proxy

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

// runnerConfig is a checked config for upstreamAddr, listening on listen.
func runnerConfig(t *testing.T, upstreamAddr, listen string, configure func(*config.Config)) *config.Config {
	t.Helper()
	cfg := testConfig(upstreamAddr)
	cfg.Listen[0].Address = listen
	cfg.Upstream.DialTimeout, cfg.Upstream.CommandTimeout = 2*time.Second, 5*time.Second
	cfg.Metrics = config.MetricsConfig{ProbeInterval: 20 * time.Millisecond, ProbeTimeout: time.Second}
	if configure != nil {
		configure(cfg)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startRunner serves cfg with a Runner until the test ends.
func startRunner(t *testing.T, cfg *config.Config) *Runner {
	t.Helper()
	return startRunnerWith(t, cfg, RunnerOptions{})
}

// startRunnerWith is startRunner with options; the logger is the test's.
func startRunnerWith(t *testing.T, cfg *config.Config, opts RunnerOptions) *Runner {
	t.Helper()
	opts.Logger = testLogger(t)
	r, err := NewRunner(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		r.Drain(ctx)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Drain")
		}
	})
	return r
}

// waitReady waits until r.Ready() is nil (want "") or its error contains
// want.
func waitReady(t *testing.T, r *Runner, want string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		err = r.Ready()
		if want == "" && err == nil || want != "" && err != nil && strings.Contains(err.Error(), want) {
			return
		}
	}
	t.Fatalf("Ready() = %v, want %q", err, want)
}

// refusedWithin reports whether connections to addr are refused within d.
func refusedWithin(addr string, d time.Duration) bool {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		if time.Now().After(end) {
			return false
		}
	}
}

// Ready follows the life cycle: not before serving, ready once the
// upstream answered a probe, not while the upstream is down, ready again
// when it is back, and never again once draining.
func TestReadinessFollowsListenersUpstreamAndDrain(t *testing.T) {
	up, err := memimap.Listen(memimap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	upAddr := up.Addr
	defer func() { up.Close() }()

	r, err := NewRunner(runnerConfig(t, upAddr, "127.0.0.1:0", nil), RunnerOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "not serving") {
		t.Errorf("before Serve: Ready() = %v, want not serving", err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	waitReady(t, r, "")

	up.Close()
	waitReady(t, r, "upstream probe failed")
	ln, err := net.Listen("tcp", upAddr)
	if err != nil {
		t.Fatalf("rebinding the upstream address: %v", err)
	}
	up = memimap.Start(ln, memimap.Options{})
	waitReady(t, r, "")

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Drain(ctx); err != nil {
		t.Errorf("Drain with no session open: %v", err)
	}
	if err := r.Ready(); err == nil || err.Error() != "draining" {
		t.Errorf("after Drain: Ready() = %v, want draining", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// A reload that moves the listener: the new address serves with the new
// settings, the old one is closed, and a session open on the old one goes
// on with its old settings (here: its QUIT still expunges, although the
// new config keeps mail).
func TestReloadMovesListenerAndOldSessionsKeepTheirSettings(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		// Cyrus and Courier fork a process per connection, whose
		// greeting a loaded machine may delay past runnerConfig's 2 s.
		slowDial := func(c *config.Config) { c.Upstream.DialTimeout = 10 * time.Second }
		r := startRunner(t, runnerConfig(t, u.addr, testkit.FreeAddr(t), slowDial))
		oldAddr := r.Addrs()[0].String()
		old := pop3test.Dial(t, oldAddr)
		old.Login(u.user, u.pass)

		newAddr := testkit.FreeAddr(t)
		if err := r.Reload(runnerConfig(t, u.addr, newAddr, func(c *config.Config) { slowDial(c); c.Policy.Delete = "keep" })); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if got := r.Addrs()[0].String(); got != newAddr {
			t.Errorf("after reload listening on %s, want %s", got, newAddr)
		}
		// A process that another test forks at this moment holds a copy
		// of every descriptor until it execs: the closed socket may
		// accept for that long, which a loaded machine stretches. A
		// socket left open accepts for ever: the bound is generous.
		if !refusedWithin(oldAddr, 10*time.Second) {
			t.Errorf("old address %s still accepts after the reload", oldAddr)
		}

		// The new listener, new settings: DELE and QUIT keep the mail.
		c := pop3test.Dial(t, newAddr)
		c.Login(u.user, u.pass)
		c.OK("DELE 2")
		if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("QUIT on the new listener: %q", resp)
		}
		if n := len(upstreamState(t, u)); n != 3 {
			t.Fatalf("after a QUIT under delete: keep, %d messages upstream, want 3", n)
		}
		// The old session, old settings: its DELE is expunged.
		old.Multi("RETR 1")
		old.OK("DELE 1")
		if resp := old.Quit(); !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("QUIT on the old session: %q", resp)
		}
		if n := len(upstreamState(t, u)); n != 2 {
			t.Errorf("after the old session's QUIT, %d messages upstream, want 2", n)
		}
	})
}

// A reload that keeps the address hands the socket over without closing
// it: clients connecting all through several reloads are all served.
func TestReloadOnTheSameAddressRefusesNoClient(t *testing.T) {
	up := memUpstream(t)
	addr := testkit.FreeAddr(t)
	r := startRunner(t, runnerConfig(t, up.Addr, addr, nil))

	done := make(chan struct{})
	reloads := make(chan int, 1)
	go func() {
		defer close(done)
		n := 0
		for ; n < 20; n++ {
			if err := r.Reload(runnerConfig(t, up.Addr, addr, nil)); err != nil {
				t.Errorf("Reload: %v", err)
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		reloads <- n
	}()
	clients := 0
	for stop := false; !stop; clients++ {
		select {
		case <-done:
			stop = true
		default:
		}
		c := pop3test.Dial(t, addr)
		c.Login("alice", "secret")
		if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("client %d: QUIT answered %q", clients, resp)
		}
	}
	if n := <-reloads; n != 20 || clients < 2 {
		t.Errorf("%d reloads with %d clients served meanwhile", n, clients)
	}
}

// A reload that cannot bind its new address changes nothing: the old
// listener goes on serving.
func TestReloadThatCannotBindKeepsTheOldConfig(t *testing.T) {
	up := listenMem(t, memimap.Options{})
	r := startRunner(t, runnerConfig(t, up.Addr, "127.0.0.1:0", nil))
	addr := r.Addrs()[0].String()

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := runnerConfig(t, up.Addr, "127.0.0.1:0", func(c *config.Config) {
		c.Listen = append(c.Listen, config.ListenConfig{Address: busy.Addr().String()})
	})
	if err := r.Reload(cfg); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Reload onto a busy address: %v, want address already in use", err)
	}
	if got := r.Addrs()[0].String(); got != addr {
		t.Errorf("after a failed reload listening on %s, want %s", got, addr)
	}
	pop3test.Dial(t, addr).Quit()
}

// testLogger logs at debug level to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
