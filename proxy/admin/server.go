// server.go holds the admin listener, its life cycle, the checks every
// request passes and the handlers. The http.Server's goroutines run the
// handlers; Reload may run beside them and swaps the token under a lock.

// Package admin serves the operator's view of a running popbridge over
// HTTP: open sessions, kicks, the effective configuration and OAuth2
// token states.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/popbridge/popbridge/pop3front"
)

// Options configures a Server.
type Options struct {
	Config Config
	// Servers returns the POP3 servers whose sessions are listed and
	// kicked: the current one and those retiring after a reload.
	Servers func() []Sessions
	// Effective returns the configuration in force, as a value to marshal
	// to YAML. The Server redacts it (Redact) before showing it; nil
	// answers GET /config with 404.
	Effective func() any
	// OAuth lists the OAuth2 accounts; nil lists none.
	OAuth OAuthStatus
	// UpstreamOf names the upstream that serves a user, for the sessions'
	// upstream field; nil leaves it out.
	UpstreamOf func(user string) string
	// Logger receives kicks, refused requests and listener failures.
	Logger *slog.Logger
}

// Timeouts and limits of the admin listener.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
	maxBody           = 4 << 10
	// refusalLogEvery rate-limits the log lines about refused tokens.
	refusalLogEvery = time.Minute
)

// Server is the admin HTTP listener.
type Server struct {
	opts Options
	log  *slog.Logger
	hs   *http.Server
	ln   net.Listener

	mu        sync.Mutex
	tokenHash *[sha256.Size]byte // nil: no token required (loopback only)
	lastLog   time.Time          // last line about a refused request
	refused   int                // refused requests since that line
}

// New checks opts.Config and reads its token. It binds nothing yet.
func New(opts Options) (*Server, error) {
	if err := opts.Config.Check(); err != nil {
		return nil, err
	}
	if opts.Config.Listen == "" {
		return nil, errors.New("admin.listen: empty: the admin listener is off")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger}
	if err := s.setToken(opts.Config.TokenFile); err != nil {
		return nil, err
	}
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Start binds the listener and serves it on a new goroutine until
// Shutdown. Without a token it refuses an address that is not loopback
// once bound (a host name that resolved elsewhere).
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Config.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	s.mu.Lock()
	open := s.tokenHash == nil
	s.mu.Unlock()
	if open && !loopbackAddr(ln.Addr()) {
		ln.Close()
		return fmt.Errorf("admin.listen: %s bound %s, not a loopback address: set admin.token_file", s.opts.Config.Listen, ln.Addr())
	}
	s.ln = ln
	s.log.Info("serving the admin view", "addr", ln.Addr().String(), "token", !open)
	go func() {
		if err := s.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener failed", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address, after Start.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the listener and waits for the requests under way, as
// long as ctx allows.
func (s *Server) Shutdown(ctx context.Context) error { return s.hs.Shutdown(ctx) }

// Reload applies cfg from a configuration reload: it reads the token file
// again (a rotated token takes effect now). A changed admin.listen takes
// effect at the next start only; an emptied one changes nothing, so that
// turning the listener off does not drop its token meanwhile. On an error
// the old token stays.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	if cfg.Listen == "" {
		return nil
	}
	if cfg.TokenFile == "" && s.ln != nil && !loopbackAddr(s.ln.Addr()) {
		return fmt.Errorf("admin.token_file: required: the admin listener runs on %s, not a loopback address", s.ln.Addr())
	}
	return s.setToken(cfg.TokenFile)
}

func (s *Server) setToken(path string) error {
	var h *[sha256.Size]byte
	if path != "" {
		tok, err := readToken(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(tok)
		h = &sum
	}
	s.mu.Lock()
	s.tokenHash = h
	s.mu.Unlock()
	return nil
}

// Handler serves the endpoints behind the token check. Wrong methods are
// answered 405 with an Allow header.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", s.sessions)
	mux.HandleFunc("POST /kick", s.kick)
	mux.HandleFunc("GET /config", s.config)
	mux.HandleFunc("GET /oauth", s.oauth)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if why := s.fromBrowser(r); why != "" {
			http.Error(w, "refused: "+why, http.StatusForbidden)
			return
		}
		if !s.authorized(r) {
			s.noteRefusal(r)
			w.Header().Set("WWW-Authenticate", `Bearer realm="popbridge admin"`)
			http.Error(w, "a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// fromBrowser says why r looks like a request that a web page made a
// browser send, or "". The admin view is for the CLI and scripts; a page
// must not kick sessions (a cross-site POST needs no token to be sent) nor
// read the lists through a host name rebound to 127.0.0.1. Browsers send
// Origin or Sec-Fetch-* headers; a rebinding page also sends its own host
// name, which a listener without a token refuses.
func (s *Server) fromBrowser(r *http.Request) string {
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Mode") != "" {
		return "a browser request"
	}
	s.mu.Lock()
	open := s.tokenHash == nil
	s.mu.Unlock()
	if open {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !loopbackHost(strings.Trim(host, "[]")) {
			return "Host " + r.Host + " is not a loopback address"
		}
	}
	return ""
}

// authorized compares the request's bearer token with the configured one
// in constant time (over their hashes, so that the length leaks nothing
// either).
func (s *Server) authorized(r *http.Request) bool {
	s.mu.Lock()
	want := s.tokenHash
	s.mu.Unlock()
	if want == nil {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// noteRefusal logs refused requests, at most one line a minute with the
// count since the last, so that a scanner cannot flood the log.
func (s *Server) noteRefusal(r *http.Request) {
	s.mu.Lock()
	s.refused++
	now := time.Now()
	if now.Sub(s.lastLog) < refusalLogEvery {
		s.mu.Unlock()
		return
	}
	n := s.refused
	s.refused, s.lastLog = 0, now
	s.mu.Unlock()
	s.log.Warn("admin request refused: no valid bearer token", "remote", r.RemoteAddr, "path", r.URL.Path, "refused", n)
}

// params parses the query (and a form body) and refuses any parameter
// but allowed, so that a misspelt filter is not silently ignored.
func params(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	if err := r.ParseForm(); err != nil {
		code := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "bad parameters: "+err.Error(), code)
		return false
	}
	for k := range r.Form {
		if !slices.Contains(allowed, k) {
			http.Error(w, fmt.Sprintf("unknown parameter %q: want %s", k, strings.Join(allowed, " or ")), http.StatusBadRequest)
			return false
		}
	}
	return true
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request) {
	if !params(w, r, "user") {
		return
	}
	user := r.Form.Get("user")
	list := []Session{}
	for _, srv := range s.opts.Servers() {
		for _, si := range srv.Sessions() {
			if user != "" && si.User != user {
				continue
			}
			list = append(list, s.session(si))
		}
	}
	slices.SortFunc(list, func(a, b Session) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	writeJSON(w, list)
}

// session converts what pop3front shows of a session to its JSON form.
func (s *Server) session(si pop3front.SessionInfo) Session {
	out := Session{ID: si.ID, User: si.User, Device: si.Device, Listener: si.Listener, TLS: si.TLS,
		Since: si.Since, State: si.State, Sent: si.Sent, Retrieved: si.Retrieved, Marked: si.Marked}
	if si.RemoteAddr != nil {
		out.Remote = si.RemoteAddr.String()
	}
	if s.opts.UpstreamOf != nil && si.User != "" {
		out.Upstream = s.opts.UpstreamOf(si.User)
	}
	return out
}

func (s *Server) kick(w http.ResponseWriter, r *http.Request) {
	if !params(w, r, "id", "user") {
		return
	}
	id, user := r.Form.Get("id"), r.Form.Get("user")
	if (id == "") == (user == "") {
		http.Error(w, "give one of id= or user=", http.StatusBadRequest)
		return
	}
	n := 0
	for _, srv := range s.opts.Servers() {
		if id != "" {
			if srv.Kick(id) {
				n = 1
				break
			}
			continue
		}
		n += srv.KickUser(user)
	}
	s.log.Info("admin kick: closed without UPDATE, nothing deleted", "id", id, "user", user, "kicked", n, "remote", r.RemoteAddr)
	writeJSON(w, kickAnswer{Kicked: n})
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	if !params(w, r) {
		return
	}
	if s.opts.Effective == nil {
		http.Error(w, "the effective configuration is not available", http.StatusNotFound)
		return
	}
	out, err := yaml.Marshal(Redact(s.opts.Effective()))
	if err != nil {
		s.log.Error("admin: cannot marshal the configuration", "err", err)
		http.Error(w, "cannot marshal the configuration", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(out)
}

func (s *Server) oauth(w http.ResponseWriter, r *http.Request) {
	if !params(w, r) {
		return
	}
	list := []AccountState{}
	if s.opts.OAuth != nil {
		list = append(list, s.opts.OAuth.OAuthStatus()...)
	}
	slices.SortFunc(list, func(a, b AccountState) int {
		return strings.Compare(a.Provider+"\x00"+a.Account, b.Provider+"\x00"+b.Account)
	})
	writeJSON(w, list)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
