package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/popbridge/popbridge/imapback"
)

// DefaultUpstreamName names the upstream section in routes.
const DefaultUpstreamName = "default"

// RouteConfig maps POP3 logins to an upstream server and the login name
// used there. Routes are tried in order; the first that matches the whole
// login decides. A login that no route matches goes to the default
// upstream unchanged.
type RouteConfig struct {
	// Domain matches logins "local@domain" with this domain, ignoring
	// case. Its login template may use ${local} and ${domain}.
	Domain string `yaml:"domain"`
	// Regex matches the whole login (it is anchored at both ends). Its
	// login template may use $1, ${name} for its groups.
	Regex string `yaml:"regex"`
	// Upstream is a name from upstreams, or "default" (the default).
	Upstream string `yaml:"upstream"`
	// Login is the upstream login, a template as for regexp.Expand: $0 is
	// the whole POP3 login (the default).
	Login string `yaml:"login"`
}

// route is a compiled RouteConfig.
type route struct {
	re       *regexp.Regexp
	upstream string
	login    string
}

func compileRoute(rc RouteConfig) (route, error) {
	r := route{upstream: rc.Upstream, login: rc.Login}
	if r.upstream == "" {
		r.upstream = DefaultUpstreamName
	}
	if r.login == "" {
		r.login = "$0"
	}
	var err error
	switch {
	case (rc.Domain == "") == (rc.Regex == ""):
		return r, errors.New("needs exactly one of domain and regex")
	case rc.Domain != "":
		if strings.ContainsAny(rc.Domain, "@ \t") {
			return r, fmt.Errorf("domain %q: a domain name without @", rc.Domain)
		}
		r.re, err = regexp.Compile(`(?i)^(?P<local>.+)@(?P<domain>` + regexp.QuoteMeta(rc.Domain) + `)$`)
	default:
		r.re, err = regexp.Compile(`^(?:` + rc.Regex + `)$`)
	}
	if err != nil {
		return r, err
	}
	// A template that names groups the pattern lacks is most likely a
	// typo that would send every login to the upstream as "".
	for _, name := range templateRefs(r.login) {
		if name == "0" {
			continue
		}
		if i := r.re.SubexpIndex(name); i < 0 {
			var n int
			if _, err := fmt.Sscanf(name, "%d", &n); err != nil || n > r.re.NumSubexp() {
				return r, fmt.Errorf("login %q refers to $%s, which the pattern does not have", r.login, name)
			}
		}
	}
	return r, nil
}

// templateRefs lists the group names and numbers a regexp.Expand template
// refers to.
func templateRefs(tmpl string) []string {
	var refs []string
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '$' || i+1 >= len(tmpl) {
			continue
		}
		rest := tmpl[i+1:]
		if rest[0] == '$' {
			i++
			continue
		}
		if rest[0] == '{' {
			if j := strings.IndexByte(rest, '}'); j > 0 {
				refs = append(refs, rest[1:j])
				i += j + 1
			}
			continue
		}
		j := 0
		for j < len(rest) && (rest[j] == '_' || rest[j] >= '0' && rest[j] <= '9' ||
			rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= 'A' && rest[j] <= 'Z') {
			j++
		}
		if j > 0 {
			refs = append(refs, rest[:j])
			i += j
		}
	}
	return refs
}

// match returns the upstream name and login for a POP3 login, and false
// when no route matches.
func (r route) match(login string) (upstream, upLogin string, ok bool) {
	m := r.re.FindStringSubmatchIndex(login)
	if m == nil {
		return "", "", false
	}
	return r.upstream, string(r.re.ExpandString(nil, r.login, login, m)), true
}

func (c *Config) checkRoutes() []error {
	var errs []error
	for i, rc := range c.Routes {
		r, err := compileRoute(rc)
		if err != nil {
			errs = append(errs, fmt.Errorf("routes[%d]: %v", i, err))
			continue
		}
		if _, ok := c.Upstreams[r.upstream]; !ok && r.upstream != DefaultUpstreamName {
			errs = append(errs, fmt.Errorf("routes[%d].upstream: %q is not in upstreams", i, r.upstream))
		}
	}
	return errs
}

// router picks the upstream backend and login for a POP3 login.
type router struct {
	routes   []route
	backends map[string]*imapback.Backend // by upstream name, "default" included
}

// errNoLogin: a route turned the login into nothing.
var errNoLogin = errors.New("route maps the login to an empty upstream login")

func (r *router) pick(login string) (b *imapback.Backend, name, upLogin string, err error) {
	name, upLogin = DefaultUpstreamName, login
	for _, rt := range r.routes {
		if n, l, ok := rt.match(login); ok {
			name, upLogin = n, l
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
func (c *Config) newRouter(logger *slog.Logger) (*router, error) {
	r := &router{backends: make(map[string]*imapback.Backend)}
	ups := map[string]UpstreamConfig{DefaultUpstreamName: c.Upstream}
	for name, u := range c.Upstreams {
		ups[name] = u
	}
	for name, u := range ups {
		opts, err := c.upstreamOptions(u, logger)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		if r.backends[name], err = imapback.New(opts); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
	}
	for i, rc := range c.Routes {
		rt, err := compileRoute(rc)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		if r.backends[rt.upstream] == nil {
			return nil, fmt.Errorf("routes[%d]: unknown upstream %q", i, rt.upstream)
		}
		r.routes = append(r.routes, rt)
	}
	return r, nil
}
