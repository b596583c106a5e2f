package proxy

import (
	"strings"
	"sync"
)

// sessionLocks is the optional per-process lock on maildrops
// (limits.lock_session, like Dovecot's pop3_lock_session): while one POP3
// session of a maildrop is open, another login to it is refused with
// -ERR [IN-USE]. It is per process: replicas of popbridge behind a load
// balancer do not see each other's sessions (docs/reliability.md).
type sessionLocks struct {
	mu   sync.Mutex
	held map[string]struct{}
}

func newSessionLocks() *sessionLocks {
	return &sessionLocks{held: make(map[string]struct{})}
}

// lockKey names a maildrop: the upstream, the user as the upstream knows
// it and the device view. The user is case-folded because IMAP servers
// commonly are (Dovecot's default auth_username_format is %Lu): locking
// too much is safer than two sessions slipping past the lock.
func lockKey(upstream, user, device string) string {
	return upstream + "\x00" + strings.ToLower(user) + "\x00" + device
}

// acquire takes the lock on key and returns its release, or false when
// another session holds it.
func (l *sessionLocks) acquire(key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.held[key]; busy {
		return nil, false
	}
	l.held[key] = struct{}{}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.held, key)
			l.mu.Unlock()
		})
	}, true
}
