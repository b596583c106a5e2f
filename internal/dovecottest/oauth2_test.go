package dovecottest_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/testkit"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// saslLogin runs one AUTHENTICATE with an initial response on a fresh
// connection, answers an error challenge with answer, and returns the
// tagged reply and the decoded challenge.
func saslLogin(t *testing.T, addr, mech, ir, answer string) (reply, challenge string) {
	t.Helper()
	c, r := testkit.DialGreeted(t, addr, 20*time.Second)
	fmt.Fprintf(c, "a AUTHENTICATE %s %s\r\n", mech, b64(ir))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		switch {
		case strings.HasPrefix(line, "+ "):
			dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(line[2:]))
			if err != nil {
				t.Fatalf("challenge %q: %v", line, err)
			}
			challenge = string(dec)
			fmt.Fprintf(c, "%s\r\n", answer)
		case strings.HasPrefix(line, "a "):
			return strings.TrimRight(line, "\r\n"), challenge
		}
	}
}

func xoauth2(user, tok string) string { return "user=" + user + "\x01auth=Bearer " + tok + "\x01\x01" }
func oauthbearer(user, tok string) string {
	return "n,a=" + user + ",\x01auth=Bearer " + tok + "\x01\x01"
}

func TestOAuth2TokensLogInWithBothMechanisms(t *testing.T) {
	t.Parallel()
	as := oauthtest.Start(t, oauthtest.Options{})
	d := dovecottest.Start(t, dovecottest.Options{
		Users:                  map[string]string{"alice": "secret", "bob": "pw"},
		OAuth2IntrospectionURL: as.IntrospectionURL(),
	})
	tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
	for mech, ir := range map[string]string{"XOAUTH2": xoauth2("alice", tok), "OAUTHBEARER": oauthbearer("alice", tok)} {
		if reply, _ := saslLogin(t, d.IMAPAddr, mech, ir, ""); !strings.HasPrefix(reply, "a OK ") {
			t.Errorf("%s with a valid token: %q", mech, reply)
		}
	}
	// Passwords still work, and a password is not a token.
	if reply, _ := saslLogin(t, d.IMAPAddr, "PLAIN", "\x00bob\x00pw", "*"); !strings.HasPrefix(reply, "a OK ") {
		t.Errorf("PLAIN with a password: %q", reply)
	}
	d.Dial(t, "alice")
	if st := as.Stats(); st.Introspections != 2 || st.ActiveIntrospections != 2 {
		t.Errorf("token server stats %+v, want exactly the two token logins introspected", st)
	}
}

// Each refused login makes Dovecot delay later ones from the same
// address (auth penalty), so each case has its own instance.
func TestOAuth2RefusesRevokedExpiredAndForeignTokens(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, mech, answer, status string
		token                      func(as *oauthtest.Server) string
		ir                         func(tok string) string
	}{
		{"revoked xoauth2", "XOAUTH2", "", `"status":"401"`, func(as *oauthtest.Server) string {
			tok := as.IssueAccessToken("alice", oauthtest.DefaultClientID, 0)
			as.RevokeUser("alice")
			return tok
		}, func(tok string) string { return xoauth2("alice", tok) }},
		{"expired oauthbearer", "OAUTHBEARER", b64("\x01"), `"status":"invalid_token"`, func(as *oauthtest.Server) string {
			return as.IssueAccessToken("alice", oauthtest.DefaultClientID, time.Nanosecond)
		}, func(tok string) string { return oauthbearer("alice", tok) }},
		{"token of another user", "OAUTHBEARER", b64("\x01"), `"status":"invalid_token"`, func(as *oauthtest.Server) string {
			return as.IssueAccessToken("bob", oauthtest.DefaultClientID, 0)
		}, func(tok string) string { return oauthbearer("alice", tok) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			as := oauthtest.Start(t, oauthtest.Options{})
			d := dovecottest.Start(t, dovecottest.Options{
				Users:                  map[string]string{"alice": "secret", "bob": "pw"},
				OAuth2IntrospectionURL: as.IntrospectionURL(),
			})
			tok := c.token(as)
			reply, challenge := saslLogin(t, d.IMAPAddr, c.mech, c.ir(tok), c.answer)
			if !strings.Contains(challenge, c.status) || !strings.HasPrefix(reply, "a NO [AUTHENTICATIONFAILED]") {
				t.Errorf("challenge %q, reply %q; want a challenge with %s and NO [AUTHENTICATIONFAILED]", challenge, reply, c.status)
			}
			if as.Stats().Introspections != 1 {
				t.Errorf("stats %+v, want one introspection", as.Stats())
			}
		})
	}
}
