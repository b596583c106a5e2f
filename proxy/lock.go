package proxy

// limits.lock_session (like Dovecot's pop3_lock_session): while one POP3
// session of a maildrop is open, another login to it is refused with
// -ERR [IN-USE]. The lock is a lease in the state store: per process, or
// across the replicas that share a Redis store.

import (
	"context"
	"strings"

	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/state"
)

// errLockLost: the session's lease on its maildrop could not be vouched
// for (the store lost it, or another session took it), so its UPDATE
// would risk running beside another session's.
var errLockLost = &pop3front.Error{Code: "SYS/TEMP", Text: "Session lock lost; nothing was changed, try again"}

// lockKey names a maildrop: the upstream, the user as the upstream knows
// it and the device view. The user is case-folded because IMAP servers
// commonly are (Dovecot's default auth_username_format is %Lu): locking
// too much is safer than two sessions slipping past the lock.
func lockKey(upstream, user, device string) string {
	return upstream + "\x00" + strings.ToLower(user) + "\x00" + device
}

// lockMaildrop takes the lease on a maildrop, or returns the error to
// answer: ErrInUse while another session holds it, ErrUnavailable when
// the store cannot be asked and locks fail closed.
func lockMaildrop(ctx context.Context, st state.Locker, key string, errs storeErrors) (*state.Lease, error) {
	lease, ok, err := st.Lock(ctx, "session:"+key)
	if err != nil {
		errs.failed("locks", err)
	}
	switch {
	case ok:
		return lease, nil
	case err != nil:
		return nil, pop3front.ErrUnavailable
	}
	return nil, pop3front.ErrInUse
}
