package dovecottest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// OAuth2 logins (Options.OAuth2IntrospectionURL). Dovecot 2.3's oauth2
// passdb is built into dovecot-core; it takes the access token of an
// XOAUTH2 or OAUTHBEARER login as the password and checks it at the
// token server, once per login (no cache is configured).
//
// Measured with 2.3.19.1: a refused token gets the error challenge
// {"status":"401","schemes":"bearer","scope":"mail"} for XOAUTH2 and
// {"status":"invalid_token"} for OAUTHBEARER; the client's answer (an
// empty line, or base64 of 0x01) is then met with "NO
// [AUTHENTICATIONFAILED]". An empty answer sent as "=" gets "BAD Invalid
// base64 data in continued response" instead. auth_failure_delay = 0
// does not switch off the auth penalty: after a failed login Dovecot
// holds back the next logins from the same address, about 2 s and
// doubling per failure (up to 15 s), so tests that expect refusals should
// have an instance of their own.

// authMechanisms is the auth_mechanisms setting.
func (s *Server) authMechanisms() string {
	if s.oauth2URL == "" {
		return "plain login"
	}
	return "plain login xoauth2 oauthbearer"
}

// passdbConfig returns the passdb sections. With OAuth2, passwd-file
// serves the password mechanisms and the oauth2 passdb the token ones:
// "mechanisms" skips a passdb for other mechanisms, so a password is
// never sent to the introspection endpoint and a token never compared
// with a password.
func (s *Server) passdbConfig() string {
	passwd := fmt.Sprintf(`passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %s/users
`, s.Dir)
	if s.oauth2URL == "" {
		return passwd + "}\n"
	}
	return passwd + fmt.Sprintf(`  mechanisms = plain login
}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = %s
}
`, s.oauth2ArgsPath())
}

func (s *Server) oauth2ArgsPath() string { return filepath.Join(s.Dir, "oauth2.conf") }

// writeOAuth2Args writes the oauth2 passdb's own settings file. Found
// by experiment with Dovecot 2.3.19.1:
//
//   - No tokeninfo_url: Dovecot then introspects every token directly
//     (force_introspection only matters after a tokeninfo lookup).
//   - introspection_mode = post sends "token=TOKEN" as a form, as RFC
//     7662 says. The default mode, auth, sends a GET with the token as
//     "Authorization: Bearer" and works with oauthtest too. get appends
//     the token to introspection_url as it stands, so it needs a URL
//     ending in "?token="; with a plain URL every login is a temporary
//     failure (NO [UNAVAILABLE]) and no request arrives.
//   - username_attribute = username makes Dovecot compare the login name
//     with the token's user: a token of bob does not log in alice.
//   - active_attribute/active_value make Dovecot look at RFC 7662's
//     "active". Without them a token is refused only because an inactive
//     answer carries no username; a server that sends the username with
//     "active":false would let a revoked token in.
func (s *Server) writeOAuth2Args() error {
	if s.oauth2URL == "" {
		return nil
	}
	if strings.ContainsAny(s.oauth2URL, " \t\r\n\"") {
		return fmt.Errorf("introspection URL %q contains spaces, quotes or line breaks", s.oauth2URL)
	}
	conf := fmt.Sprintf(`introspection_url = %s
introspection_mode = post
username_attribute = username
active_attribute = active
active_value = true
`, s.oauth2URL)
	// Read by the auth process, which runs as the "dovecot" user.
	return os.WriteFile(s.oauth2ArgsPath(), []byte(conf), 0o644)
}
