// client.go holds Client: Login asks the hook (or the cache), bounded in
// concurrency and time, waits as the answer says, and reports each
// outcome to the Observer. Login runs on the caller's goroutine; the
// Client has none of its own.

package authhttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// Results an Observer is told.
const (
	ResultOK          = "ok"          // accepted
	ResultDenied      = "denied"      // refused by the hook
	ResultWait        = "wait"        // Auth-Status: WAIT; Login asks again
	ResultCached      = "cached"      // accepted from the cache, no request
	ResultTimeout     = "timeout"     // the hook did not answer within auth_http.timeout
	ResultBusy        = "busy"        // no request slot freed within auth_http.timeout
	ResultUnavailable = "unavailable" // connection failed, the hook closed early, or not 200
	ResultMalformed   = "malformed"   // a 200 answer popbridge cannot use
	ResultCanceled    = "canceled"    // the login's context ended first
)

// Observer learns the outcome of every hook request and cache hit.
// Latency is the time the request took, slot wait included (zero for a
// cache hit). It is called on the goroutine of Login and must be quick.
type Observer interface {
	HookRequest(result string, latency time.Duration)
}

// Options are what the Client takes besides the configuration.
type Options struct {
	// Observer, when set, is told every outcome.
	Observer Observer
	// Upstreams are the names X-Popbridge-Upstream may give; nil accepts
	// any name (the caller then checks it).
	Upstreams []string
}

// maxHead bounds the response's status line and headers.
const maxHead = 16 << 10

// maxWaitRounds bounds the Auth-Status: WAIT answers one Login follows.
const maxWaitRounds = 3

// Client asks the hook about logins. It is safe for concurrent use.
type Client struct {
	uri, host, dialAddr string
	tlsConfig           *tls.Config // for https, else nil
	headers             [][2]string
	passClientCert      bool
	timeout, maxWait    time.Duration
	servers             []Server
	upstreams           map[string]bool
	obs                 Observer
	slots               chan struct{}
	cache               *answerCache // nil when off

	// waitUnit is one Auth-Wait unit, a second; tests shorten it.
	waitUnit time.Duration
	now      func() time.Time
}

// New makes a Client from a configuration that passed Check.
func New(cfg Config, opts Options) (*Client, error) {
	if errs := cfg.Check(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !cfg.Enabled() {
		return nil, errors.New("auth_http.url: not set")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		uri: u.RequestURI(), host: u.Host, dialAddr: u.Host,
		passClientCert: cfg.PassClientCert,
		timeout:        cfg.Timeout, maxWait: cfg.MaxWait,
		servers: cfg.Servers, obs: opts.Observer,
		slots:    make(chan struct{}, cfg.MaxConcurrent),
		waitUnit: time.Second, now: time.Now,
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		c.dialAddr = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "https" {
		c.tlsConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			if c.tlsConfig.RootCAs, err = imapback.LoadCAFile(cfg.CAFile); err != nil {
				return nil, err
			}
		}
	}
	for _, h := range cfg.Headers {
		v, err := h.value()
		if err != nil {
			return nil, err
		}
		c.headers = append(c.headers, [2]string{h.Name, v})
	}
	if opts.Upstreams != nil {
		c.upstreams = make(map[string]bool)
		for _, name := range opts.Upstreams {
			c.upstreams[name] = true
		}
	}
	if cfg.CacheTTL > 0 {
		c.cache = newAnswerCache(cfg.CacheTTL, cfg.CacheSize)
	}
	return c, nil
}

// Login asks the hook whether r may log in and where it goes. It returns
// an Answer, or an error that wraps ErrDenied (a *DeniedError, after the
// answer's Auth-Wait) or ErrUnavailable (an *UnavailableError); both
// unwrap to the *pop3front.Error the client must see.
func (c *Client) Login(ctx context.Context, r Request) (Answer, error) {
	var key cacheKey
	if c.cache != nil {
		key = c.cache.key(&r)
		if a, ok := c.cache.get(key, c.now()); ok {
			c.observe(ResultCached, 0)
			a.Cached = true
			return a, nil
		}
	}
	for round := 0; ; round++ {
		start := time.Now()
		v, err := c.ask(ctx, &r)
		if err != nil {
			var ue *UnavailableError
			errors.As(err, &ue)
			c.observe(ue.Result, time.Since(start))
			return Answer{}, err
		}
		switch v.status {
		case statusOK:
			c.observe(ResultOK, time.Since(start))
			if c.cache != nil {
				c.cache.put(key, v.answer, c.now())
			}
			return v.answer, nil
		case statusDenied:
			c.observe(ResultDenied, time.Since(start))
			sleep(ctx, v.wait)
			return Answer{}, &DeniedError{Status: v.text, Wait: v.wait}
		}
		c.observe(ResultWait, time.Since(start))
		if round+1 >= maxWaitRounds {
			return Answer{}, c.fail(ResultMalformed, "the hook answered WAIT %d times", maxWaitRounds)
		}
		if !sleep(ctx, v.wait) {
			return Answer{}, c.fail(ResultCanceled, "waiting to ask again: %w", ctx.Err())
		}
	}
}

// fail reports an outcome that ends Login without a request, and
// returns its error.
func (c *Client) fail(result string, format string, args ...any) error {
	c.observe(result, 0)
	return unavailable(result, format, args...)
}

// ask makes one request: it takes a slot, sends the request and reads
// the answer's headers, all within the timeout.
func (c *Client) ask(ctx context.Context, r *Request) (verdict, error) {
	head, err := c.requestHead(r)
	if err != nil {
		return verdict{}, unavailable(ResultMalformed, "%v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-tctx.Done():
		if ctx.Err() != nil {
			return verdict{}, unavailable(ResultCanceled, "waiting for a request slot: %w", ctx.Err())
		}
		return verdict{}, unavailable(ResultBusy, "all %d request slots stayed taken for %v", cap(c.slots), c.timeout)
	}
	h, err := c.exchange(tctx, head)
	if err != nil {
		var ue *UnavailableError
		switch {
		case errors.As(err, &ue):
		case ctx.Err() != nil:
			err = unavailable(ResultCanceled, "%w", ctx.Err())
		case tctx.Err() != nil || isTimeout(err):
			err = unavailable(ResultTimeout, "no answer within %v: %w", c.timeout, err)
		default:
			err = unavailable(ResultUnavailable, "%w", err)
		}
		return verdict{}, err
	}
	v, err := c.parse(h, r)
	if err != nil {
		return v, unavailable(ResultMalformed, "%w", err)
	}
	return v, nil
}

// exchange sends head on a new connection (HTTP/1.0, as nginx) and
// returns the headers of a 200 answer. The body is never read.
func (c *Client) exchange(ctx context.Context, head []byte) (http.Header, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.dialAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if c.tlsConfig != nil {
		tc := tls.Client(conn, c.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		conn = tc
	}
	if _, err := conn.Write(head); err != nil {
		return nil, err
	}
	lr := &io.LimitedReader{R: conn, N: maxHead}
	resp, err := http.ReadResponse(bufio.NewReader(lr), nil)
	if err != nil {
		if lr.N == 0 {
			return nil, unavailable(ResultMalformed, "answer headers over %d bytes", maxHead)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isNetError(err) {
			return nil, fmt.Errorf("reading the answer: %w", err)
		}
		return nil, unavailable(ResultMalformed, "%v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, unavailable(ResultUnavailable, "the hook answered %q", resp.Status)
	}
	return resp.Header, nil
}

func (c *Client) observe(result string, latency time.Duration) {
	if c.obs != nil {
		c.obs.HookRequest(result, latency)
	}
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
