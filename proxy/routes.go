package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/uidlmap"
)

// Routing: which upstream and which upstream login a POP3 login gets.

// router picks the upstream backend and login for a POP3 login.
type router struct {
	routes   []config.Route
	backends map[string]*imapback.Backend // by upstream name, "default" included
}

// errNoLogin: a route turned the login into nothing.
var errNoLogin = errors.New("route maps the login to an empty upstream login")

func (r *router) pick(login string) (b *imapback.Backend, name, upLogin string, err error) {
	name, upLogin = config.DefaultUpstreamName, login
	for _, rt := range r.routes {
		if l, ok := rt.Match(login); ok {
			name, upLogin = rt.Upstream, l
			break
		}
	}
	if upLogin == "" {
		return nil, name, "", errNoLogin
	}
	return r.backends[name], name, upLogin, nil
}

// newRouter builds one imapback.Backend per upstream and the routes
// between them, from a checked config.
func newRouter(c *config.Config, hooks Hooks, logger *slog.Logger) (*router, error) {
	r := &router{backends: make(map[string]*imapback.Backend)}
	ups := map[string]config.UpstreamConfig{config.DefaultUpstreamName: c.Upstream}
	for name, u := range c.Upstreams {
		ups[name] = u
	}
	for name, u := range ups {
		opts, err := upstreamOptions(c, name, u, hooks, logger)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		if r.backends[name], err = imapback.New(opts); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
	}
	for i, rc := range c.Routes {
		rt, err := rc.Compile()
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		if r.backends[rt.Upstream] == nil {
			return nil, fmt.Errorf("routes[%d]: unknown upstream %q", i, rt.Upstream)
		}
		r.routes = append(r.routes, rt)
	}
	return r, nil
}

// upstreamOptions turns one checked upstream's config, named name, into
// imapback options.
func upstreamOptions(c *config.Config, name string, u config.UpstreamConfig, hooks Hooks, logger *slog.Logger) (imapback.Options, error) {
	uidl, err := imapback.ParseUIDLFormat(c.Policy.UIDLFormat)
	if err != nil {
		return imapback.Options{}, err
	}
	tlsConfig, err := upstreamTLS(u, logger, hooks.certLoaded("upstream_client", name))
	if err != nil {
		return imapback.Options{}, err
	}
	perf := c.Performance
	o := imapback.Options{
		Address:           u.Address,
		TLS:               u.TLS,
		TLSConfig:         tlsConfig,
		Auth:              u.Auth,
		Mailbox:           u.Mailbox,
		Mailboxes:         u.Mailboxes,
		UIDL:              uidl,
		Seen:              c.Policy.Seen,
		Delete:            c.Policy.Delete,
		TrashFolder:       c.Policy.TrashFolder,
		DialTimeout:       u.DialTimeout,
		CommandTimeout:    u.CommandTimeout,
		NoReconnect:       u.Reconnect != nil && !*u.Reconnect,
		Logger:            logger,
		Observer:          hooks.upstreamObserver(name),
		ForwardClientAddr: u.ForwardClientAddress == nil || *u.ForwardClientAddress,
		MaxMessages:       u.MaxMessages,
		UIDLsAtLogin:      u.ExactSizes, // its table is keyed by UIDL
		ResponseLimits:    imapback.ResponseLimits{Literal: u.MaxLiteralBytes, Response: u.MaxResponseBytes},
		ReadAheadBytes:    perf.ReadAheadBytes,
		ReadAheadMessages: perf.ReadAheadMessages,
		ReadAheadTotal:    perf.ReadAheadTotalBytes,
		ChunkSize:         perf.ChunkSize,
		SnapshotCache:     hooks.snapshots,
	}
	if c.Policy.UIDLMap != "" {
		// Load only checks the directory; each login reads its user's file,
		// so replicas share nothing and a SIGHUP picks up new files anyway.
		m, err := uidlmap.Load(c.Policy.UIDLMap)
		if err != nil {
			return imapback.Options{}, err
		}
		o.UIDLMap = m // never a typed nil: the interface would not be nil
	}
	return o, nil
}

// upstreamTLS is the client TLS config for an upstream: verification on
// unless insecure_skip_verify says otherwise, with the CA bundle and the
// client certificate if configured (whose expiry goes to certLoaded, if
// not nil).
func upstreamTLS(u config.UpstreamConfig, logger *slog.Logger, certLoaded func(time.Time)) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.ServerName}
	if u.CAFile != "" {
		pool, err := imapback.LoadCAFile(u.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if u.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(u.CertFile, u.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
		if certLoaded != nil {
			certLoaded(cert.Leaf.NotAfter)
		}
	}
	if u.InsecureSkipVerify {
		if u.TLS != imapback.TLSNone {
			logger.Warn("upstream TLS certificate verification is OFF (insecure_skip_verify): "+
				"anyone between popbridge and the upstream can read the passwords", "upstream", u.Address)
		}
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}
