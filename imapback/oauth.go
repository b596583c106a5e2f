package imapback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
)

// Upstream OAuth2. Microsoft 365 and Gmail accept no passwords over IMAP:
// a login presents an OAuth2 access token with SASL OAUTHBEARER (RFC
// 7628) or Google's older XOAUTH2, which Microsoft also speaks. Where the
// token comes from (cache, refresh, token store) is the caller's
// business: Credentials.Token is asked for one on every login and every
// reconnect.
//
// Both mechanisms fail in two steps: the server answers a refused token
// with a continuation carrying a base64 JSON error ({"status":"401",
// "schemes":"bearer","scope":"..."}), the client must send one more
// response (empty for XOAUTH2, a single 0x01 for OAUTHBEARER, RFC 7628
// §3.2.3), and only then does the server say NO. The JSON's status ends
// up in the ErrAuthFailed error text; the token never does.

// ErrToken wraps an error of Credentials.Token (both wrapped with %w, so callers can errors.Is the original too).
var ErrToken = errors.New("no upstream access token")

// SASL mechanism names.
const (
	mechXOAuth2     = "XOAUTH2"
	mechOAuthBearer = sasl.OAuthBearer
)

// checkCredentials refuses combinations that cannot work before any
// connection is made.
func (b *Backend) checkCredentials(cr Credentials) error {
	if cr.Token == nil && (b.opts.Auth == AuthXOAuth2 || b.opts.Auth == AuthOAuthBearer) {
		return fmt.Errorf("%w: upstream auth mechanism %q needs an OAuth2 access token, but the account has no token source configured", ErrUnavailable, b.opts.Auth)
	}
	return nil
}

// token asks cr.Token for an access token, bounded by CommandTimeout.
// It returns "" when cr has no token source.
func (b *Backend) token(ctx context.Context, cr Credentials) (string, error) {
	if cr.Token == nil {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.CommandTimeout)
	defer cancel()
	tok, err := cr.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrToken, err)
	}
	if tok == "" {
		return "", fmt.Errorf("%w: token source returned an empty token", ErrToken)
	}
	return tok, nil
}

// tokenMechanism chooses the SASL mechanism for a token login: the
// configured one, else OAUTHBEARER (the standard) when the server
// offers it, else XOAUTH2.
func (s *Session) tokenMechanism(caps imap.CapSet) (string, error) {
	switch s.b.opts.Auth {
	case AuthXOAuth2:
		return mechXOAuth2, nil
	case AuthOAuthBearer:
		return mechOAuthBearer, nil
	}
	switch {
	case caps.Has(imap.AuthCap(mechOAuthBearer)):
		return mechOAuthBearer, nil
	case caps.Has(imap.AuthCap(mechXOAuth2)):
		return mechXOAuth2, nil
	}
	return "", fmt.Errorf("%w: upstream offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2 for an OAuth2 login", ErrUnavailable)
}

// authenticateToken logs in as user with an OAuth2 access token.
func (s *Session) authenticateToken(user, token string) error {
	mech, err := s.tokenMechanism(s.c.Caps())
	if err != nil {
		return err
	}
	sc, err := s.tokenClient(mech, user, token)
	if err != nil {
		return err
	}
	start := time.Now()
	err = s.c.Authenticate(sc)
	s.observe("AUTHENTICATE", start, err)
	detail := ""
	if f := sc.failure(); f != nil {
		detail = fmt.Sprintf("%s error status %q", mech, f.Status)
		if f.Scope != "" {
			detail += fmt.Sprintf(", scope %q", f.Scope)
		}
	}
	if detail != "" {
		// The server sent an error challenge: whatever ends the
		// command (NO, or BAD for an empty response it did not take),
		// the token was refused.
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code != imap.ResponseCodeUnavailable && ie.Code != imap.ResponseCodeServerBug && ie.Code != imap.ResponseCodeLimit {
			return fmt.Errorf("%w: %v (%s)", ErrAuthFailed, err, detail)
		}
	}
	return loginError(err, detail)
}

// tokenClient returns the SASL client of mech. The user name goes into
// fields separated by 0x01 (and for OAUTHBEARER by ","), so control
// characters are refused and OAUTHBEARER's authzid is escaped as RFC
// 5801's saslname ("," as "=2C", "=" as "=3D"), which go-sasl leaves
// undone.
func (s *Session) tokenClient(mech, user, token string) (tokenClient, error) {
	for _, c := range []byte(user + token) {
		if c < 0x20 || c == 0x7f {
			return nil, fmt.Errorf("%w: user name or token contains control characters, which %s cannot carry", ErrAuthFailed, mech)
		}
	}
	if mech == mechXOAuth2 {
		return &xoauth2Client{user: user, token: token, conn: s.sasl}, nil
	}
	host, portStr, _ := net.SplitHostPort(s.b.opts.Address)
	port, _ := strconv.Atoi(portStr)
	authzid := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(user)
	return &oauthBearerClient{inner: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
		Username: authzid, Token: token, Host: host, Port: port,
	})}, nil
}

// tokenClient is a SASL client that remembers the server's error
// challenge.
type tokenClient interface {
	sasl.Client
	failure() *sasl.OAuthBearerError
}

// xoauth2Client is the client side of Google's XOAUTH2
// (developers.google.com/gmail/imap/xoauth2-protocol), which go-sasl
// lacks.
type xoauth2Client struct {
	user, token string
	conn        *saslConn // nil: the empty response goes out as "="
	fail        *sasl.OAuthBearerError
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return mechXOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next answers the error challenge with the empty response the
// protocol asks for; the server then ends the command with NO.
func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if c.fail != nil {
		return nil, errors.New("XOAUTH2: second challenge after the error challenge")
	}
	c.fail = parseFailure(challenge)
	if c.conn != nil {
		c.conn.emptyNext.Store(true)
	}
	return []byte{}, nil
}

func (c *xoauth2Client) failure() *sasl.OAuthBearerError { return c.fail }

// oauthBearerClient wraps go-sasl's OAUTHBEARER client, whose Next
// returns the error challenge as a Go error: imapclient.Authenticate then
// returns at once and leaves the command waiting for a response that
// never comes. RFC 7628 §3.2.3 wants the dummy response 0x01, after
// which the server says NO and the connection stays usable.
type oauthBearerClient struct {
	inner sasl.Client
	fail  *sasl.OAuthBearerError
}

func (c *oauthBearerClient) Start() (string, []byte, error) { return c.inner.Start() }

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if c.fail != nil {
		return nil, errors.New("OAUTHBEARER: second challenge after the error challenge")
	}
	c.fail = parseFailure(challenge)
	return []byte{0x01}, nil
}

func (c *oauthBearerClient) failure() *sasl.OAuthBearerError { return c.fail }

// parseFailure decodes an error challenge. A challenge that is not
// the expected JSON still gets the dummy response, so that the server
// can end the exchange, with a status that says so.
func parseFailure(challenge []byte) *sasl.OAuthBearerError {
	f := &sasl.OAuthBearerError{}
	if err := json.Unmarshal(challenge, f); err != nil || f.Status == "" {
		f.Status = "unparsable error challenge"
	}
	// The server's text is not trusted to be short or printable.
	f.Status = clipText(f.Status)
	f.Scope = clipText(f.Scope)
	return f
}

func clipText(s string) string {
	const maxLen = 100
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > maxLen {
		b = append(b[:maxLen], "..."...)
	}
	return string(b)
}

// go-imap encodes every empty SASL response as "=", which RFC 4959
// defines only for an empty initial response (SASL-IR); a continuation
// response that is empty is an empty line (RFC 9051 §6.2.2). Dovecot
// 2.3 answers "=" with "BAD Invalid base64 data in continued response"
// instead of ending XOAUTH2's error exchange with NO. go-imap offers no
// hook for its writes, so saslConn sits between it and the connection
// (above TLS) and turns exactly the one write "=\r\n" that the XOAUTH2
// client asked for into "\r\n". go-imap writes a SASL response as one
// flush while it holds the command encoder, so nothing else can be in
// that write. go-imap's own STARTTLS would put TLS under that layer, so
// a token login over STARTTLS does STARTTLS by hand (connectWithID).
type saslConn struct {
	net.Conn
	emptyNext atomic.Bool
}

func (c *saslConn) Write(p []byte) (int, error) {
	if c.emptyNext.CompareAndSwap(true, false) && string(p) == "=\r\n" {
		if _, err := c.Conn.Write([]byte("\r\n")); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// saslLayer wraps the plaintext connection go-imap will write to.
func (s *Session) saslLayer(conn net.Conn) net.Conn {
	s.sasl = &saslConn{Conn: conn}
	return s.sasl
}
