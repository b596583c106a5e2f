// Package oauthtest runs a real OAuth2 authorisation server on 127.0.0.1
// for tests: code that obtains, refreshes and uses tokens (and an IMAP
// server that introspects them, see dovecottest) talks HTTP to it exactly
// as it would to Microsoft's or Google's token endpoint.
//
// It implements what popbridge needs and checks it strictly:
//
//   - /token (RFC 6749): grant types refresh_token (optionally rotating
//     the refresh token), authorization_code (PKCE S256, RFC 7636, and the
//     redirect_uri of the authorisation request are verified),
//     urn:ietf:params:oauth:grant-type:device_code (RFC 8628, with
//     authorization_pending, slow_down, access_denied and expired_token)
//     and client_credentials. Clients authenticate with HTTP basic auth
//     (the form-urlencoded id and secret of RFC 6749 §2.3.1) or with
//     client_id/client_secret form fields; a client registered with an
//     empty secret is public and sends only its id.
//   - /device: the device authorisation endpoint of RFC 8628.
//   - /authorize: approves every request at once as Options.AuthorizeUser
//     (a browser that logs in and consents), redirecting to a loopback
//     redirect_uri with code and state.
//   - /introspect (RFC 7662): the token as form field token= (POST), as
//     query parameter token= (GET), or as "Authorization: Bearer" (the
//     three introspection_mode values of Dovecot's oauth2 passdb: post,
//     get, auth). The caller is not authenticated: the bearer form has no
//     room for caller credentials.
//   - /revoke (RFC 7009).
//
// Errors are RFC 6749 §5.2 JSON bodies. Tokens are random strings with no
// meaning; the server keeps them in memory.
package oauthtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Grant types of the token endpoint.
const (
	GrantRefreshToken      = "refresh_token"
	GrantAuthorizationCode = "authorization_code"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	GrantClientCredentials = "client_credentials"
)

// DefaultClientID is the one public client registered when
// Options.Clients is nil.
const DefaultClientID = "popbridge-test"

// Defaults for zero Options fields.
const (
	DefaultAccessTTL      = time.Hour
	DefaultDeviceInterval = time.Second
	DefaultDeviceTTL      = 10 * time.Minute
	codeTTL               = time.Minute
)

// Options configures Start.
type Options struct {
	// AccessTTL is the lifetime of access tokens (default 1h). Tests of
	// refreshing use a few seconds. expires_in is sent rounded up to
	// whole seconds.
	AccessTTL time.Duration
	// RotateRefresh issues a new refresh token on every refresh grant and
	// invalidates the one presented, as Microsoft's identity platform
	// may do.
	RotateRefresh bool
	// Clients maps client ids to secrets; an empty secret registers a
	// public client (no authentication, only its id). Nil registers
	// DefaultClientID as a public client.
	Clients map[string]string
	// ClientCredentialsUser maps a confidential client id to the mailbox
	// its app-only tokens (client_credentials grant) are good for. A
	// client not listed here gets unauthorized_client.
	ClientCredentialsUser map[string]string
	// AuthorizeUser is the user /authorize approves every request as.
	// Empty: /authorize redirects with error=access_denied.
	AuthorizeUser string
	// DeviceInterval is the polling interval of the device grant
	// (default 1s; RFC 8628 counts it in whole seconds, so it is rounded
	// up). A poll sooner than 3/4 of it after the previous one gets
	// slow_down, and the interval of that device code grows by 5 s.
	DeviceInterval time.Duration
	// DeviceTTL is how long a device code can be approved and polled
	// (default 10 min).
	DeviceTTL time.Duration
}

// Stats counts requests. Token requests are counted per grant type,
// whatever their outcome.
type Stats struct {
	RefreshGrants           int
	AuthorizationCodeGrants int
	DeviceCodeGrants        int // every poll of the token endpoint
	ClientCredentialsGrants int
	// RefreshFailures counts refresh grants answered with an error.
	RefreshFailures int
	// Introspections counts /introspect requests; ActiveIntrospections
	// those answered with "active":true.
	Introspections       int
	ActiveIntrospections int
	Revocations          int
	DeviceAuthorizations int
	Authorizations       int
}

// Server is a running authorisation server. It is closed by t.Cleanup
// of the test that started it.
type Server struct {
	// URL is the base URL, "http://127.0.0.1:PORT".
	URL string

	opts Options
	hs   *httptest.Server

	mu      sync.Mutex
	access  map[string]*accessToken
	refresh map[string]*refreshToken
	codes   map[string]*authCode
	devices map[string]*deviceAuth // by device code
	stats   Stats
	// tokenDelay and tokenFail are set by SetTokenDelay and
	// FailTokenRequests.
	tokenDelay time.Duration
	tokenFail  int
}

type accessToken struct {
	user, client, scope string
	exp                 time.Time
	refresh             string // the refresh token it came with or from, or ""
	revoked             bool
}

type refreshToken struct {
	user, client, scope string
	valid               bool
}

type authCode struct {
	client, redirect, challenge, scope, user string
	exp                                      time.Time
}

type deviceAuth struct {
	userCode, client, scope string
	exp                     time.Time
	interval                time.Duration
	lastPoll                time.Time
	user                    string // set by ApproveDevice
	denied, done            bool
}

// Start starts the server on 127.0.0.1 with a random port.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.DeviceInterval <= 0 {
		opts.DeviceInterval = DefaultDeviceInterval
	}
	// RFC 8628 sends the interval in whole seconds.
	opts.DeviceInterval = time.Duration((opts.DeviceInterval+time.Second-1)/time.Second) * time.Second
	if opts.DeviceTTL <= 0 {
		opts.DeviceTTL = DefaultDeviceTTL
	}
	if opts.Clients == nil {
		opts.Clients = map[string]string{DefaultClientID: ""}
	}
	s := &Server{
		opts:    opts,
		access:  map[string]*accessToken{},
		refresh: map[string]*refreshToken{},
		codes:   map[string]*authCode{},
		devices: map[string]*deviceAuth{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.handleToken)
	mux.HandleFunc("/device", s.handleDevice)
	mux.HandleFunc("/authorize", s.handleAuthorize)
	mux.HandleFunc("/introspect", s.handleIntrospect)
	mux.HandleFunc("/revoke", s.handleRevoke)
	// httptest listens on 127.0.0.1 (a real TCP listener), so other
	// processes such as Dovecot's auth process can reach it.
	s.hs = httptest.NewUnstartedServer(mux)
	s.hs.Config.ReadHeaderTimeout = 10 * time.Second
	s.hs.Config.ReadTimeout = 10 * time.Second
	s.hs.Config.WriteTimeout = 10 * time.Second
	s.hs.Start()
	s.URL = s.hs.URL
	t.Cleanup(s.hs.Close)
	return s
}

// Endpoint is the server's endpoint for golang.org/x/oauth2. It sends
// client credentials in the Authorization header: auto-detection would
// repeat every failed request with form fields and so count it twice.
func (s *Server) Endpoint() oauth2.Endpoint {
	return oauth2.Endpoint{
		AuthURL:       s.URL + "/authorize",
		TokenURL:      s.URL + "/token",
		DeviceAuthURL: s.URL + "/device",
		AuthStyle:     oauth2.AuthStyleInHeader,
	}
}

// IntrospectionURL is the RFC 7662 endpoint, for Dovecot's
// introspection_url.
func (s *Server) IntrospectionURL() string { return s.URL + "/introspect" }

// RevocationURL is the RFC 7009 endpoint.
func (s *Server) RevocationURL() string { return s.URL + "/revoke" }

// Stats returns the request counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SetTokenDelay makes the token endpoint wait d before it answers each
// request (0: no delay), e.g. so that concurrent logins overlap one
// refresh. The wait holds no lock, and each request is counted in Stats
// when it arrives.
func (s *Server) SetTokenDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenDelay = d
}

// FailTokenRequests makes the token endpoint answer every request with
// this HTTP status (e.g. 503) and a temporarily_unavailable error, as a
// provider having an outage does, until called with 0. The requests are
// still counted in Stats; no token changes.
func (s *Server) FailTokenRequests(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenFail = status
}

// ApproveDevice approves the pending device authorisation with this
// user code as user, as if the user had entered it at verification_uri.
func (s *Server) ApproveDevice(userCode, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deviceByUserCode(userCode)
	if d == nil {
		return fmt.Errorf("oauthtest: no pending device authorisation with user code %q", userCode)
	}
	if time.Now().After(d.exp) {
		return fmt.Errorf("oauthtest: device authorisation %q has expired", userCode)
	}
	d.user = user
	return nil
}

// DenyDevice makes the device authorisation with this user code fail
// with access_denied.
func (s *Server) DenyDevice(userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deviceByUserCode(userCode)
	if d == nil {
		return fmt.Errorf("oauthtest: no pending device authorisation with user code %q", userCode)
	}
	d.denied = true
	return nil
}

// PendingDeviceCodes returns the user codes of device authorisations
// that are neither approved, denied nor expired.
func (s *Server) PendingDeviceCodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var codes []string
	now := time.Now()
	for _, d := range s.devices {
		if !d.done && !d.denied && d.user == "" && now.Before(d.exp) {
			codes = append(codes, d.userCode)
		}
	}
	return codes
}

func (s *Server) deviceByUserCode(userCode string) *deviceAuth {
	for _, d := range s.devices {
		if d.userCode == userCode && !d.done {
			return d
		}
	}
	return nil
}

// IssueRefreshToken creates a valid refresh token for user and client
// without any grant, as if the user had authorised earlier.
func (s *Server) IssueRefreshToken(user, clientID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := newToken("rt")
	s.refresh[tok] = &refreshToken{user: user, client: clientID, valid: true}
	return tok
}

// IssueAccessToken creates an access token for user, valid for ttl
// (AccessTTL if ttl <= 0), without any grant.
func (s *Server) IssueAccessToken(user, clientID string, ttl time.Duration) string {
	if ttl <= 0 {
		ttl = s.opts.AccessTTL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := newToken("at")
	s.access[tok] = &accessToken{user: user, client: clientID, exp: time.Now().Add(ttl)}
	return tok
}

// RefreshTokenValid reports whether tok is a refresh token that a
// refresh grant would accept (from its client).
func (s *Server) RefreshTokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refresh[tok]
	return r != nil && r.valid
}

// AccessTokenValid reports whether introspection would call tok active.
func (s *Server) AccessTokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeLocked(tok) != nil
}

// RevokeUser invalidates every refresh and access token of user, as an
// administrator resetting the account would.
func (s *Server) RevokeUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.refresh {
		if r.user == user {
			r.valid = false
		}
	}
	for _, a := range s.access {
		if a.user == user {
			a.revoked = true
		}
	}
}

func (s *Server) activeLocked(tok string) *accessToken {
	a := s.access[tok]
	if a == nil || a.revoked || !time.Now().Before(a.exp) {
		return nil
	}
	return a
}

// newToken returns an unguessable token with a prefix that tells the
// kinds apart when reading a failing test.
func newToken(prefix string) string {
	var b [20]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// newUserCode returns a code of the form ABCD-EFGH from an alphabet
// without easily confused letters (RFC 8628 §6.1).
func newUserCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	var b [8]byte
	rand.Read(b[:])
	code := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			code = append(code, '-')
		}
		code = append(code, alphabet[int(c)%len(alphabet)])
	}
	return string(code)
}
