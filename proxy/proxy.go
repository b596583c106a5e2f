// Package proxy wires popbridge together: POP3 listeners in front of one
// or more IMAP upstreams, with routing, policies, limits and reloads.
package proxy

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/retention"
	"github.com/popbridge/popbridge/proxy/state"
)

// Proxy is a configured popbridge: POP3 listeners in front of the IMAP
// upstreams that routes choose from.
type Proxy struct {
	cfg       *config.Config
	log       *slog.Logger
	srv       *pop3front.Server
	pols      *policies
	oauth     *oauthLogins // nil without oauth2 accounts
	listeners []*popListener
	// ownStore is the store New opened itself (no Options.Store), which
	// Close and Shutdown close.
	ownStore  state.Store
	storeOnce sync.Once
	// Set by a Runner, which owns the sockets.
	listenTCP func(addr string) (net.Listener, error)
	probe     func(ctx context.Context) (map[string]error, error)
	hooks     Hooks
}

// Options are what a Proxy needs besides its config.
type Options struct {
	// Logger receives the logs; nil means slog.Default().
	Logger *slog.Logger
	// Hooks observe the Proxy for metrics.
	Hooks Hooks
	// Store holds the limits and locks; nil opens the one cfg.State
	// describes for this Proxy alone. A Runner passes one store to every
	// Proxy it builds, so that a reload forgets nothing.
	Store state.Store
	// SnapshotCache is an earlier Proxy's snapshot cache (a Runner's
	// reload), which New keeps, resized to cfg's bound; nil starts empty.
	SnapshotCache *imapback.SnapshotCache
}

// New builds a Proxy from a checked config. It does not listen yet.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	logger := cmp.Or(opts.Logger, slog.Default())
	opts.Hooks.certs = &certReports{obs: opts.Hooks.Certificates}
	opts.Hooks.snapshots = opts.SnapshotCache.Resized(cfg.Performance.SnapshotCacheSize()) // one for every upstream
	if o, ok := opts.Hooks.Upstream.(interface{ SnapshotCacheSized(int64) }); ok {
		o.SnapshotCacheSized(opts.Hooks.snapshots.Bytes())
	}
	r, err := newRouter(cfg, opts.Hooks, logger)
	if err != nil {
		return nil, err
	}
	pols := newPolicies(cfg)
	oauth, err := newOAuthLogins(cfg, opts.Hooks.Tokens, logger)
	if err != nil {
		return nil, err
	}
	hook, err := newAuthHook(cfg, pols, opts.Hooks, logger)
	if err != nil {
		return nil, err
	}
	errs := storeErrors{log: logger, obs: opts.Hooks.State}
	st, own := opts.Store, state.Store(nil)
	if st == nil {
		if st, err = openStore(cfg, errs); err != nil {
			return nil, err
		}
		own = st
	}
	l := cfg.Limits
	b := backend{r: r, pols: pols, log: logger, oauth: oauth, hook: hook, limits: newLoginLimits(st, l, errs), errs: errs,
		exact: exactSizeUpstreams(cfg), counted: &countedSizes{}, sizes: opts.Hooks.Sizes, ret: retention.New(st, errs.failed)}
	if l.LockSession {
		b.locks = st
	}
	var slots func(context.Context, netip.Addr) (func(), bool)
	if l.MaxConnectionsPerIP > 0 {
		slots = connectionSlots(st, l.MaxConnectionsPerIP, errs)
	}
	srv := &pop3front.Server{
		Backend:          b,
		Logger:           slog.New(newRepeatLimiter(logger.Handler(), loginErrorEvery)),
		IdleTimeout:      l.IdleTimeout,
		WriteTimeout:     l.WriteTimeout,
		AuthFailureDelay: *l.AuthFailureDelay,
		MaxConnections:   maxConnections(l.MaxConnections, descriptorLimit()),
		ConnectionSlot:   slots,
		AuthTimeout:      l.AuthTimeout,
		HandshakeTimeout: l.HandshakeTimeout,
		PlaintextAllowed: plaintextPolicy(cfg.TrustedNetworks),
		Expire:           retention.Announced(cfg),
		// Login and UPDATE may each take a dial and a few upstream
		// commands (a merged maildrop's login, two such rounds), and a
		// login up to three store operations and the hook's answer; the
		// backend bounds every single one itself.
		CommandTimeout: time.Duration(cfg.LoginRounds())*cfg.LoginRoundTime() + 3*cfg.State.CommandTimeout + hookTime(cfg),
		Observer:       opts.Hooks.POP3,
	}
	return &Proxy{cfg: cfg, log: logger, srv: srv, pols: pols, oauth: oauth, ownStore: own, listenTCP: listenTCP, hooks: opts.Hooks,
		probe: func(ctx context.Context) (map[string]error, error) { return r.probe(ctx, logger) }}, nil
}

// Listen binds every configured listener. On error none stays bound.
func (p *Proxy) Listen() error {
	for _, l := range p.cfg.Listen {
		bl, err := bind(l, p.cfg.Limits.HandshakeTimeout, p.log, p.listenTCP, p.hooks.certLoaded("listener", l.Address))
		if err != nil {
			for _, bl := range p.listeners {
				bl.ln.Close()
			}
			p.listeners = nil
			return err
		}
		p.listeners = append(p.listeners, bl)
		p.pols.bind(l.Address, bl.addr)
	}
	p.hooks.certs.publish()
	return nil
}

// Addrs returns the bound addresses, in config order.
func (p *Proxy) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(p.listeners))
	for i, bl := range p.listeners {
		addrs[i] = bl.addr
	}
	return addrs
}

// Serve serves every bound listener until Shutdown or Close.
func (p *Proxy) Serve() error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.listeners))
	for i, bl := range p.listeners {
		p.log.Info("listening", "addr", bl.addr.String(), "tls", bl.cfg.TLS, "proxy_protocol", bl.cfg.ProxyProtocol,
			"upstream", p.cfg.Upstream.Address, "upstream_tls", p.cfg.Upstream.TLS, "mailbox", p.cfg.Upstream.Mailbox, "mailboxes", p.cfg.Upstream.Mailboxes)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.srv.ServeSTLS(bl.ln, bl.stls); !errors.Is(err, pop3front.ErrServerClosed) {
				errs[i] = err
				p.srv.Close()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Shutdown stops accepting and lets sessions finish until ctx is done;
// sessions still open then are closed without their UPDATE state.
func (p *Proxy) Shutdown(ctx context.Context) error {
	defer p.oauth.close()
	err := p.srv.Shutdown(ctx)
	p.closeStore()
	return err
}

// Close stops everything at once.
func (p *Proxy) Close() error {
	defer p.oauth.close()
	err := p.srv.Close()
	p.closeStore()
	return err
}

// closeStore closes the store New opened, once no session uses it.
func (p *Proxy) closeStore() {
	if p.ownStore != nil {
		p.storeOnce.Do(func() { p.ownStore.Close() })
	}
}

// backend adapts imapback to the interface pop3front consumes, mapping
// upstream errors to POP3 response codes.
type backend struct {
	r      *router
	pols   *policies
	log    *slog.Logger
	limits *loginLimits
	locks  state.Locker // nil unless limits.lock_session
	oauth  *oauthLogins // nil unless oauth2.accounts
	hook   *authHook    // nil unless auth_http.url
	errs   storeErrors
	// exact names the upstreams with exact_sizes; counted keeps their
	// messages' counted sizes for this Proxy's life.
	exact   map[string]bool
	counted *countedSizes
	sizes   SizeObserver
	ret     *retention.Keeper
}

// Login resolves the login to its upstream user first, then reserves an
// attempt against the limits on that user (so that every name that
// reaches one maildrop, whatever its case or device suffix, shares one
// budget), and only then tries the password.
func (a backend) Login(ctx context.Context, login, pass string, info pop3front.ConnInfo) (pop3front.Session, error) {
	if info.Logger != nil {
		a.log = info.Logger // this call's copy: its lines carry the session id
	}
	// The upstream sees the user without the device suffix.
	user, pol, err := a.pols.resolve(login, info)
	if err != nil {
		return nil, err
	}
	var acct *config.AccountConfig
	var b *imapback.Backend
	var name, upUser string
	switch {
	case a.hook != nil:
		// The hook names the upstream and the login there only once it
		// has the password: until then the limits count the login as
		// the client gave it, under the hook's name.
		name, upUser = hookUpstream, user
	case a.oauth.account(user) != nil:
		// An OAuth2 account: local password, upstream token.
		acct = a.oauth.account(user)
		name, upUser = a.oauth.target(acct)
	default:
		// Routes pick the upstream and the login used there.
		if b, name, upUser, err = a.r.pick(user); err != nil {
			a.log.Info("login refused by routes", "user", user, "upstream", name, "err", err)
			return nil, pop3front.ErrAuthFailed
		}
	}
	done, err := a.limits.reserve(ctx, a.log, pop3front.AddrIP(info.RemoteAddr), name, upUser)
	if err != nil {
		return nil, err
	}
	ctx = imapback.WithClientAddr(ctx, info.RemoteAddr)
	var s imapback.Maildrop
	switch {
	case a.hook != nil:
		s, name, upUser, pol, err = a.hook.login(ctx, a.log, login, pass, info)
	case acct != nil:
		s, err = a.oauth.login(ctx, a.r, acct, pass, pol)
	default:
		a.log.Debug("session policy", "user", user, "upstream", name, "device", pol.Device, "delete", pol.Delete,
			"seen", pol.Seen, "max_age_days", pol.MaxAgeDays, "mailbox", pol.Mailbox, "mailboxes", pol.Mailboxes)
		s, err = b.Open(ctx, imapback.Credentials{User: upUser, Password: pass}, pol)
		err = popError(a.log, err)
	}
	done(err)
	if err != nil {
		return nil, err
	}
	// The lock is taken after the upstream accepted the password, so a
	// wrong password never learns that a session is open.
	var lease *state.Lease
	if a.locks != nil {
		if lease, err = lockMaildrop(ctx, a.locks, lockKey(name, upUser, pol.Device), a.errs); err != nil {
			s.Close()
			if errors.Is(err, pop3front.ErrInUse) {
				a.log.Info("login refused: another session of this maildrop is open", "user", user, "device", pol.Device)
			}
			return nil, err
		}
	}
	msgs := s.Messages()
	infos := make([]pop3front.MessageInfo, len(msgs))
	for i, m := range msgs {
		infos[i] = pop3front.MessageInfo{Size: m.Size, UID: m.UIDL}
	}
	key := func(i int) string { return sizeKey(name, upUser, infos[i].UID) }
	var counted *countedSizes
	if a.exact[name] {
		counted = a.counted
		counted.exactSizes(ctx, a.log, s, infos, key)
	}
	return a.ret.Wrap(&session{Maildrop: s, msgs: infos, log: a.log, lease: lease, device: pol.Device,
		sizes: a.sizes, counted: counted, sizeKey: key}, name, upUser, pol, a.log), nil
}

type session struct {
	imapback.Maildrop // one folder, or several merged
	msgs              []pop3front.MessageInfo
	log               *slog.Logger
	lease             *state.Lease // the maildrop's lock, if any
	device            string       // the device view's name, for pop3front's session list
	// sizes counts transfers whose octets differ from the listed size;
	// counted, with upstream.exact_sizes, keeps what complete transfers
	// counted.
	sizes   SizeObserver
	counted *countedSizes
	sizeKey func(i int) string
}

// Device names the device view the session serves, or is empty.
func (s *session) Device() string { return s.device }

// Close ends the upstream session, then releases the maildrop's lock.
func (s *session) Close() error {
	err := s.Maildrop.Close()
	if s.lease != nil {
		s.lease.Release()
	}
	return err
}

func (s *session) Messages() []pop3front.MessageInfo { return s.msgs }

// Commit runs the UPDATE state and says what became of the messages.
// A session whose lock was lost changes nothing: another session of the
// maildrop may be running.
func (s *session) Commit(ctx context.Context, deleted []int) (pop3front.UpdateResult, error) {
	if s.lease != nil {
		select {
		case <-s.lease.Lost():
			s.log.Warn("update refused: the session's lock on the maildrop was lost", "marked", len(deleted))
			return pop3front.UpdateResult{}, errLockLost
		default:
		}
	}
	removed, flagged, err := s.Maildrop.Commit(ctx, deleted)
	return pop3front.UpdateResult{Removed: removed, Flagged: flagged}, err
}

func (s *session) Retrieve(ctx context.Context, i, lines int) (io.ReadCloser, error) {
	rc, err := s.Maildrop.Retrieve(ctx, i, lines)
	if err != nil {
		return nil, popError(s.log, err)
	}
	if lines >= 0 {
		return rc, nil // TOP: a part, never the listed size
	}
	return checkSize(rc, s.msgs[i].Size, func(listed, got int64) {
		s.log.Warn("message octets differ from the listed size", "msg", i+1, "uidl", s.msgs[i].UID, "listed", listed, "octets", got)
		if s.sizes != nil {
			s.sizes.SizeMismatch()
		}
		if s.counted != nil {
			s.counted.put(s.sizeKey(i), got)
		}
	}), nil
}

func (s *session) Noop(ctx context.Context) error { return popError(s.log, s.Maildrop.Noop(ctx)) }

// LoadUIDLs fills in the UIDLs the snapshot left for the first UIDL.
func (s *session) LoadUIDLs(ctx context.Context) error {
	err := popError(s.log, s.Maildrop.LoadUIDLs(ctx))
	for i, m := range s.Maildrop.Messages() {
		s.msgs[i].UID = m.UIDL
	}
	return err
}

var (
	errMailbox    = &pop3front.Error{Code: "SYS/PERM", Text: "Mailbox cannot be opened"}
	errNoKeywords = &pop3front.Error{Code: "SYS/PERM", Text: "Mailbox cannot keep per-device state (no IMAP keywords); log in without a device"}
	errTooLarge   = &pop3front.Error{Code: "SYS/PERM", Text: "Mailbox holds too many messages to be served over POP3"}
)

// popError maps imapback's errors to what the POP3 client should see. The
// wrapped details stay in the logs of the layers that have them.
func popError(log *slog.Logger, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, imapback.ErrGone):
		return pop3front.ErrNoMessage
	case errors.Is(err, imapback.ErrAuthFailed):
		return pop3front.ErrAuthFailed
	case errors.Is(err, imapback.ErrInUse):
		return pop3front.ErrInUse
	case errors.Is(err, imapback.ErrNoKeywords):
		log.Warn("per-device view refused: the upstream mailbox cannot keep keywords", "err", err)
		return errNoKeywords
	case errors.Is(err, imapback.ErrMaildropTooLarge):
		log.Warn("maildrop refused: more messages than allowed", "err", err)
		return errTooLarge
	case errors.Is(err, imapback.ErrMailbox):
		log.Warn("upstream mailbox cannot be opened", "err", err)
		return errMailbox
	case errors.Is(err, imapback.ErrUnavailable):
		log.Warn("upstream unavailable", "err", err)
		return pop3front.ErrUnavailable
	}
	return err
}
