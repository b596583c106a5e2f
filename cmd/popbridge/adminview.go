// adminview.go starts the admin listener of a running popbridge (the
// admin section of the config) over the Runner: the sessions of its POP3
// servers, the configuration in force and the OAuth2 token states.

package main

import (
	"log/slog"

	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/proxy/admin"
)

// startAdminView builds and binds the admin listener for cfg (admin.listen
// set). configErr is a setting or token file that is refused, bindErr a
// socket that cannot be bound: serve exits differently for each.
func startAdminView(cfg admin.Config, r *proxy.Runner, logger *slog.Logger) (s *admin.Server, configErr, bindErr error) {
	s, err := admin.New(admin.Options{
		Config: cfg,
		Servers: func() []admin.Sessions {
			var out []admin.Sessions
			for _, srv := range r.POP3Servers() {
				out = append(out, srv)
			}
			return out
		},
		Effective: func() any { return r.Config() },
		OAuth:     runnerOAuth{r},
		Logger:    logger,
	})
	if err != nil {
		return nil, err, nil
	}
	if err := s.Start(); err != nil {
		return nil, nil, err
	}
	return s, nil, nil
}

// runnerOAuth shows the Runner's token states as the admin listener lists
// them.
type runnerOAuth struct{ r *proxy.Runner }

func (o runnerOAuth) OAuthStatus() []admin.AccountState {
	var out []admin.AccountState
	for _, st := range o.r.OAuthStatus() {
		out = append(out, admin.AccountState{Account: st.Account, Provider: st.Provider, State: st.State,
			ValidUntil: st.ValidUntil, FailingSince: st.FailingSince, LastError: st.LastError})
	}
	return out
}

// reloadAdminView applies a reloaded admin section: a rotated token file
// takes effect now (apply; nil without a listener), a changed address at
// the next start.
func reloadAdminView(cur, next admin.Config, apply func(admin.Config) error, logger *slog.Logger) {
	if next.Listen != cur.Listen {
		logger.Warn("admin.listen changed: it takes effect at the next start", "admin_listen", cur.Listen)
	}
	if apply == nil {
		return
	}
	if err := apply(next); err != nil {
		logger.Error("admin listener: reload refused, keeping its token", "err", err)
	}
}
