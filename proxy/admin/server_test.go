package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/admintest"
	"github.com/popbridge/popbridge/pop3front"
)

type fakeOAuth []AccountState

func (f fakeOAuth) OAuthStatus() []AccountState { return f }

var t0 = time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)

func sessionInfo(id, user, device string, since time.Duration) pop3front.SessionInfo {
	return pop3front.SessionInfo{ID: id, User: user, Device: device,
		RemoteAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}, Listener: "0.0.0.0:995", TLS: true,
		Since: t0.Add(since), State: "transaction", Sent: 1234, Retrieved: 2, Marked: 1}
}

// testServerOptions are Options over two POP3 servers (a current one and
// one retiring after a reload), a configuration with a secret and two
// OAuth2 accounts.
func testServerOptions(cfg Config) (Options, *admintest.Sessions, *admintest.Sessions) {
	cur := admintest.NewSessions(
		sessionInfo("s-1", "alice", "phone", 2*time.Second),
		sessionInfo("s-2", "bob", "", time.Second),
		pop3front.SessionInfo{ID: "s-3", RemoteAddr: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}, Since: t0, State: "authorization"},
	)
	old := admintest.NewSessions(sessionInfo("s-0", "alice", "laptop", 0))
	effective := struct {
		Upstream struct {
			Address  string `yaml:"address"`
			Password string `yaml:"password"`
		} `yaml:"upstream"`
	}{}
	effective.Upstream.Address = "imap.example.com:993"
	effective.Upstream.Password = "hunter2"
	return Options{
		Config:     cfg,
		Servers:    func() []Sessions { return []Sessions{cur, old} },
		Effective:  func() any { return &effective },
		UpstreamOf: func(user string) string { return "main" },
		OAuth: fakeOAuth{
			{Account: "carol", Provider: "m365", State: TokenValid, ValidUntil: t0.Add(time.Hour)},
			{Account: "alice", Provider: "gmail", State: TokenFailing, FailingSince: t0, LastError: "failed"},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, cur, old
}

// newTestServer starts a Server on 127.0.0.1 and a Client for it.
func newTestServer(t *testing.T, tokenFile string) (*Server, *Client, *admintest.Sessions, *admintest.Sessions) {
	t.Helper()
	opts, cur, old := testServerOptions(Config{Listen: "127.0.0.1:0", TokenFile: tokenFile})
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	c := &Client{URL: s.Addr().String()}
	if tokenFile != "" {
		c.Token = goodToken
	}
	return s, c, cur, old
}

func TestSessionsAndKickOverTheListener(t *testing.T) {
	_, c, cur, old := newTestServer(t, writeToken(t, goodToken))
	ctx := context.Background()

	list, err := c.Sessions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, " ") != "s-0 s-3 s-2 s-1" {
		t.Fatalf("sessions %v: want every server's, oldest first", ids)
	}
	want := Session{ID: "s-1", User: "alice", Device: "phone", Remote: "192.0.2.7:40000", Listener: "0.0.0.0:995", TLS: true,
		Upstream: "main", Since: t0.Add(2 * time.Second), State: "transaction", Sent: 1234, Retrieved: 2, Marked: 1}
	if list[3] != want {
		t.Errorf("session = %+v\nwant      %+v", list[3], want)
	}
	if list[1].User != "" || list[1].Upstream != "" {
		t.Errorf("a session before its login has no user and no upstream: %+v", list[1])
	}

	list, err = c.Sessions(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].ID != "s-0" || list[1].ID != "s-1" {
		t.Fatalf("sessions of alice = %+v, %v", list, err)
	}

	if n, err := c.Kick(ctx, "s-2", ""); n != 1 || err != nil {
		t.Errorf("kick s-2 = %d, %v; want 1", n, err)
	}
	if n, err := c.Kick(ctx, "s-2", ""); n != 0 || err != nil {
		t.Errorf("kick s-2 again = %d, %v; want 0", n, err)
	}
	if n, err := c.Kick(ctx, "", "alice"); n != 2 || err != nil {
		t.Errorf("kick alice = %d, %v; want 2, across both servers", n, err)
	}
	if len(cur.Sessions()) != 1 || len(old.Sessions()) != 0 {
		t.Errorf("left: %v and %v; want only s-3", cur.Sessions(), old.Sessions())
	}
}

func TestConfigAndOAuthOverTheListener(t *testing.T) {
	_, c, _, _ := newTestServer(t, "")
	ctx := context.Background()
	doc, err := c.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(doc); !strings.Contains(got, "address: imap.example.com:993") ||
		!strings.Contains(got, "password: "+Redacted) || strings.Contains(got, "hunter2") {
		t.Errorf("GET /config =\n%s\nwant the address and the password redacted", got)
	}
	accounts, err := c.OAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 2 || accounts[0].Account != "alice" || accounts[0].State != TokenFailing ||
		!accounts[0].FailingSince.Equal(t0) || accounts[1].Account != "carol" || !accounts[1].ValidUntil.Equal(t0.Add(time.Hour)) {
		t.Errorf("GET /oauth = %+v", accounts)
	}
}

// do sends a request to h and returns the status and body.
func do(t *testing.T, h http.Handler, method, target, token string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.Host = "127.0.0.1:9111"
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestRequests(t *testing.T) {
	opts, _, _ := testServerOptions(Config{Listen: "127.0.0.1:0", TokenFile: writeToken(t, goodToken)})
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	bearer := "Bearer " + goodToken
	tests := []struct {
		method, target, auth string
		body                 string
		code                 int
		want                 string // in the body
	}{
		{"GET", "/sessions", "", "", 401, "bearer token"},
		{"GET", "/sessions", "Bearer " + goodToken + "x", "", 401, ""},
		{"GET", "/sessions", "Basic " + goodToken, "", 401, ""},
		{"GET", "/config", "bearer " + goodToken[:16], "", 401, ""},
		{"POST", "/kick?user=bob", "", "", 401, ""},
		{"GET", "/sessions", bearer, "", 200, `"id": "s-1"`},
		{"GET", "/sessions", "bearer  " + goodToken, "", 200, `"id": "s-1"`},
		{"GET", "/sessions?user=nobody", bearer, "", 200, "[]"},
		{"GET", "/sessions?usr=alice", bearer, "", 400, `unknown parameter "usr"`},
		{"POST", "/sessions", bearer, "", 405, ""},
		{"GET", "/kick?user=bob", bearer, "", 405, ""},
		{"DELETE", "/config", bearer, "", 405, ""},
		{"PUT", "/oauth", bearer, "", 405, ""},
		{"GET", "/nothing", bearer, "", 404, ""},
		{"POST", "/kick", bearer, "", 400, "give one of id= or user="},
		{"POST", "/kick?id=s-1&user=bob", bearer, "", 400, "give one of"},
		{"POST", "/kick?who=bob", bearer, "", 400, `unknown parameter "who"`},
		{"POST", "/kick", bearer, "user=bob", 200, `"kicked": 1`},
		{"POST", "/kick", bearer, "user=" + strings.Repeat("x", 2*maxBody), 413, ""},
		{"GET", "/config?full=1", bearer, "", 400, "unknown parameter"},
		{"GET", "/oauth", bearer, "", 200, `"state": "refresh_failing"`},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		code, got, hdr := do(t, h, tt.method, tt.target, tt.auth, body)
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("%s %s (%q): %d %q, want %d with %q", tt.method, tt.target, tt.auth, code, got, tt.code, tt.want)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tt.method, tt.target)
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tt.method, tt.target)
		}
	}
}

func TestBrowserRequestsRefused(t *testing.T) {
	tokenFile := writeToken(t, goodToken)
	tests := []struct {
		tokenFile string
		host      string
		header    string // name: value
		code      int
	}{
		{"", "127.0.0.1:9111", "", 200},
		{"", "localhost:9111", "", 200},
		{"", "[::1]:9111", "", 200},
		{"", "127.0.0.1:9111", "Origin: https://evil.example", 403},
		{"", "127.0.0.1:9111", "Sec-Fetch-Site: cross-site", 403},
		{"", "127.0.0.1:9111", "Sec-Fetch-Mode: no-cors", 403},
		{"", "rebound.evil.example:9111", "", 403}, // DNS rebinding
		{tokenFile, "admin.example.com:9111", "", 200},
		{tokenFile, "admin.example.com:9111", "Origin: https://admin.example.com", 403},
	}
	for _, tt := range tests {
		opts, _, _ := testServerOptions(Config{Listen: "127.0.0.1:0", TokenFile: tt.tokenFile})
		s, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", "/kick?user=bob", nil)
		req.Host = tt.host
		if tt.tokenFile != "" {
			req.Header.Set("Authorization", "Bearer "+goodToken)
		}
		if name, value, ok := strings.Cut(tt.header, ": "); ok {
			req.Header.Set(name, value)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != tt.code {
			t.Errorf("token %v, Host %s, %q: %d %q, want %d", tt.tokenFile != "", tt.host, tt.header, rec.Code, rec.Body, tt.code)
		}
	}
}

func TestOAuthJSONHoldsNoToken(t *testing.T) {
	opts, _, _ := testServerOptions(Config{Listen: "127.0.0.1:0"})
	opts.OAuth = nil
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	code, body, _ := do(t, s.Handler(), "GET", "/oauth", "", nil)
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("GET /oauth without accounts = %d %q, want 200 []", code, body)
	}
	var fields map[string]any
	b, _ := json.Marshal(AccountState{Account: "a", Provider: "p", State: TokenIdle})
	json.Unmarshal(b, &fields)
	for k := range fields {
		if strings.Contains(k, "token") || strings.Contains(k, "secret") {
			t.Errorf("AccountState has a field %q", k)
		}
	}
	if len(fields) != 3 {
		t.Errorf("unset times and errors must be left out: %s", b)
	}
}

func TestReloadRotatesTheToken(t *testing.T) {
	path := writeToken(t, goodToken)
	s, c, _, _ := newTestServer(t, path)
	ctx := context.Background()
	if _, err := c.Sessions(ctx, ""); err != nil {
		t.Fatal(err)
	}

	newToken := strings.Repeat("n", 32)
	os.WriteFile(path, []byte(newToken), 0o600)
	if _, err := c.Sessions(ctx, ""); err != nil {
		t.Fatalf("the token changed before the reload: %v", err)
	}
	if err := s.Reload(Config{Listen: "127.0.0.1:0", TokenFile: path}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sessions(ctx, ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("the old token after the reload: %v, want 401", err)
	}
	c.Token = newToken
	if _, err := c.Sessions(ctx, ""); err != nil {
		t.Fatalf("the new token: %v", err)
	}

	// A token file that cannot be read keeps the token in force.
	os.WriteFile(path, []byte("short"), 0o600)
	if err := s.Reload(Config{Listen: "127.0.0.1:0", TokenFile: path}); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Fatalf("reload with a bad token: %v", err)
	}
	if _, err := c.Sessions(ctx, ""); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}

	// Turning the listener off takes effect at the next start: the token
	// stays required meanwhile.
	if err := s.Reload(Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Client{URL: c.URL}).Sessions(ctx, ""); err == nil {
		t.Fatal("the listener turned off in the configuration answers without a token")
	}

	// Dropping the token file on a loopback listener drops the check.
	if err := s.Reload(Config{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	c.Token = ""
	if _, err := c.Sessions(ctx, ""); err != nil {
		t.Fatalf("without a token: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	opts, _, _ := testServerOptions(Config{})
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Errorf("New without a listen address: %v", err)
	}
	opts.Config = Config{Listen: "0.0.0.0:9111"}
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("New on every interface without a token: %v", err)
	}
}

func TestRefusalsAreLoggedAtMostOnceAMinute(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	opts, _, _ := testServerOptions(Config{Listen: "127.0.0.1:0", TokenFile: writeToken(t, goodToken)})
	opts.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		do(t, s.Handler(), "GET", "/sessions", "Bearer wrong", nil)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "admin request refused"); n != 1 {
		t.Errorf("%d log lines for 50 refusals, want 1:\n%s", n, buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
