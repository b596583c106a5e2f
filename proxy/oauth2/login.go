package oauth2

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/proxy/config"
)

// The operator's side of OAuth2 (`popbridge oauth login`): running a grant
// once, interactively, and putting the refresh token into the token store
// that the daemon reads. docs/oauth2.md describes the steps around it.

// LoginOptions configures Login.
type LoginOptions struct {
	// Grant overrides the provider's grant: device or code. Empty: the
	// provider's (which may be client_credentials).
	Grant config.Grant
	// Timeout bounds the whole login, the wait for the user included.
	// Zero: no bound beyond the context's and the device code's expiry.
	Timeout time.Duration
	// RedirectHost is the host of the code grant's loopback redirect URI:
	// 127.0.0.1 (default) or localhost, whichever the app registration
	// names (the authorisation server compares it literally).
	RedirectHost string
	// RedirectPort is the port of the loopback redirect; 0 takes a free
	// one (Microsoft and Google ignore the port of loopback redirects of
	// native apps). Providers that compare the port need a fixed one.
	RedirectPort int
	// Out receives the instructions for the operator and the outcome. It
	// never receives a token, code or secret.
	Out io.Writer
}

// errCodeExpired: the device code expired while polling.
var errCodeExpired = errors.New("device code expired")

// errLoginTimeout is the cause of a login that hit LoginOptions.Timeout.
var errLoginTimeout = errors.New("timed out")

// Login obtains a token for the oauth2 account whose user is account
// and keeps it in the token store, so that POP3 logins of that account
// work from then on. cfg must have passed Check.
//
// For the device and code grants it tells the operator on opts.Out what
// to open and waits for the sign-in; the token, refresh token included,
// is stored under the account's user name. For client_credentials there
// is nothing to authorise: it fetches one token to prove that the
// provider's settings work, and stores nothing.
func Login(ctx context.Context, cfg *config.Config, account string, opts LoginOptions) error {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	a, ok := cfg.OAuth2.Account(account)
	if !ok {
		names := make([]string, 0, len(cfg.OAuth2.Accounts))
		for _, a := range cfg.OAuth2.Accounts {
			names = append(names, a.User)
		}
		if len(names) == 0 {
			return fmt.Errorf("no account %q: the configuration has no oauth2.accounts", account)
		}
		return fmt.Errorf("no account %q in oauth2.accounts (there are: %s)", account, strings.Join(names, ", "))
	}
	p, ok := cfg.OAuth2.Providers[a.Provider]
	if !ok || a.Provider == "" {
		return fmt.Errorf("account %s has no provider: set its provider to one of oauth2.providers", a.User)
	}
	grant, err := loginGrant(a, &p, opts.Grant)
	if err != nil {
		return err
	}
	if h := opts.RedirectHost; grant == config.GrantCode && h != "" && h != "127.0.0.1" && h != "localhost" {
		// The redirect must come back to this process: a loopback host.
		return fmt.Errorf("redirect host %q: want 127.0.0.1 or localhost", h)
	}

	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, opts.Timeout, errLoginTimeout)
		defer cancel()
	}
	// A client of its own: every socket has a deadline, and no idle
	// connection outlives the login.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: tr, Timeout: time.Minute})

	if grant == config.GrantClientCredentials {
		return checkClientCredentials(ctx, a, &p, out)
	}

	store, where, written, err := openStoreForLogin(cfg.OAuth2.TokenStore, a.User)
	if err != nil {
		return err
	}
	if c, ok := store.(io.Closer); ok {
		defer c.Close()
	}
	var tok *oauth2.Token
	switch grant {
	case config.GrantDevice:
		tok, err = deviceLogin(ctx, a, &p, out)
	case config.GrantCode:
		tok, err = codeLogin(ctx, a, &p, opts, out)
	}
	if err != nil {
		return loginError(ctx, opts.Timeout, err)
	}
	if tok.RefreshToken == "" {
		return fmt.Errorf("provider %s issued no refresh token, so popbridge could log in only until %s; nothing stored "+
			"(Microsoft: the scopes need offline_access; generic providers: a scope such as offline_access may be needed)",
			a.Provider, tok.Expiry.Format(time.RFC3339))
	}
	if err := saveLogin(ctx, store, a.User, tok); err != nil {
		return fmt.Errorf("signed in, but the token store did not take the token: %v", err)
	}
	fmt.Fprintf(out, "\nDone: account %s is authorised (provider %s, %s grant). Its refresh token is saved in %s under the name %s.\n",
		a.User, a.Provider, grant, where, a.User)
	if !tok.Expiry.IsZero() {
		fmt.Fprintf(out, "The current access token is valid until %s; popbridge renews it with the refresh token.\n", tok.Expiry.Format(time.RFC3339))
	}
	fmt.Fprintf(out, "A running popbridge picks the new token up at the next POP3 login of %s: no restart needed.\n", a.User)
	if len(written) == 0 {
		return nil // no files
	}
	switch uid, err := giveToDirOwner(written...); {
	case err != nil:
		fmt.Fprintf(out, "Warning: could not hand %s to the owner of its directory (%v): popbridge's own user must be able to read and replace it.\n", where, err)
	case uid >= 0:
		fmt.Fprintf(out, "It belongs to uid %d, the owner of its directory, as the daemon's files must.\n", uid)
	case os.Geteuid() == 0:
		fmt.Fprintf(out, "Note: this ran as root and root owns the directory, so root owns %s: popbridge's own user must be able to read and replace it.\n", where)
	}
	return nil
}

// loginGrant is the grant to run: the provider's, or the one asked for.
func loginGrant(a *config.AccountConfig, p *config.ProviderConfig, asked config.Grant) (config.Grant, error) {
	if asked == "" {
		return p.Grant, nil
	}
	switch {
	case asked != config.GrantDevice && asked != config.GrantCode:
		return "", fmt.Errorf("grant %q: want device or code", asked)
	case p.Grant == config.GrantClientCredentials:
		return "", fmt.Errorf("provider %s uses the client_credentials grant, which has no interactive login; leave out -grant to check it", a.Provider)
	case asked == config.GrantDevice && p.Preset == "google":
		return "", fmt.Errorf("provider %s is Google, which refuses the Gmail scope in the device grant; use the code grant", a.Provider)
	case asked == config.GrantDevice && p.DeviceAuthURL == "":
		return "", fmt.Errorf("provider %s has no device_auth_url, so no device grant", a.Provider)
	case asked == config.GrantCode && p.AuthURL == "":
		return "", fmt.Errorf("provider %s has no auth_url, so no code grant", a.Provider)
	}
	return asked, nil
}

// openStoreForLogin opens the token store and makes sure, before anyone
// signs in, that it can be read with its key and written. It also returns
// a description of the store and the files that saving writes.
func openStoreForLogin(sc config.TokenStoreConfig, account string) (store Store, where string, written []string, err error) {
	store, err = OpenStore(sc)
	if err != nil {
		return nil, "", nil, fmt.Errorf("token store: %v", err)
	}
	var dir string
	switch {
	case sc.Type == config.TokenStoreRedis:
		rs := store.(*redisStore)
		where = "the Redis token store (" + rs.where(account) + ")"
		if _, err := store.Load(account); err != nil && !errors.Is(err, errNoToken) {
			rs.Close()
			return nil, "", nil, fmt.Errorf("cannot read %s, so it cannot be updated either: %v", where, err)
		}
		return store, where, nil, nil
	case sc.File != "":
		dir, where = filepath.Dir(sc.File), "the token store file "+sc.File
		written = []string{sc.File, sc.File + ".lock"}
	case sc.Dir != "":
		dir, where = sc.Dir, "the token store directory "+sc.Dir
		written = []string{filepath.Join(sc.Dir, account)}
	default:
		return nil, "", nil, errors.New("oauth2.token_store is not configured: set file and key_file, or dir, to keep refresh tokens")
	}
	if _, err := store.Load(account); err != nil && !errors.Is(err, errNoToken) {
		return nil, "", nil, fmt.Errorf("cannot read %s, so it cannot be updated either: %v", where, err)
	}
	probe, err := os.CreateTemp(dir, ".popbridge-write-test*")
	if err != nil {
		hint := ""
		if sc.Dir != "" {
			hint = " (a mounted Kubernetes Secret is read-only: run oauth login with a writable dir and create the Secret from its files, see docs/oauth2.md)"
		}
		return nil, "", nil, fmt.Errorf("cannot write %s: %v%s", where, err, hint)
	}
	probe.Close()
	os.Remove(probe.Name())
	return store, where, written, nil
}

// loginError explains why a grant ended without a token.
func loginError(ctx context.Context, timeout time.Duration, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), errLoginTimeout):
		return fmt.Errorf("no sign-in within %v (-timeout); nothing stored", timeout)
	case ctx.Err() != nil:
		return errors.New("interrupted; nothing stored")
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch re.ErrorCode {
		case "access_denied":
			return errors.New("the sign-in was declined (access_denied); nothing stored")
		case "expired_token":
			err = errCodeExpired
		}
	}
	if errors.Is(err, errCodeExpired) {
		return errors.New("the code expired before the sign-in was completed; nothing stored: run oauth login again")
	}
	return fmt.Errorf("%v; nothing stored", err)
}

// providerHint adds what an error code usually means at a preset's
// provider.
func providerHint(p *config.ProviderConfig, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case p.Preset == "microsoft" && (re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client"):
		return fmt.Errorf("%w (Microsoft: is \"Allow public client flows\" enabled in the app registration, and is the client id right?)", err)
	case re.ErrorCode == "invalid_scope":
		return fmt.Errorf("%w (the app registration must allow the scopes %s)", err, strings.Join(p.Scopes, " "))
	}
	return err
}

// deviceLogin runs the device authorisation grant (RFC 8628).
func deviceLogin(ctx context.Context, a *config.AccountConfig, p *config.ProviderConfig, out io.Writer) (*oauth2.Token, error) {
	c := p.Client()
	da, err := c.DeviceAuth(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("device authorisation request to %s: %w", p.DeviceAuthURL, providerHint(p, err))
	}
	if da.VerificationURI == "" || da.UserCode == "" {
		return nil, fmt.Errorf("device authorisation at %s: the answer has no verification_uri or user_code", p.DeviceAuthURL)
	}
	fmt.Fprintf(out, "To authorise popbridge for account %s, sign in as the mailbox %s.\n\n", a.User, a.UpstreamUser)
	fmt.Fprintf(out, "Open this page in a browser, on any computer or phone:\n\n    %s\n\nand enter this code:\n\n    %s\n\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(Or open this address, which has the code in it:\n\n    %s\n)\n\n", da.VerificationURIComplete)
	}
	if !da.Expiry.IsZero() {
		fmt.Fprintf(out, "Waiting for the sign-in; the code expires at %s. Ctrl-C stops.\n", da.Expiry.Local().Format("15:04:05 MST"))
	} else {
		fmt.Fprintln(out, "Waiting for the sign-in. Ctrl-C stops.")
	}
	tok, err := c.DeviceAccessToken(ctx, da)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			// x/oauth2 stops polling when the code expires.
			return nil, errCodeExpired
		}
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, providerHint(p, err)
	}
	return tok, nil
}

// callback is one request to the loopback redirect URI.
type callback struct {
	query url.Values
	page  chan<- resultPage // what to answer with
}

// resultPage is the browser's last page of the sign-in.
type resultPage struct {
	status int
	html   string
}

// codeLogin runs the authorisation code grant with PKCE (RFC 7636, S256)
// and a loopback redirect (RFC 8252 §7.3).
func codeLogin(ctx context.Context, a *config.AccountConfig, p *config.ProviderConfig, opts LoginOptions, out io.Writer) (*oauth2.Token, error) {
	host := opts.RedirectHost
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.RedirectPort)))
	if err != nil {
		return nil, fmt.Errorf("loopback listener for the redirect: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	listeners := []net.Listener{ln}
	if host == "localhost" {
		// A browser may resolve localhost to ::1 first.
		if ln6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port))); err == nil {
			listeners = append(listeners, ln6)
		}
	}

	c := p.Client()
	c.RedirectURL = fmt.Sprintf("http://%s:%d/", host, port)
	verifier := oauth2.GenerateVerifier()
	state, err := randomState()
	if err != nil {
		return nil, err
	}
	authURL := codeAuthURL(c, p, state, verifier)

	calls := make(chan callback)
	done := make(chan struct{})
	srv := &http.Server{
		Handler:           redirectHandler(calls, done),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	for _, l := range listeners {
		go srv.Serve(l)
	}
	defer func() {
		close(done)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()

	fmt.Fprintf(out, "To authorise popbridge for account %s, sign in as the mailbox %s.\n\n", a.User, a.UpstreamUser)
	fmt.Fprintf(out, "Open this address in a browser on this computer:\n\n    %s\n\n", authURL)
	fmt.Fprintf(out, "The sign-in ends with a redirect to %s, where this command is listening.\n", c.RedirectURL)
	fmt.Fprintf(out, "(Browser on another computer? Forward the port first: ssh -L %d:127.0.0.1:%d THIS-HOST, and use -redirect-port %d.)\n",
		port, port, port)
	fmt.Fprintln(out, "Waiting for the sign-in. Ctrl-C stops.")

	var cb callback
	select {
	case cb = <-calls:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	reply := func(ok bool, msg string) {
		title, status := "popbridge: sign-in failed", http.StatusBadRequest
		if ok {
			title, status = "popbridge: signed in", http.StatusOK
		}
		cb.page <- resultPage{status, fmt.Sprintf("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>"+
			"<body><h1>%s</h1><p>%s</p><p>You can close this window.</p></body></html>\n",
			title, title, html.EscapeString(msg))}
	}
	q := cb.query
	if got := q.Get("state"); subtle.ConstantTimeCompare([]byte(got), []byte(state)) != 1 {
		reply(false, "The redirect carried the wrong state. Nothing was stored; run popbridge oauth login again.")
		return nil, errors.New("the redirect carried a wrong state (a stale or forged sign-in); the code was not used")
	}
	if e := q.Get("error"); e != "" {
		desc := q.Get("error_description")
		reply(false, "The authorisation server answered: "+e+" "+desc)
		if e == "access_denied" {
			return nil, errors.New("the sign-in was declined (access_denied)")
		}
		return nil, fmt.Errorf("the authorisation server refused: %s %s", e, desc)
	}
	code := q.Get("code")
	if code == "" {
		reply(false, "The redirect carried no code.")
		return nil, errors.New("the redirect carried neither a code nor an error")
	}
	tok, err := c.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		reply(false, "popbridge could not exchange the code for a token; the command's output says why.")
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("exchanging the code at %s: %w", p.TokenURL, providerHint(p, err))
	}
	reply(true, "popbridge has the token for account "+a.User+".")
	return tok, nil
}

// codeAuthURL is the authorisation request: PKCE S256, and for Google
// the parameters without which it issues no refresh token (offline), or
// none on a second consent (prompt=consent).
func codeAuthURL(c *oauth2.Config, p *config.ProviderConfig, state, verifier string) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if p.Preset == "google" {
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.ApprovalForce)
	}
	return c.AuthCodeURL(state, opts...)
}

// redirectHandler hands requests that carry an answer (code, error or
// state) to the login, one at a time, and answers with the page it gets
// back. Others (a favicon) get 404 and change nothing.
func redirectHandler(calls chan<- callback, done <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/" || (!q.Has("code") && !q.Has("error") && !q.Has("state")) {
			http.NotFound(w, r)
			return
		}
		page := make(chan resultPage, 1)
		select {
		case calls <- callback{query: q, page: page}:
		case <-done:
			http.Error(w, "popbridge has already finished this sign-in", http.StatusGone)
			return
		case <-r.Context().Done():
			return
		}
		var res resultPage
		select {
		case res = <-page:
		case <-done:
			// The login answers before it ends: prefer its page.
			select {
			case res = <-page:
			default:
				res = resultPage{http.StatusServiceUnavailable, "<!DOCTYPE html>\n<p>popbridge stopped waiting. You can close this window.</p>\n"}
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(res.status)
		io.WriteString(w, res.html)
	})
}

func randomState() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// checkClientCredentials fetches one app-only token to prove the
// provider's settings: there is no user to sign in and nothing to store.
func checkClientCredentials(ctx context.Context, a *config.AccountConfig, p *config.ProviderConfig, out io.Writer) error {
	c := p.AppClient()
	tok, err := c.Token(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return loginError(ctx, 0, err)
		}
		return fmt.Errorf("client_credentials grant at %s: %w", p.TokenURL, providerHint(p, err))
	}
	fmt.Fprintf(out, "Provider %s uses the client_credentials grant: there is nothing to authorise interactively and nothing to store.\n", a.Provider)
	fmt.Fprintf(out, "Checked: %s issued an app-only access token for client %s (scopes %s", p.TokenURL, p.ClientID, strings.Join(p.Scopes, " "))
	if !tok.Expiry.IsZero() {
		fmt.Fprintf(out, ", valid until %s", tok.Expiry.Format(time.RFC3339))
	}
	fmt.Fprintln(out, "), so the client id and secret work.")
	fmt.Fprintf(out, "Whether the app may open the mailbox %s shows at the first IMAP login (Exchange Online: Add-MailboxPermission, see docs/oauth2.md).\n",
		a.UpstreamUser)
	return nil
}
