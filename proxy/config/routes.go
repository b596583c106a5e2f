package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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

// Route is a compiled RouteConfig.
type Route struct {
	// Upstream is the name of the upstream the route sends logins to.
	Upstream string

	re    *regexp.Regexp
	login string
}

// Compile checks the route and compiles its pattern.
func (rc RouteConfig) Compile() (Route, error) {
	r := Route{Upstream: rc.Upstream, login: rc.Login}
	if r.Upstream == "" {
		r.Upstream = DefaultUpstreamName
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

// Match returns the upstream login for a POP3 login, and false when the
// route does not match it.
func (r Route) Match(login string) (upLogin string, ok bool) {
	m := r.re.FindStringSubmatchIndex(login)
	if m == nil {
		return "", false
	}
	return string(r.re.ExpandString(nil, r.login, login, m)), true
}

func (c *Config) checkRoutes() []error {
	var errs []error
	for i, rc := range c.Routes {
		r, err := rc.Compile()
		if err != nil {
			errs = append(errs, fmt.Errorf("routes[%d]: %v", i, err))
			continue
		}
		if _, ok := c.Upstreams[r.Upstream]; !ok && r.Upstream != DefaultUpstreamName {
			errs = append(errs, fmt.Errorf("routes[%d].upstream: %q is not in upstreams", i, r.Upstream))
		}
	}
	return errs
}
