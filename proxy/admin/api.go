// api.go holds what the admin listener exchanges: the interfaces it reads
// sessions and OAuth2 states through, the JSON types of its answers, and
// Client, which the CLI verbs call it with.

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/popbridge/popbridge/pop3front"
)

// Sessions is one POP3 server's open sessions (a *pop3front.Server).
type Sessions interface {
	Sessions() []pop3front.SessionInfo
	// Kick closes the session with this id without its UPDATE state.
	Kick(id string) bool
	// KickUser closes every session of user that way and says how many.
	KickUser(user string) int
}

// OAuthStatus lists the OAuth2 accounts with the state of their tokens.
// It must never return a token.
type OAuthStatus interface {
	OAuthStatus() []AccountState
}

// Session is one open session as GET /sessions lists it.
type Session struct {
	ID       string `json:"id"`
	User     string `json:"user"` // empty before the login
	Device   string `json:"device,omitempty"`
	Remote   string `json:"remote"`
	Listener string `json:"listener"`
	TLS      bool   `json:"tls"`
	// Upstream is the name of the upstream serving the user, when the
	// server was given a way to tell (Options.UpstreamOf).
	Upstream string    `json:"upstream,omitempty"`
	Since    time.Time `json:"since"`
	State    string    `json:"state"` // authorization, transaction or update
	// Sent is the octets sent to the client; Retrieved the completed
	// RETRs; Marked the messages marked deleted now.
	Sent      int64 `json:"octets_sent"`
	Retrieved int   `json:"retrieved"`
	Marked    int   `json:"marked"`
}

// Token states of an OAuth2 account (AccountState.State).
const (
	// TokenValid: an access token is cached, valid until ValidUntil.
	TokenValid = "valid"
	// TokenIdle: no access token cached yet; the next login gets one.
	TokenIdle = "idle"
	// TokenNeedsLogin: no usable refresh token (never authorised, or
	// revoked): an operator must run popbridge oauth login.
	TokenNeedsLogin = "needs_login"
	// TokenFailing: refreshing has failed since FailingSince; LastError
	// says how.
	TokenFailing = "refresh_failing"
)

// AccountState is the state of one OAuth2 account's tokens, as GET /oauth
// lists it. It never holds a token.
type AccountState struct {
	Account  string `json:"account"`
	Provider string `json:"provider"`
	// State is TokenValid, TokenIdle, TokenNeedsLogin or TokenFailing.
	State        string    `json:"state"`
	ValidUntil   time.Time `json:"valid_until,omitzero"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	// LastError is the class of the last failure (revoked, missing,
	// rejected, failed), never a response body.
	LastError string `json:"last_error,omitempty"`
}

// Client calls an admin listener.
type Client struct {
	// URL is the listener's base URL: http://host:port, or host:port.
	URL string
	// Token is the bearer token; empty sends none.
	Token string
	// HTTP defaults to a client with a 10-second timeout.
	HTTP *http.Client
}

// maxAnswer bounds what the Client reads of an answer.
const maxAnswer = 16 << 20

// Sessions lists the open sessions, those of user only if user is set.
func (c *Client) Sessions(ctx context.Context, user string) ([]Session, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	var list []Session
	return list, c.do(ctx, http.MethodGet, "/sessions", q, &list)
}

// Kick closes the session with this id, or every session of user (give
// one of them), and returns how many it closed.
func (c *Client) Kick(ctx context.Context, id, user string) (int, error) {
	q := url.Values{}
	if id != "" {
		q.Set("id", id)
	}
	if user != "" {
		q.Set("user", user)
	}
	var ans kickAnswer
	err := c.do(ctx, http.MethodPost, "/kick", q, &ans)
	return ans.Kicked, err
}

// Config returns the effective configuration, redacted, as YAML.
func (c *Client) Config(ctx context.Context) ([]byte, error) {
	var raw []byte
	return raw, c.do(ctx, http.MethodGet, "/config", nil, &raw)
}

// OAuth lists the OAuth2 accounts and the states of their tokens.
func (c *Client) OAuth(ctx context.Context) ([]AccountState, error) {
	var list []AccountState
	return list, c.do(ctx, http.MethodGet, "/oauth", nil, &list)
}

type kickAnswer struct {
	Kicked int `json:"kicked"`
}

// do sends one request and decodes its JSON answer into out, or copies
// the answer's bytes if out is a *[]byte.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	base := c.URL
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + path)
	if err != nil {
		return fmt.Errorf("admin URL %q: %v", c.URL, err)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%s %s: %s: the admin listener wants its bearer token (-token-file, or admin.token_file with -config)", method, path, resp.Status)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = body
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return errors.New(method + " " + path + ": the answer is not the admin listener's JSON: " + err.Error())
	}
	return nil
}
