// adminview.go holds what the admin listener reads of a running Runner:
// the POP3 servers whose sessions it lists and kicks, the configuration
// in force and the OAuth2 accounts' token states.

package proxy

import (
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// POP3Servers returns the POP3 servers of the current Proxy and of those
// a reload retired that still serve open sessions: a session opened
// before a SIGHUP is listed and kicked like any other.
func (r *Runner) POP3Servers() []*pop3front.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []*pop3front.Server{r.cur.srv}
	for p := range r.live {
		if p != r.cur {
			out = append(out, p.srv)
		}
	}
	return out
}

// Config returns the configuration in force: the last one that started
// or reloaded. The caller must not change it.
func (r *Runner) Config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// OAuthStatus lists the token states of the current configuration's
// OAuth2 accounts; none without oauth2.accounts. It never holds a token.
func (r *Runner) OAuthStatus() []oauth2.AccountStatus {
	r.mu.Lock()
	o := r.cur.oauth
	r.mu.Unlock()
	if o == nil {
		return nil
	}
	return o.tokens.Status()
}
