package config

import (
	"strings"
	"testing"
)

// FuzzRoutes compiles arbitrary routes and matches arbitrary logins: no
// panic, a domain route matches exactly the logins "local@domain", and
// the default login template gives the login back unchanged.
func FuzzRoutes(f *testing.F) {
	f.Add("corp.example", "${local}", "bob@corp.example", true)
	f.Add("corp.example", "", "bob@CORP.EXAMPLE", true)
	f.Add("corp.example", "$0", "@corp.example", true)
	f.Add("a.b", "${domain}-${local}", "x@y@a.b", true)
	f.Add(`(?P<name>[a-z]+)\+pop`, "${name}", "alice+pop", false)
	f.Add(`(a)(b)?`, "$1$2$$", "a", false)
	f.Add(`.*`, "${", "", false)
	f.Add(`(`, "$1", "x", false)
	f.Fuzz(func(t *testing.T, pattern, template, login string, domain bool) {
		rc := RouteConfig{Login: template}
		if domain {
			rc.Domain = pattern
		} else {
			rc.Regex = pattern
		}
		r, err := rc.Compile()
		if err != nil {
			return
		}
		if r.Upstream != DefaultUpstreamName {
			t.Errorf("upstream %q, want %q", r.Upstream, DefaultUpstreamName)
		}
		got, ok := r.Match(login)
		if ok && (template == "" || template == "$0") && got != login {
			t.Errorf("template %q turned %q into %q", template, login, got)
		}
		if domain && isPlainASCII(pattern) && isPlainASCII(login) {
			suffix := "@" + pattern
			want := len(login) > len(suffix) && strings.EqualFold(login[len(login)-len(suffix):], suffix)
			if ok != want {
				t.Errorf("domain %q, login %q: matched %v, want %v", pattern, login, ok, want)
			}
		}
	})
}

// isPlainASCII: printable ASCII without line ends, where byte lengths and
// case folding agree.
func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
