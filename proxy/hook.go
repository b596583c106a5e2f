// hook.go wires the auth_http hook into logins: the hook decides whether
// a login proceeds, the IMAP server it goes to and the login used there,
// in place of the static routes; the session policy is resolved as for
// any login and the answer's own settings override it. The Backends for
// the servers that answers name are kept in hookTargets.

package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/authhttp"
	"github.com/popbridge/popbridge/proxy/config"
)

// hookUpstream names the hook's own servers in metrics and limit keys: a
// bounded label, not one per address the hook may answer.
const hookUpstream = "auth_http"

// authHook asks the hook about each login and logs in where it says.
type authHook struct {
	client  *authhttp.Client
	pols    *policies
	targets *hookTargets
}

// newAuthHook returns the hook of a checked config, or nil when
// auth_http is off.
func newAuthHook(c *config.Config, pols *policies, hooks Hooks, logger *slog.Logger) (*authHook, error) {
	if !c.AuthHTTP.Enabled() {
		return nil, nil
	}
	names := append([]string{config.DefaultUpstreamName}, slices.Sorted(maps.Keys(c.Upstreams))...)
	client, err := authhttp.New(c.AuthHTTP, authhttp.Options{Observer: hooks.AuthHTTP, Upstreams: names})
	if err != nil {
		return nil, err
	}
	return &authHook{client: client, pols: pols, targets: &hookTargets{
		cfg: c, hooks: hooks, log: logger,
		budget:   imapback.NewReadAheadBudget(c.Performance.ReadAheadTotalBytes),
		backends: make(map[hookTarget]*imapback.Backend),
	}}, nil
}

// hookTime is the longest the hook may hold a login: up to three
// exchanges (two WAIT answers and a last one), each followed by its
// Auth-Wait.
func hookTime(c *config.Config) time.Duration {
	if !c.AuthHTTP.Enabled() {
		return 0
	}
	return 3 * (c.AuthHTTP.Timeout + c.AuthHTTP.MaxWait)
}

// login asks the hook about login and, on its OK, opens the maildrop it
// names. It returns the session, the target's name and the upstream user
// (for the session lock), and the session's policy. The hook's errors are
// returned as they are: each carries its POP3 reply.
func (h *authHook) login(ctx context.Context, log *slog.Logger, login, pass string, info pop3front.ConnInfo) (
	imapback.Maildrop, string, string, imapback.Policy, error) {
	var pol imapback.Policy
	n, err := h.pols.split(login)
	if err != nil {
		return nil, "", "", pol, err
	}
	// The hook sees the account, without the device and folder that are
	// popbridge's own; an answer may name them again.
	ans, err := h.client.Login(ctx, authhttp.RequestFor(n.user, pass, info, h.verifiesClients(info)))
	if err != nil {
		log.Info("login refused by the auth_http hook", "user", n.user, "err", err)
		if errors.Is(err, authhttp.ErrDenied) {
			err = hookDenied{err}
		}
		return nil, "", "", pol, err
	}
	override(&n.device, ans.Device)
	if pol, err = h.pols.policy(n, info); err != nil {
		return nil, "", "", pol, err
	}
	pol.SetFolders(ans.Mailbox, ans.Mailboxes)
	override(&pol.Delete, ans.Delete)
	override(&pol.Seen, ans.Seen)
	pol.RetentionDays = *cmp.Or(ans.RetentionDays, &pol.RetentionDays) // an answer's 0 turns it off
	b, name, err := h.targets.backend(ans)
	if err != nil {
		log.Error("auth_http answer names an upstream popbridge cannot use", "user", n.user, "addr", ans.Addr.String(), "err", err)
		return nil, "", "", pol, pop3front.ErrUnavailable
	}
	log.Debug("session policy", "user", n.user, "upstream", name, "upstream_user", ans.User, "cached", ans.Cached,
		"mailbox", pol.Mailbox, "mailboxes", pol.Mailboxes, "device", pol.Device, "delete", pol.Delete, "seen", pol.Seen)
	s, err := b.Open(imapback.WithClientAddr(ctx, info.RemoteAddr), imapback.Credentials{User: ans.User, Password: ans.Pass}, pol)
	if err != nil {
		return nil, "", "", pol, popError(log, err)
	}
	return s, name, ans.User, pol, nil
}

// verifiesClients reports whether the login's listener asks for client
// certificates, so that the hook gets nginx's certificate headers.
func (h *authHook) verifiesClients(info pop3front.ConnInfo) bool {
	name := h.pols.listener(info.Listener)
	for _, l := range h.targets.cfg.Listen {
		if l.Address == name {
			return l.VerifyClient != config.ListenVerifyOff
		}
	}
	return false
}

// hookDenied is a refusal by the hook. The client gets the hook's text
// (the first *pop3front.Error in the chain), and the refusal counts as a
// failed login (pop3front.ErrAuthFailed) for the failure delay and the
// rate limits, so that guessing passwords through the hook costs as much
// as guessing them upstream.
type hookDenied struct{ error }

func (e hookDenied) Unwrap() []error { return []error{e.error, pop3front.ErrAuthFailed} }

// maxHookBackends bounds the Backends kept for hook answers. Past it the
// oldest is dropped: its open sessions go on, the next login to its
// server builds it again.
const maxHookBackends = 256

// hookTarget is what makes two answers' upstreams the same: the address
// and how to speak to it.
type hookTarget struct {
	addr     netip.AddrPort
	upstream string          // X-Popbridge-Upstream, or empty
	server   authhttp.Server // the auth_http.servers entry, when upstream is empty
}

// hookTargets keeps one imapback.Backend per target, so that a login
// does not build a Backend (pools, TLS config, CA file) of its own. All
// of them share one read-ahead budget, performance.read_ahead_total_bytes:
// the number of servers a hook names does not multiply the memory.
type hookTargets struct {
	cfg    *config.Config
	hooks  Hooks
	log    *slog.Logger
	budget *imapback.ReadAheadBudget

	mu       sync.Mutex
	backends map[hookTarget]*imapback.Backend
	order    []hookTarget // oldest first
}

// backend returns the Backend for an answer's upstream, and its name for
// logs and session locks.
func (t *hookTargets) backend(ans authhttp.Answer) (*imapback.Backend, string, error) {
	tg := hookTarget{addr: ans.Addr, upstream: ans.Upstream}
	name := "auth_http:" + ans.Addr.String()
	if ans.Upstream != "" {
		name = ans.Upstream + ":" + ans.Addr.String()
	} else if ans.Server != nil {
		tg.server = *ans.Server
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.backends[tg]; b != nil {
		return b, name, nil
	}
	opts, err := t.options(tg)
	if err != nil {
		return nil, name, err
	}
	b, err := imapback.New(opts)
	if err != nil {
		return nil, name, err
	}
	if len(t.order) >= maxHookBackends {
		delete(t.backends, t.order[0])
		t.order = t.order[1:]
	}
	t.backends[tg] = b
	t.order = append(t.order, tg)
	return b, name, nil
}

// options are those of the named upstream, or of the default upstream
// with the servers entry's TLS settings, at the answer's address.
func (t *hookTargets) options(tg hookTarget) (imapback.Options, error) {
	u := t.cfg.Upstream
	switch {
	case tg.upstream != "" && tg.upstream != config.DefaultUpstreamName:
		var ok bool
		if u, ok = t.cfg.Upstreams[tg.upstream]; !ok {
			return imapback.Options{}, fmt.Errorf("no upstream %q", tg.upstream)
		}
		fallthrough
	case tg.upstream != "":
		// The certificate names the configured host, not the address the
		// hook chose among its servers.
		if host, _, err := net.SplitHostPort(u.Address); err == nil && u.ServerName == "" && net.ParseIP(host) == nil {
			u.ServerName = host
		}
	default:
		s := tg.server
		u.TLS, u.CAFile, u.ServerName = s.TLS, s.CAFile, s.ServerName
		u.CertFile, u.KeyFile, u.InsecureSkipVerify = "", "", false
	}
	u.Address = tg.addr.String()
	opts, err := upstreamOptions(t.cfg, cmp.Or(tg.upstream, hookUpstream), u, t.hooks, t.log)
	opts.ReadAheadShared = t.budget
	return opts, err
}
