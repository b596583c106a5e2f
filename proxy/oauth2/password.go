package oauth2

import (
	"context"
	"runtime"

	"github.com/popbridge/popbridge/proxy/config"
)

// The check of an account's local password at login.

// passwordChecks bounds the local password checks that run at once in
// the process: an argon2id check takes about 19 MiB and a core for 20 ms,
// so a burst of logins (or an attacker) must queue, not allocate without
// bound.
var passwordChecks = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

// CheckPassword verifies pass against the account's hash, waiting for a
// slot among passwordChecks as long as ctx allows.
func CheckPassword(ctx context.Context, a *config.AccountConfig, pass string) (bool, error) {
	select {
	case passwordChecks <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-passwordChecks }()
	return a.Hash.Verify(pass), nil
}
