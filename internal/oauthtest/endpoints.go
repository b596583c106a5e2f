// This file holds the HTTP endpoints: client authentication, the token
// endpoint and its grants, device authorisation, authorisation,
// introspection and revocation, and the RFC 6749 error responses. Every
// handler runs in the HTTP server's goroutine for its request and holds
// Server.mu while it reads or changes the tokens.

package oauthtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
	basic  bool // the client tried basic auth: 401 needs WWW-Authenticate
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func errf(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, code: code, desc: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		oe = errf(http.StatusBadRequest, "invalid_request", "%v", err)
	}
	if oe.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauthtest"`)
	}
	writeJSON(w, oe.status, map[string]string{"error": oe.code, "error_description": oe.desc})
}

// authClient authenticates the client of a token, device or revocation
// request. requireSecret refuses public clients (client_credentials).
func (s *Server) authClient(r *http.Request) (string, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: both are form-urlencoded before basic auth.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", &oauthError{http.StatusUnauthorized, "invalid_client", "malformed basic credentials", true}
		}
		if r.PostForm.Has("client_secret") {
			return "", errf(http.StatusBadRequest, "invalid_request", "client authenticated twice")
		}
		if fid := r.PostForm.Get("client_id"); fid != "" && fid != id {
			return "", errf(http.StatusBadRequest, "invalid_request", "client_id differs from the basic auth user")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	want, ok := s.opts.Clients[id]
	if id == "" || !ok {
		return "", &oauthError{http.StatusUnauthorized, "invalid_client", "unknown client", basic}
	}
	if want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return "", &oauthError{http.StatusUnauthorized, "invalid_client", "client authentication failed", basic}
	}
	return id, nil
}

// clientPost serves a client's POST: the form parsed, the call counted in
// *count, the client authenticated and serve run with its ID, all but the
// parsing under s.mu. A failed step is answered as an error.
func (s *Server) clientPost(w http.ResponseWriter, r *http.Request, count *int, serve func(client string)) {
	if err := parsePost(r); err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	*count++
	client, err := s.authClient(r)
	if err != nil {
		writeError(w, err)
		return
	}
	serve(client)
}

func parsePost(r *http.Request) error {
	if r.Method != http.MethodPost {
		return errf(http.StatusMethodNotAllowed, "invalid_request", "POST required")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return errf(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return errf(http.StatusBadRequest, "invalid_request", "malformed form")
	}
	return nil
}

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// issueLocked creates an access token (and a refresh token unless
// refresh is "-"; an empty refresh creates a new one).
func (s *Server) issueLocked(user, client, scope, refresh string) tokenResponse {
	if refresh == "" {
		refresh = newToken("rt")
		s.refresh[refresh] = &refreshToken{user: user, client: client, scope: scope, valid: true}
	}
	at := newToken("at")
	a := &accessToken{user: user, client: client, scope: scope, exp: time.Now().Add(s.opts.AccessTTL)}
	if refresh != "-" {
		a.refresh = refresh
	} else {
		refresh = ""
	}
	s.access[at] = a
	return tokenResponse{
		AccessToken:  at,
		TokenType:    "Bearer",
		ExpiresIn:    int64((s.opts.AccessTTL + time.Second - 1) / time.Second),
		RefreshToken: refresh,
		Scope:        scope,
	}
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := parsePost(r); err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	delay := s.tokenDelay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case GrantRefreshToken:
		s.stats.RefreshGrants++
	case GrantAuthorizationCode:
		s.stats.AuthorizationCodeGrants++
	case GrantDeviceCode:
		s.stats.DeviceCodeGrants++
	case GrantClientCredentials:
		s.stats.ClientCredentialsGrants++
	}
	if s.tokenFail != 0 {
		if grant == GrantRefreshToken {
			s.stats.RefreshFailures++
		}
		writeError(w, errf(s.tokenFail, "temporarily_unavailable", "the token endpoint is failing on purpose"))
		return
	}
	client, err := s.authClient(r)
	if err != nil {
		if grant == GrantRefreshToken {
			s.stats.RefreshFailures++
		}
		writeError(w, err)
		return
	}
	var resp tokenResponse
	switch grant {
	case GrantRefreshToken:
		resp, err = s.refreshGrant(r, client)
		if err != nil {
			s.stats.RefreshFailures++
		}
	case GrantAuthorizationCode:
		resp, err = s.codeGrant(r, client)
	case GrantDeviceCode:
		resp, err = s.deviceGrant(r, client)
	case GrantClientCredentials:
		resp, err = s.clientCredentialsGrant(r, client)
	case "":
		err = errf(http.StatusBadRequest, "invalid_request", "grant_type missing")
	default:
		err = errf(http.StatusBadRequest, "unsupported_grant_type", "grant type %q not supported", grant)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) refreshGrant(r *http.Request, client string) (tokenResponse, error) {
	tok := r.PostForm.Get("refresh_token")
	rt := s.refresh[tok]
	if tok == "" {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_request", "refresh_token missing")
	}
	if rt == nil || !rt.valid || rt.client != client {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_grant", "refresh token is invalid, expired or revoked")
	}
	scope := rt.scope
	if req := r.PostForm.Get("scope"); req != "" {
		if !subsetScope(req, rt.scope) {
			return tokenResponse{}, errf(http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant")
		}
		scope = req
	}
	next := tok
	if s.opts.RotateRefresh {
		rt.valid = false
		next = newToken("rt")
		s.refresh[next] = &refreshToken{user: rt.user, client: client, scope: rt.scope, valid: true}
	}
	return s.issueLocked(rt.user, client, scope, next), nil
}

// subsetScope reports whether every scope in req is in granted (an
// empty grant allows anything: IssueRefreshToken records no scope).
func subsetScope(req, granted string) bool {
	if granted == "" {
		return true
	}
	have := strings.Fields(granted)
next:
	for _, sc := range strings.Fields(req) {
		for _, h := range have {
			if sc == h {
				continue next
			}
		}
		return false
	}
	return true
}

func (s *Server) codeGrant(r *http.Request, client string) (tokenResponse, error) {
	code := r.PostForm.Get("code")
	c := s.codes[code]
	// A code is good for one attempt, whatever its outcome (RFC 6749
	// §4.1.2: used at most once).
	delete(s.codes, code)
	if c == nil || time.Now().After(c.exp) || c.client != client {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_grant", "authorization code is invalid or expired")
	}
	if r.PostForm.Get("redirect_uri") != c.redirect {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
	}
	verifier := r.PostForm.Get("code_verifier")
	if verifier == "" {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_request", "code_verifier missing")
	}
	sum := sha256.Sum256([]byte(verifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_grant", "PKCE code_verifier does not match the code_challenge")
	}
	return s.issueLocked(c.user, client, c.scope, ""), nil
}

func (s *Server) deviceGrant(r *http.Request, client string) (tokenResponse, error) {
	d := s.devices[r.PostForm.Get("device_code")]
	if d == nil || d.done || d.client != client {
		return tokenResponse{}, errf(http.StatusBadRequest, "invalid_grant", "device code is invalid")
	}
	now := time.Now()
	if now.After(d.exp) {
		return tokenResponse{}, errf(http.StatusBadRequest, "expired_token", "device code has expired")
	}
	last := d.lastPoll
	d.lastPoll = now
	if d.denied {
		d.done = true
		return tokenResponse{}, errf(http.StatusBadRequest, "access_denied", "the user denied the authorization")
	}
	// Polls are timed by the client's ticker, so they arrive about one
	// interval apart, give or take network delay: only a clearly early
	// poll is told to slow down.
	if !last.IsZero() && now.Sub(last) < d.interval*3/4 {
		d.interval += 5 * time.Second
		return tokenResponse{}, errf(http.StatusBadRequest, "slow_down", "polling too often; interval is now %v", d.interval)
	}
	if d.user == "" {
		return tokenResponse{}, errf(http.StatusBadRequest, "authorization_pending", "the user has not approved yet")
	}
	d.done = true
	return s.issueLocked(d.user, client, d.scope, ""), nil
}

func (s *Server) clientCredentialsGrant(r *http.Request, client string) (tokenResponse, error) {
	if s.opts.Clients[client] == "" {
		return tokenResponse{}, errf(http.StatusBadRequest, "unauthorized_client", "a public client cannot use client_credentials")
	}
	user, ok := s.opts.ClientCredentialsUser[client]
	if !ok {
		return tokenResponse{}, errf(http.StatusBadRequest, "unauthorized_client", "client has no app-only access")
	}
	// RFC 6749 §4.4.3: no refresh token.
	return s.issueLocked(user, client, r.PostForm.Get("scope"), "-"), nil
}

func (s *Server) handleDevice(w http.ResponseWriter, r *http.Request) {
	s.clientPost(w, r, &s.stats.DeviceAuthorizations, func(client string) {
		code := newToken("dc")
		d := &deviceAuth{
			userCode: newUserCode(),
			client:   client,
			scope:    r.PostForm.Get("scope"),
			exp:      time.Now().Add(s.opts.DeviceTTL),
			interval: s.opts.DeviceInterval,
		}
		s.devices[code] = d
		writeJSON(w, http.StatusOK, map[string]any{
			"device_code":               code,
			"user_code":                 d.userCode,
			"verification_uri":          s.URL + "/verify",
			"verification_uri_complete": s.URL + "/verify?user_code=" + d.userCode,
			"expires_in":                int64((s.opts.DeviceTTL + time.Second - 1) / time.Second),
			"interval":                  int64(d.interval / time.Second),
		})
	})
}

// loopbackRedirect accepts only http redirect URIs on a loopback host
// (RFC 8252 §7.3), the only kind popbridge's headless login uses.
func loopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Authorizations++
	redirect := q.Get("redirect_uri")
	// Errors about the client or the redirect URI must not redirect
	// (RFC 6749 §4.1.2.1).
	if _, ok := s.opts.Clients[q.Get("client_id")]; !ok {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	if !loopbackRedirect(redirect) {
		http.Error(w, "redirect_uri must be an http URI on a loopback address", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		if st := q.Get("state"); st != "" {
			params.Set("state", st)
		}
		u, _ := url.Parse(redirect)
		vals := u.Query()
		for k, v := range params {
			vals[k] = v
		}
		u.RawQuery = vals.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		back(url.Values{"error": {"unsupported_response_type"}})
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		back(url.Values{"error": {"invalid_request"}, "error_description": {"PKCE with code_challenge_method S256 is required"}})
		return
	case s.opts.AuthorizeUser == "":
		back(url.Values{"error": {"access_denied"}})
		return
	}
	code := newToken("ac")
	s.codes[code] = &authCode{
		client:    q.Get("client_id"),
		redirect:  redirect,
		challenge: q.Get("code_challenge"),
		scope:     q.Get("scope"),
		user:      s.opts.AuthorizeUser,
		exp:       time.Now().Add(codeTTL),
	}
	back(url.Values{"code": {code}})
}

func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	var tok string
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		tok = strings.TrimSpace(auth[7:])
	}
	switch r.Method {
	case http.MethodPost:
		if err := parsePost(r); err != nil {
			writeError(w, err)
			return
		}
		if t := r.PostForm.Get("token"); t != "" {
			tok = t
		}
	case http.MethodGet:
		if t := r.URL.Query().Get("token"); t != "" {
			tok = t
		}
	default:
		writeError(w, errf(http.StatusMethodNotAllowed, "invalid_request", "GET or POST required"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Introspections++
	if tok == "" {
		writeError(w, errf(http.StatusBadRequest, "invalid_request", "token missing"))
		return
	}
	a := s.activeLocked(tok)
	if a == nil {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	s.stats.ActiveIntrospections++
	writeJSON(w, http.StatusOK, map[string]any{
		"active":     true,
		"username":   a.user,
		"scope":      a.scope,
		"client_id":  a.client,
		"token_type": "Bearer",
		"exp":        a.exp.Unix(),
	})
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	s.clientPost(w, r, &s.stats.Revocations, func(client string) {
		tok := r.PostForm.Get("token")
		if tok == "" {
			writeError(w, errf(http.StatusBadRequest, "invalid_request", "token missing"))
			return
		}
		// RFC 7009 §2.2: unknown tokens and other clients' tokens are
		// answered 200 too (the latter are left alone). Revoking a refresh
		// token also revokes the access tokens issued with it.
		if rt := s.refresh[tok]; rt != nil && rt.client == client {
			rt.valid = false
			for _, a := range s.access {
				if a.refresh == tok {
					a.revoked = true
				}
			}
		}
		if a := s.access[tok]; a != nil && a.client == client {
			a.revoked = true
		}
		w.WriteHeader(http.StatusOK)
	})
}
