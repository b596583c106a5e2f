// status.go holds the token states of the cache's accounts for the
// operator (popbridge oauth status): what the last attempt to get an
// access token said, and since when attempts have failed. Never a token.

package oauth2

import (
	"slices"
	"strings"
	"time"
)

// States of an account's tokens (AccountStatus.State).
const (
	// StateValid: an access token is cached and valid until ValidUntil
	// (zero: until the upstream refuses it).
	StateValid = "valid"
	// StateIdle: no access token cached, and no attempt failed: the next
	// login gets one.
	StateIdle = "idle"
	// StateNeedsLogin: no refresh token stored, or the endpoint refused
	// it: an operator must run popbridge oauth login.
	StateNeedsLogin = "needs_login"
	// StateFailing: the last attempt failed (endpoint unreachable, or the
	// client refused); attempts have failed since FailingSince.
	StateFailing = "refresh_failing"
)

// AccountStatus is the state of one cache entry: a delegated account, or
// an app-only provider (Account empty).
type AccountStatus struct {
	Account  string
	Provider string
	// State is StateValid, StateIdle, StateNeedsLogin or StateFailing.
	State        string
	ValidUntil   time.Time
	FailingSince time.Time
	// LastError is the last failed attempt's result (RefreshRevoked,
	// RefreshMissing, RefreshRejected, RefreshFailed) while attempts
	// fail; empty after a success.
	LastError string
}

// Status lists the state of every entry, by provider and account.
func (c *TokenCache) Status() []AccountStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	out := make([]AccountStatus, 0, len(c.entries))
	for _, e := range c.entries {
		st := AccountStatus{Account: e.account, Provider: e.provider}
		// A valid token comes first: one taken from the store after an
		// `oauth login` ends a failure without an attempt to note.
		switch {
		case e.validLocked(now):
			st.State, st.ValidUntil = StateValid, e.access.Expiry
		case e.lastResult == RefreshRevoked || e.lastResult == RefreshMissing:
			st.State, st.LastError, st.FailingSince = StateNeedsLogin, e.lastResult, e.failingSince
		case e.lastResult == RefreshFailed || e.lastResult == RefreshRejected:
			st.State, st.LastError, st.FailingSince = StateFailing, e.lastResult, e.failingSince
		default:
			st.State = StateIdle
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b AccountStatus) int {
		return strings.Compare(a.Provider+"\x00"+a.Account, b.Provider+"\x00"+b.Account)
	})
	return out
}

// noteResult records an attempt's result on e: a success clears the
// failure, the first failure of a run starts it.
func (c *TokenCache) noteResult(e *tokenEntry, result string) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e.lastResult = result
	switch result {
	case RefreshOK, RefreshRotated:
		e.failingSince = time.Time{}
	default:
		if e.failingSince.IsZero() {
			e.failingSince = now
		}
	}
}
