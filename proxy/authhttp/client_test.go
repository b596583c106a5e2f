// client_test.go checks Login's waits, time limits, concurrency bound
// and cache.

package authhttp

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

func TestAuthWaitDelaysRefusal(t *testing.T) {
	c, _ := answering(t, ok200("Auth-Status: Invalid login", "Auth-Wait: 150"))
	start := time.Now()
	_, err := login(c, "alice", "pw")
	var de *DeniedError
	if !errors.As(err, &de) || de.Wait != 150*time.Millisecond {
		t.Fatalf("err = %v (%+v)", err, de)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("answered after %v, before Auth-Wait", d)
	}
}

func TestAuthWaitBounded(t *testing.T) {
	h := startHook(t, func(*http.Request) string { return ok200("Auth-Status: no", "Auth-Wait: 100000") })
	cfg := testConfig(h)
	cfg.MaxWait = 50 * time.Millisecond
	c, _ := newClient(t, cfg, Options{})
	start := time.Now()
	_, err := login(c, "alice", "pw")
	var de *DeniedError
	if !errors.As(err, &de) || de.Wait != 50*time.Millisecond || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v, waited %v", err, time.Since(start))
	}
	// A wait ends with the login's context, the refusal stays.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	c.maxWait = time.Hour
	_, err = c.Login(ctx, Request{User: "a", Pass: "b", ClientIP: ip("192.0.2.1")})
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("err = %v", err)
	}
}

func TestAuthWaitUnparsableIgnored(t *testing.T) {
	c, _ := answering(t, ok200("Auth-Status: no", "Auth-Wait: soon"))
	_, err := login(c, "alice", "pw")
	var de *DeniedError
	if !errors.As(err, &de) || de.Wait != 0 {
		t.Fatalf("err = %v (%+v)", err, de)
	}
}

func TestStatusWaitAsksAgain(t *testing.T) {
	var n atomic.Int32
	h := startHook(t, func(req *http.Request) string {
		if n.Add(1) == 1 {
			return ok200("Auth-Status: WAIT", "Auth-Wait: 20")
		}
		return accept(req)
	})
	c, obs := newClient(t, testConfig(h), Options{})
	if _, err := login(c, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	reqs := h.requests()
	if len(reqs) != 2 || reqs[0] != reqs[1] || obs.list() != "wait,ok" {
		t.Fatalf("%d requests (same: %v), observed %q", len(reqs), len(reqs) == 2 && reqs[0] == reqs[1], obs.list())
	}

	forever, obs := answering(t, ok200("Auth-Status: WAIT"))
	_, err := login(forever, "alice", "pw")
	wantUnavailable(t, err, ResultMalformed)
	if obs.list() != "wait,wait,wait,malformed" {
		t.Fatalf("observed %q", obs.list())
	}
}

// blockingHook answers only once release is closed (or the test ends).
func blockingHook(t *testing.T) (h *hook, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	h = startHook(t, func(req *http.Request) string {
		<-ch
		return accept(req)
	})
	t.Cleanup(release) // runs before the hook's own cleanup
	return h, release
}

func TestTimeout(t *testing.T) {
	h, _ := blockingHook(t)
	cfg := testConfig(h)
	cfg.Timeout = 100 * time.Millisecond
	c, obs := newClient(t, cfg, Options{})
	start := time.Now()
	_, err := login(c, "alice", "pw")
	wantUnavailable(t, err, ResultTimeout)
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	if obs.list() != ResultTimeout {
		t.Fatalf("observed %q", obs.list())
	}
}

func TestCanceled(t *testing.T) {
	h, _ := blockingHook(t)
	c, obs := newClient(t, testConfig(h), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.Login(ctx, Request{User: "a", Pass: "b", ClientIP: ip("192.0.2.1")})
	wantUnavailable(t, err, ResultCanceled)
	if !errors.Is(err, context.Canceled) || obs.list() != ResultCanceled {
		t.Fatalf("err = %v, observed %q", err, obs.list())
	}
}

func TestHookDown(t *testing.T) {
	addr := testkit.FreeAddr(t)
	c, obs := newClient(t, Config{URL: "http://" + addr + "/auth", Servers: []Server{{Network: "0.0.0.0/0", TLS: "none"}}}, Options{})
	_, err := login(c, "alice", "pw")
	wantUnavailable(t, err, ResultUnavailable)
	if obs.list() != ResultUnavailable {
		t.Fatalf("observed %q", obs.list())
	}
}

func TestConcurrencyBound(t *testing.T) {
	h, release := blockingHook(t)
	cfg := testConfig(h)
	cfg.MaxConcurrent = 2
	cfg.Timeout = 20 * time.Second
	c, _ := newClient(t, cfg, Options{})
	const logins = 6
	errs := make(chan error, logins)
	for range logins {
		go func() {
			_, err := login(c, "alice", "pw")
			errs <- err
		}()
	}
	for i := 0; h.inFlight.Load() < 2; i++ {
		if i == 1000 {
			t.Fatal("the hook never got two requests")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a third request, if the bound failed
	if n := len(h.requests()); n != 2 {
		t.Fatalf("%d requests in flight, want 2", n)
	}
	release()
	for range logins {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m := h.maxInFlight.Load(); m != 2 || len(h.requests()) != logins {
		t.Fatalf("at most %d in flight, %d requests", m, len(h.requests()))
	}
}

func TestBusy(t *testing.T) {
	h := startHook(t, accept)
	cfg := testConfig(h)
	cfg.MaxConcurrent = 1
	cfg.Timeout = 50 * time.Millisecond
	c, obs := newClient(t, cfg, Options{})
	c.slots <- struct{}{} // a request that never ends
	_, err := login(c, "alice", "pw")
	wantUnavailable(t, err, ResultBusy)
	if len(h.requests()) != 0 || obs.list() != ResultBusy {
		t.Fatalf("%d requests, observed %q", len(h.requests()), obs.list())
	}
	<-c.slots
	if _, err := login(c, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
}

// cachingClient is a Client with a cache and a clock the test moves.
func cachingClient(t *testing.T, h *hook, size int) (*Client, *results, *time.Time) {
	cfg := testConfig(h)
	cfg.CacheTTL = time.Minute
	cfg.CacheSize = size
	c, obs := newClient(t, cfg, Options{})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c.now = func() time.Time { return now }
	return c, obs, &now
}

func TestCache(t *testing.T) {
	h := startHook(t, func(req *http.Request) string {
		return ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143", "Auth-Pass: upstream-token")
	})
	c, obs, now := cachingClient(t, h, 100)
	ask := func(user, pass, client string, tls bool) Answer {
		t.Helper()
		r := Request{User: user, Pass: pass, ClientIP: ip(client)}
		if tls {
			r.TLS = &TLSInfo{}
		}
		a, err := c.Login(t.Context(), r)
		if err != nil || a.Pass != "upstream-token" {
			t.Fatalf("%+v, %v", a, err)
		}
		return a
	}
	if ask("alice", "pw", "192.0.2.1", false).Cached {
		t.Fatal("first answer cached")
	}
	if a := ask("alice", "pw", "192.0.2.1", false); !a.Cached || a.Server == nil {
		t.Fatalf("second answer %+v, want it from the cache", a)
	}
	ask("alice", "other", "192.0.2.1", false)
	ask("alice", "pw", "192.0.2.2", false)
	ask("alice", "pw", "192.0.2.1", true)
	*now = now.Add(59 * time.Second)
	ask("alice", "pw", "192.0.2.1", false)
	*now = now.Add(time.Second)
	if ask("alice", "pw", "192.0.2.1", false).Cached {
		t.Fatal("an expired answer was used")
	}
	if got := obs.list(); got != "ok,cached,ok,ok,ok,cached,ok" || len(h.requests()) != 5 {
		t.Fatalf("observed %q, %d requests", got, len(h.requests()))
	}
}

func TestCacheKeepsNoFailure(t *testing.T) {
	for _, raw := range []string{ok200("Auth-Status: Invalid login"), ok200("Auth-Status: OK"), "HTTP/1.0 503 Busy\r\n\r\n"} {
		h := startHook(t, func(*http.Request) string { return raw })
		c, _, _ := cachingClient(t, h, 100)
		for range 2 {
			if _, err := login(c, "alice", "pw"); err == nil {
				t.Fatal("no error")
			}
		}
		if n := len(h.requests()); n != 2 || c.cache.len() != 0 {
			t.Fatalf("%q: %d requests, %d cached", raw, n, c.cache.len())
		}
	}
}

func TestCacheBounded(t *testing.T) {
	h := startHook(t, accept)
	c, _, now := cachingClient(t, h, 2)
	for _, u := range []string{"u1", "u2", "u3", "u3", "u2", "u1"} {
		if _, err := login(c, u, "pw"); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(time.Second)
	}
	// u1 left the cache for u3, u2 stayed; then u1 came back in place of u2.
	if n := len(h.requests()); n != 4 || c.cache.len() != 2 {
		t.Fatalf("%d requests, %d cached", n, c.cache.len())
	}
}

// TestHTTPSHook asks a hook served by net/http over TLS, its certificate
// verified with auth_http.ca_file.
func TestHTTPSHook(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Proto != "HTTP/1.0" || r.Header.Get("Auth-User") != "alice" {
			w.Header().Set("Auth-Status", "unexpected request")
			return
		}
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", "127.0.0.1")
		w.Header().Set("Auth-Port", "993")
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{URL: srv.URL + "/auth", CAFile: ca, Servers: []Server{{Network: "127.0.0.1", TLS: "implicit"}}}
	c, _ := newClient(t, cfg, Options{})
	if a, err := login(c, "alice", "pw"); err != nil || a.Addr.Port() != 993 {
		t.Fatalf("%+v, %v", a, err)
	}
	// Without the CA the hook's certificate is not trusted.
	cfg.CAFile = ""
	c, _ = newClient(t, cfg, Options{})
	_, err := login(c, "alice", "pw")
	wantUnavailable(t, err, ResultUnavailable)
}
