// answer.go turns the hook's response headers into an Answer, a refusal
// or a request to wait, and holds the errors Login returns.

package authhttp

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

// Answer is a login the hook accepted: where it goes and as whom.
type Answer struct {
	// Addr is the upstream IMAP server (Auth-Server, Auth-Port).
	Addr netip.AddrPort
	// User and Pass log in upstream: Auth-User and Auth-Pass of the
	// answer, taken as they are (not URL-decoded, as nginx), or the
	// client's own when the answer has none.
	User, Pass string
	// Exactly one of Upstream and Server says how to speak to Addr:
	// Upstream names a configured upstream whose TLS settings (and the
	// rest but its address) apply (X-Popbridge-Upstream); Server is the
	// auth_http.servers entry that matched Addr.
	Upstream string
	Server   *Server
	// Mailbox, Device, Delete and Seen are set by the popbridge headers
	// X-Popbridge-Mailbox, -Device, -Delete and -Seen; empty: as the
	// configuration says.
	Mailbox string
	// Mailboxes, from X-Popbridge-Mailboxes, are folders to serve
	// merged instead (a comma-separated list of %-escaped names, so that
	// a name may hold a comma as %2C); at most one of the two is set.
	Mailboxes []string
	Device    string
	Delete    imapback.DeletePolicy
	Seen      imapback.SeenPolicy
	// RetentionDays is X-Popbridge-Retention-Days, 0 (off) to
	// imapback.MaxRetentionDays; nil: as the configuration says.
	RetentionDays *int
	// Cached: the answer came from the cache, not from the hook.
	Cached bool
}

// Sentinels that every error of Login wraps.
var (
	// ErrDenied: the hook refused the login (an Auth-Status other than
	// OK). The error is a *DeniedError.
	ErrDenied = errors.New("authhttp: login refused")
	// ErrUnavailable: no usable answer (the hook is down, slow, busy,
	// answered other than 200, or answered something malformed). The
	// error is an *UnavailableError.
	ErrUnavailable = errors.New("authhttp: no usable answer from the hook")
)

// DeniedError is a refusal. It unwraps to ErrDenied and to the
// *pop3front.Error that answers it: -ERR [AUTH] <Status>.
type DeniedError struct {
	// Status is the answer's Auth-Status, printable ASCII, bounded.
	Status string
	// Wait is how long Login waited before returning (Auth-Wait).
	Wait time.Duration
}

func (e *DeniedError) Error() string { return "authhttp: login refused: " + e.Status }

// Unwrap lets errors.Is find ErrDenied and errors.As the reply.
func (e *DeniedError) Unwrap() []error {
	return []error{ErrDenied, &pop3front.Error{Code: "AUTH", Text: e.Status}}
}

// UnavailableError is a failure to get a usable answer. It unwraps to
// ErrUnavailable, to pop3front.ErrUnavailable (-ERR [SYS/TEMP]) and to
// its cause. Its text is for the log, never for the client.
type UnavailableError struct {
	// Result is the Result* constant the observer was told.
	Result string
	Err    error
}

func (e *UnavailableError) Error() string {
	return "authhttp: no usable answer from the hook (" + e.Result + "): " + e.Err.Error()
}

// Unwrap lets errors.Is find ErrUnavailable and the cause, and
// errors.As the reply.
func (e *UnavailableError) Unwrap() []error {
	return []error{ErrUnavailable, pop3front.ErrUnavailable, e.Err}
}

func unavailable(result string, format string, args ...any) error {
	return &UnavailableError{Result: result, Err: fmt.Errorf(format, args...)}
}

// maxStatusLen bounds the refusal text a client sees.
const maxStatusLen = 200

// verdict is what one response says.
type verdict struct {
	status int // statusOK, statusDenied or statusWait
	text   string
	wait   time.Duration
	answer Answer
}

const (
	statusOK = iota
	statusDenied
	statusWait
)

// parse reads a 200 response's headers as nginx does: Auth-* names in
// any case, the last of repeated headers wins, a non-OK Auth-Status
// anywhere refuses. Unlike nginx, an answer without Auth-Status is
// malformed rather than a success.
func (c *Client) parse(h http.Header, r *Request) (verdict, error) {
	var v verdict
	last := func(name string) (string, bool) {
		vals := h.Values(name)
		if len(vals) == 0 {
			return "", false
		}
		return vals[len(vals)-1], true
	}
	statuses := h.Values("Auth-Status")
	if len(statuses) == 0 {
		return v, errors.New("no Auth-Status")
	}
	v.status = statusOK
	for _, s := range statuses {
		switch s {
		case "OK":
		case "WAIT":
			if v.status == statusOK {
				v.status = statusWait
			}
		default:
			v.status, v.text = statusDenied, sanitize(s)
		}
	}
	if s, ok := last("Auth-Wait"); ok {
		// nginx ignores a value that is not a number.
		if n, err := strconv.ParseUint(s, 10, 31); err == nil {
			v.wait = min(time.Duration(n)*c.waitUnit, c.maxWait)
		}
	}
	if v.status != statusOK {
		return v, nil
	}
	a := &v.answer
	server, _ := last("Auth-Server")
	port, _ := last("Auth-Port")
	if server == "" || port == "" {
		return v, errors.New("no Auth-Server or Auth-Port")
	}
	ip, err := netip.ParseAddr(server)
	if err != nil || ip.Zone() != "" {
		return v, fmt.Errorf("Auth-Server %q is not an IP address", server)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return v, fmt.Errorf("Auth-Port %q is not a port number", port)
	}
	a.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(p))
	a.User, a.Pass = r.User, r.Pass
	if u, ok := last("Auth-User"); ok {
		if u == "" || !safeValue(u) {
			return v, fmt.Errorf("Auth-User %q is empty or holds a control character", u)
		}
		a.User = u
	}
	if pw, ok := last("Auth-Pass"); ok {
		if pw == "" || !safeValue(pw) {
			return v, errors.New("Auth-Pass is empty or holds a control character")
		}
		a.Pass = pw
	}
	if err := c.popbridgeHeaders(h, a); err != nil {
		return v, err
	}
	return v, nil
}

// setMailboxes reads X-Popbridge-Mailboxes, which replaces
// X-Popbridge-Mailbox and so cannot come with it.
func (a *Answer) setMailboxes(list string) error {
	if a.Mailbox != "" {
		return errors.New("X-Popbridge-Mailbox and X-Popbridge-Mailboxes exclude each other")
	}
	for _, s := range strings.Split(list, ",") {
		m, err := url.PathUnescape(strings.TrimSpace(s))
		if err != nil || !imapback.ValidMailbox(m) {
			return fmt.Errorf("X-Popbridge-Mailboxes: %q is not a %%-escaped UTF-8 mailbox name", s)
		}
		a.Mailboxes = append(a.Mailboxes, m)
	}
	if err := imapback.CheckMailboxes(a.Mailboxes); err != nil {
		return fmt.Errorf("X-Popbridge-Mailboxes: %v", err)
	}
	return nil
}

// popbridgeHeaders reads the X-Popbridge-* headers into a, and decides
// how to speak to a.Addr. Each may appear once.
func (c *Client) popbridgeHeaders(h http.Header, a *Answer) error {
	one := func(name string) (string, error) {
		vals := h.Values(name)
		switch {
		case len(vals) > 1:
			return "", fmt.Errorf("%s repeated", name)
		case len(vals) == 1 && vals[0] == "":
			return "", fmt.Errorf("%s empty", name)
		case len(vals) == 1:
			return vals[0], nil
		}
		return "", nil
	}
	var errs []error
	get := func(name string) string {
		s, err := one(name)
		errs = append(errs, err)
		return s
	}
	mailbox := get("X-Popbridge-Mailbox")
	mailboxes := get("X-Popbridge-Mailboxes")
	a.Device = get("X-Popbridge-Device")
	a.Delete = imapback.DeletePolicy(get("X-Popbridge-Delete"))
	a.Seen = imapback.SeenPolicy(get("X-Popbridge-Seen"))
	a.Upstream = get("X-Popbridge-Upstream")
	retention := get("X-Popbridge-Retention-Days")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if retention != "" {
		// Digits only: Atoi would take a sign.
		n, err := strconv.Atoi(retention)
		if err != nil || strings.Trim(retention, "0123456789") != "" || n > imapback.MaxRetentionDays {
			return fmt.Errorf("X-Popbridge-Retention-Days %q is not a number of days from 0 to %d", retention, imapback.MaxRetentionDays)
		}
		a.RetentionDays = &n
	}
	if mailbox != "" {
		m, err := url.PathUnescape(mailbox)
		if err != nil || !imapback.ValidMailbox(m) {
			return fmt.Errorf("X-Popbridge-Mailbox %q is not a %%-escaped UTF-8 mailbox name", mailbox)
		}
		a.Mailbox = m
	}
	if mailboxes != "" {
		if err := a.setMailboxes(mailboxes); err != nil {
			return err
		}
	}
	if a.Device != "" && !imapback.ValidDevice(a.Device) {
		return fmt.Errorf("X-Popbridge-Device %q is not a device name", a.Device)
	}
	switch a.Delete {
	case "", imapback.DeleteExpunge, imapback.DeleteTrash, imapback.DeleteFlag, imapback.DeleteKeep:
	default:
		return fmt.Errorf("X-Popbridge-Delete %q is not a delete policy", a.Delete)
	}
	switch a.Seen {
	case "", imapback.SeenRetr, imapback.SeenNever, imapback.SeenQuit:
	default:
		return fmt.Errorf("X-Popbridge-Seen %q is not a seen policy", a.Seen)
	}
	if a.Upstream != "" {
		if c.upstreams != nil && !c.upstreams[a.Upstream] {
			return fmt.Errorf("X-Popbridge-Upstream %q names no configured upstream", a.Upstream)
		}
		return nil
	}
	for i := range c.servers {
		if c.servers[i].matches(a.Addr) {
			a.Server = &c.servers[i]
			return nil
		}
	}
	return fmt.Errorf("Auth-Server %s is in no auth_http.servers entry and no X-Popbridge-Upstream was sent", a.Addr)
}

// sanitize makes an Auth-Status text safe for a POP3 reply line:
// printable ASCII, at most maxStatusLen bytes, never empty.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > maxStatusLen {
		b = b[:maxStatusLen]
	}
	if t := strings.TrimSpace(string(b)); t != "" {
		return t
	}
	return "Authentication failed"
}
