// authhttp.go: the auth_http section's place among the rest of the
// config. Its own checks live with its type in package authhttp; these
// are the ones that need the other sections.

package config

import (
	"errors"
	"fmt"
)

// checkAuthHTTP checks the auth_http section and what it cannot be
// combined with.
func (c *Config) checkAuthHTTP() []error {
	errs := c.AuthHTTP.Check()
	if !c.AuthHTTP.Enabled() {
		return errs
	}
	if len(c.OAuth2.Accounts) > 0 {
		// Both decide which upstream login a POP3 login becomes; with the
		// hook every login must pass it, so the accounts would never be
		// used as configured.
		errs = append(errs, errors.New("auth_http.url: cannot be combined with oauth2.accounts"))
	}
	if len(c.Routes) > 0 {
		errs = append(errs, fmt.Errorf("auth_http.url: routes are not used when the hook routes logins; remove the %d routes", len(c.Routes)))
	}
	return errs
}
