package oauth2

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/proxy/config"
)

// status is the fixture account's one entry in the cache's status.
func (f *tokenFixture) status(t *testing.T) AccountStatus {
	t.Helper()
	list := f.cache.Status()
	if len(list) != 1 || list[0].Account != oauthtest.FixtureAccount || list[0].Provider != "idp" {
		t.Fatalf("status = %+v, want the one account %s of provider idp", list, oauthtest.FixtureAccount)
	}
	return list[0]
}

// TestStatusFollowsTheTokens walks one account through the states that
// popbridge oauth status shows, against a real token endpoint: never
// authorised, valid, endpoint down, revoked, authorised again.
func TestStatusFollowsTheTokens(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)

	if st := f.status(t); st.State != StateIdle || st.LastError != "" || !st.FailingSince.IsZero() {
		t.Errorf("before any login: %+v, want idle", st)
	}
	f.token(t)
	if st := f.status(t); st.State != StateNeedsLogin || st.LastError != RefreshMissing || st.FailingSince.IsZero() {
		t.Errorf("no refresh token stored: %+v, want needs_login (missing)", st)
	}

	f.seed(t)
	tok := f.mustToken(t)
	st := f.status(t)
	if st.State != StateValid || st.ValidUntil.Before(time.Now()) || st.LastError != "" || !st.FailingSince.IsZero() {
		t.Errorf("after a refresh: %+v, want valid with an expiry ahead", st)
	}

	// The endpoint fails: refresh_failing since the first failure, which
	// the following ones do not move.
	f.srv.FailTokenRequests(http.StatusServiceUnavailable)
	f.advance(2 * time.Hour)
	f.token(t)
	first := f.status(t)
	if first.State != StateFailing || first.LastError != RefreshFailed || first.FailingSince.IsZero() || !first.ValidUntil.IsZero() {
		t.Errorf("endpoint failing: %+v, want refresh_failing (failed)", first)
	}
	f.advance(time.Minute)
	f.token(t)
	if st := f.status(t); st.State != StateFailing || !st.FailingSince.Equal(first.FailingSince) {
		t.Errorf("second failure: %+v, want failing since %v still", st, first.FailingSince)
	}

	// Back up, then the refresh token revoked: needs_login.
	f.srv.FailTokenRequests(0)
	f.mustToken(t)
	f.srv.RevokeUser(oauthtest.FixtureMailbox)
	f.advance(2 * time.Hour)
	f.token(t)
	if st := f.status(t); st.State != StateNeedsLogin || st.LastError != RefreshRevoked || st.FailingSince.IsZero() {
		t.Errorf("revoked: %+v, want needs_login (revoked)", st)
	}

	// popbridge oauth login while the daemon runs: valid again.
	f.seed(t)
	f.mustToken(t)
	// The server's tokens live an hour of real time: back to it.
	f.advance(-4 * time.Hour)
	if st := f.status(t); st.State != StateValid || st.LastError != "" || !st.FailingSince.IsZero() {
		t.Errorf("authorised again: %+v, want valid", st)
	}
	for _, st := range f.cache.Status() {
		if s := st.Account + st.Provider + st.State + st.LastError; strings.Contains(s, tok) {
			t.Errorf("a token in the status: %+v", st)
		}
	}
}

// TestStatusEndpointDown: an unreachable endpoint is refresh_failing.
func TestStatusEndpointDown(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, oauthtest.Options{}, config.GrantCode)
	f.seed(t)
	f.cache.entries[f.key].conf.Endpoint.TokenURL = oauthtest.ClosedURL(t) + "/token"
	f.token(t)
	if st := f.status(t); st.State != StateFailing || st.LastError != RefreshFailed || st.FailingSince.IsZero() {
		t.Errorf("endpoint down: %+v, want refresh_failing (failed)", st)
	}
}
