package state

// Behaviours of the Redis store alone: leases of a crashed replica, a
// store that goes away, hangs and comes back, fail modes, TLS, passwords
// and key prefixes.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/redistest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// Short leases and timeouts, for the tests that wait for expiries and
// outages; the renewals every 300 ms leave room for a slow machine.
func shortConfig(addr string) Config {
	return Config{Address: addr, CommandTimeout: 300 * time.Millisecond, LeaseTTL: 900 * time.Millisecond}
}

// slack is how long past CommandTimeout an operation on an unavailable
// store may take on a loaded machine.
const slack = 400 * time.Millisecond

// waitFor polls f every 20 ms until it is true or d has passed, and
// returns how long that took.
func waitFor(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// twoReplicas starts a server and opens two stores on it with
// shortConfig.
func twoReplicas(t *testing.T) (Config, *Redis, *Redis) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := shortConfig(srv.Addr)
	return cfg, openRedis(t, cfg), openRedis(t, cfg)
}

// holdLockAndSlot takes the lock "m" and the only slot of 192.0.2.1.
func holdLockAndSlot(t *testing.T, r *Redis) (*Lease, func()) {
	t.Helper()
	lease, ok, err := r.Lock(context.Background(), "m")
	if !ok || err != nil {
		t.Fatalf("Lock: %v %v", ok, err)
	}
	release, ok, err := r.Acquire(context.Background(), "192.0.2.1", 1)
	if !ok || err != nil {
		t.Fatalf("Acquire: %v %v", ok, err)
	}
	return lease, release
}

func TestCrashedReplicaLeasesExpire(t *testing.T) {
	t.Parallel()
	cfg, a, b := twoReplicas(t)
	ctx := context.Background()
	holdLockAndSlot(t, a)
	a.leases.halt() // the replica dies: no more renewals, no releases
	crashed := time.Now()
	if _, ok, _ := b.Lock(ctx, "m"); ok {
		t.Fatal("another replica took the lock right after the holder crashed")
	}
	if _, ok, _ := b.Acquire(ctx, "192.0.2.1", 1); ok {
		t.Fatal("another replica took the slot right after the holder crashed")
	}
	waitFor(t, cfg.LeaseTTL+slack, "the crashed replica's lock expires", func() bool {
		_, ok, err := b.Lock(ctx, "m")
		return ok && err == nil
	})
	waitFor(t, cfg.LeaseTTL+slack-time.Since(crashed), "the crashed replica's slot expires", func() bool {
		_, ok, err := b.Acquire(ctx, "192.0.2.1", 1)
		return ok && err == nil
	})
}

func TestLeasesRenewedWhileHeld(t *testing.T) {
	t.Parallel()
	cfg, a, b := twoReplicas(t)
	ctx := context.Background()
	lease, release := holdLockAndSlot(t, a)
	time.Sleep(3 * cfg.LeaseTTL)
	if _, ok, _ := b.Lock(ctx, "m"); ok {
		t.Fatal("a renewed lock was taken by another replica after three TTLs")
	}
	if _, ok, _ := b.Acquire(ctx, "192.0.2.1", 1); ok {
		t.Fatal("a renewed slot was taken by another replica after three TTLs")
	}
	select {
	case <-lease.Lost():
		t.Fatal("a renewed lease reports itself lost")
	default:
	}
	release()
	lease.Release()
	if _, ok, _ := b.Lock(ctx, "m"); !ok {
		t.Fatal("refused after the release")
	}
	if _, ok, _ := b.Acquire(ctx, "192.0.2.1", 1); !ok {
		t.Fatal("slot refused after the release")
	}
}

// unavailableChecks asserts how each feature behaves while the store
// cannot be asked: limits fail open, locks fail closed, each within the
// command timeout.
func unavailableChecks(t *testing.T, r *Redis) {
	t.Helper()
	ctx := context.Background()
	bounded := func(what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		if d := time.Since(start); d > r.cfg.CommandTimeout+slack {
			t.Errorf("%s took %v with the store away, want at most the command timeout %v", what, d, r.cfg.CommandTimeout)
		}
	}
	bounded("Reserve", func() {
		release, ok, err := r.Reserve(ctx, "u", 1, time.Minute)
		if !ok || !errUnavailable(err) || release == nil {
			t.Errorf("Reserve: ok %v, err %v; want ok (fail open) with ErrUnavailable", ok, err)
		} else {
			release(true)
		}
	})
	bounded("Acquire", func() {
		release, ok, err := r.Acquire(ctx, "192.0.2.1", 1)
		if !ok || !errUnavailable(err) || release == nil {
			t.Errorf("Acquire: ok %v, err %v; want ok (fail open) with ErrUnavailable", ok, err)
		} else {
			release()
		}
	})
	bounded("Lock", func() {
		if lease, ok, err := r.Lock(ctx, "m2"); ok || !errUnavailable(err) || lease != nil {
			t.Errorf("Lock: ok %v, err %v; want refused (fail closed) with ErrUnavailable", ok, err)
		}
	})
	bounded("Remembered", func() {
		if ok, err := r.Remembered(ctx, "k"); ok || !errUnavailable(err) {
			t.Errorf("Remembered: %v %v", ok, err)
		}
	})
	bounded("Ping", func() {
		if err := r.Ping(ctx); !errUnavailable(err) {
			t.Errorf("Ping: %v", err)
		}
	})
}

// availableChecks asserts that the store answers and counts again.
func availableChecks(t *testing.T, r *Redis) {
	t.Helper()
	ctx := context.Background()
	if _, ok, err := r.Reserve(ctx, "again", 1, time.Minute); !ok || err != nil {
		t.Fatalf("Reserve: %v %v", ok, err)
	}
	if _, ok, err := r.Reserve(ctx, "again", 1, time.Minute); ok || err != nil {
		t.Fatalf("second Reserve against a limit of 1: %v %v, want a plain refusal", ok, err)
	}
	lease, ok, err := r.Lock(ctx, "m3")
	if !ok || err != nil {
		t.Fatalf("Lock: %v %v", ok, err)
	}
	lease.Release()
	if _, ok, err := r.Acquire(ctx, "192.0.2.9", 1); !ok || err != nil {
		t.Fatalf("Acquire: %v %v", ok, err)
	}
}

// errorLog counts, by feature, the unavailable-store errors that
// Options.OnError is told.
type errorLog struct{ testkit.Tally }

func (l *errorLog) add(feature string, err error) {
	if errUnavailable(err) {
		l.Add(feature)
	}
}

func TestStoreStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	cfg := shortConfig(srv.Addr)
	var errs errorLog
	r, err := NewRedis(cfg, Options{OnError: errs.add})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lease, ok, err := r.Lock(context.Background(), "m")
	if !ok || err != nil {
		t.Fatalf("Lock: %v %v", ok, err)
	}

	srv.Stop()
	stopped := time.Now()
	unavailableChecks(t, r)
	// The lease is lost before it can expire in the store: two thirds of
	// the TTL after its last renewal, at the latest.
	select {
	case <-lease.Lost():
		if d := time.Since(stopped); d > cfg.LeaseTTL {
			t.Errorf("lease lost %v after the store went away, want within the TTL %v", d, cfg.LeaseTTL)
		}
	case <-time.After(cfg.LeaseTTL + slack):
		t.Fatal("a lease that cannot be renewed was not reported lost")
	}
	if errs.Count("locks") == 0 {
		t.Error("failed renewals were not reported to OnError")
	}
	lease.Release() // after a loss: must not block or panic

	srv.Restart()
	availableChecks(t, r)
}

func TestStoreHung(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	r := openRedis(t, shortConfig(srv.Addr))
	availableChecks(t, r) // connections in the pool, which will hang
	srv.Pause()
	unavailableChecks(t, r)
	srv.Resume()
	waitFor(t, 5*time.Second, "the store answers after Resume", func() bool {
		return r.Ping(context.Background()) == nil
	})
	_, ok, err := r.Lock(context.Background(), "after")
	if !ok || err != nil {
		t.Fatalf("Lock after Resume: %v %v", ok, err)
	}
}

func TestFailModes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	srv.Stop()
	cfg := shortConfig(srv.Addr)
	cfg.OnFailure = FailModes{Logins: FailClosed, Connections: FailClosed, Locks: FailOpen}
	r := openRedis(t, cfg)
	ctx := context.Background()
	if _, ok, err := r.Reserve(ctx, "u", 1, time.Minute); ok || !errUnavailable(err) {
		t.Errorf("Reserve failing closed: %v %v", ok, err)
	}
	if _, ok, err := r.Acquire(ctx, "a", 1); ok || !errUnavailable(err) {
		t.Errorf("Acquire failing closed: %v %v", ok, err)
	}
	lease, ok, err := r.Lock(ctx, "m")
	if !ok || !errUnavailable(err) || lease == nil {
		t.Fatalf("Lock failing open: %v %v", ok, err)
	}
	lease.Release()

	// A caller that gave up is refused with its own error, whatever the mode.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok, err := r.Lock(gone, "m"); ok || err != context.Canceled {
		t.Errorf("Lock with a cancelled context: %v %v", ok, err)
	}
}

func TestTLSPasswordAndPrefix(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{TLS: true, Password: "sesame"})
	dir := t.TempDir()
	write := func(name, content string) string { return testkit.WriteFile(t, dir, name, content) }
	cfg := shortConfig(srv.Addr)
	cfg.TLS, cfg.CAFile, cfg.PasswordFile = true, srv.CAFile, write("pw", "sesame\n")
	availableChecks(t, openRedis(t, cfg))

	wrong := cfg
	wrong.PasswordFile = write("wrong", "guess\n")
	if err := openRedis(t, wrong).Ping(context.Background()); !errUnavailable(err) {
		t.Errorf("Ping with a wrong password: %v", err)
	}
	untrusted := cfg
	untrusted.CAFile = ""
	// Time for the handshake to fail on its own, on a loaded machine.
	untrusted.DialTimeout, untrusted.CommandTimeout, untrusted.LeaseTTL = 5*time.Second, 5*time.Second, 15*time.Second
	if err := openRedis(t, untrusted).Ping(context.Background()); !errUnavailable(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Ping without the CA: %v, want a certificate error", err)
	}

	// Two deployments with their own prefixes share a server, not locks.
	other := cfg
	other.KeyPrefix = "other:"
	a, b := openRedis(t, cfg), openRedis(t, other)
	if _, ok, err := a.Lock(context.Background(), "m"); !ok || err != nil {
		t.Fatalf("Lock: %v %v", ok, err)
	}
	if _, ok, err := b.Lock(context.Background(), "m"); !ok || err != nil {
		t.Fatalf("Lock under another prefix: %v %v", ok, err)
	}
	n, err := a.client.Exists(context.Background(), "popbridge:lock:m", "other:lock:m").Result()
	if err != nil || n != 2 {
		t.Fatalf("keys popbridge:lock:m and other:lock:m: %d exist (%v), want 2", n, err)
	}
}

func TestNewRedisErrors(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "state.address"},
		{Config{Address: "127.0.0.1:6379", PasswordFile: "/nonexistent/pw"}, "state.password_file"},
		{Config{Address: "127.0.0.1:6379", TLS: true, CAFile: "/nonexistent/ca"}, "state.ca_file"},
		{Config{Address: "127.0.0.1:6379", TLS: true, CAFile: os.Args[0]}, "no PEM certificate"},
		{Config{Address: "127.0.0.1"}, "state.address"},
	}
	for _, c := range cases {
		r, err := NewRedis(c.cfg, Options{})
		if err == nil {
			r.Close()
			t.Errorf("NewRedis(%+v): no error, want one naming %q", c.cfg, c.want)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewRedis(%+v): %v, want it to name %q", c.cfg, err, c.want)
		}
	}
}
