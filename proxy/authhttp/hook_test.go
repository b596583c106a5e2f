// hook_test.go holds the test hook: an HTTP server on 127.0.0.1 that
// keeps every request's raw bytes and answers with raw bytes, so that
// tests can check the exact request and send malformed answers. Each
// connection has its own goroutine, ended by the test's cleanup.

package authhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// hook is the test hook server.
type hook struct {
	srv   *testkit.ConnServer
	reply func(req *http.Request) string

	mu   sync.Mutex
	raws []string

	inFlight, maxInFlight atomic.Int32
}

// startHook serves reply's raw answer to every request.
func startHook(t *testing.T, reply func(req *http.Request) string) *hook {
	t.Helper()
	h := &hook{reply: reply}
	srv, err := testkit.ServeConns(10*time.Second, h.handle)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	t.Cleanup(srv.Close)
	return h
}

func (h *hook) url() string { return "http://" + h.srv.Addr + "/auth" }

func (h *hook) handle(conn net.Conn) {
	var raw bytes.Buffer
	br := bufio.NewReader(conn)
	for !bytes.HasSuffix(raw.Bytes(), []byte("\r\n\r\n")) && raw.Len() < 64<<10 {
		b, err := br.ReadByte()
		if err != nil {
			return
		}
		raw.WriteByte(b)
	}
	h.mu.Lock()
	h.raws = append(h.raws, raw.String())
	h.mu.Unlock()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw.Bytes())))
	if err != nil {
		return
	}
	n := h.inFlight.Add(1)
	for {
		m := h.maxInFlight.Load()
		if n <= m || h.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	answer := h.reply(req)
	h.inFlight.Add(-1)
	conn.Write([]byte(answer))
}

// requests returns the raw requests so far.
func (h *hook) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.raws...)
}

// ok200 is a 200 answer with the given "Name: value" header lines.
func ok200(lines ...string) string {
	return "HTTP/1.0 200 OK\r\n" + strings.Join(append(lines, ""), "\r\n") + "\r\n"
}

// accept is the answer of a hook that lets every login in.
func accept(*http.Request) string {
	return ok200("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143")
}

// results records what the observer is told.
type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) HookRequest(result string, latency time.Duration) {
	if latency < 0 {
		panic("negative latency")
	}
	r.mu.Lock()
	r.got = append(r.got, result)
	r.mu.Unlock()
}

func (r *results) list() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.got, ",")
}

// testConfig is a configuration for h whose servers entry accepts any
// loopback address in plaintext.
func testConfig(h *hook) Config {
	return Config{URL: h.url(), Servers: []Server{{Network: "127.0.0.0/8", TLS: "none"}}}
}

// newClient makes a Client with an observer and one-millisecond
// Auth-Wait units.
func newClient(t *testing.T, cfg Config, opts Options) (*Client, *results) {
	t.Helper()
	obs := &results{}
	opts.Observer = obs
	c, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.waitUnit = time.Millisecond
	return c, obs
}

// login runs one Login for alice from 192.0.2.7 with a deadline.
func login(c *Client, user, pass string) (Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Login(ctx, Request{User: user, Pass: pass, ClientIP: ip("192.0.2.7")})
}

// wantUnavailable fails unless err is an *UnavailableError with result.
func wantUnavailable(t *testing.T, err error, result string) {
	t.Helper()
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want an UnavailableError", err)
	}
	if ue.Result != result {
		t.Fatalf("result = %q (%v), want %q", ue.Result, err, result)
	}
	if got := popReply(err); got != "[SYS/TEMP] Mail server temporarily unavailable, try again later" {
		t.Fatalf("POP3 reply = %q", got)
	}
}
