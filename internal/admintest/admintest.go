// Package admintest is a POP3 server's session list for tests of the
// admin listener and of the commands that talk to it.
package admintest

import (
	"sync"

	"github.com/popbridge/popbridge/pop3front"
)

// Sessions is the session list of one POP3 server; Kick and KickUser
// remove what they close. It is safe for concurrent use.
type Sessions struct {
	mu   sync.Mutex
	list []pop3front.SessionInfo
}

// NewSessions is a server with the sessions list.
func NewSessions(list ...pop3front.SessionInfo) *Sessions {
	return &Sessions{list: list}
}

// Sessions returns a copy of the list.
func (s *Sessions) Sessions() []pop3front.SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pop3front.SessionInfo(nil), s.list...)
}

// Kick removes the session with id and reports whether there was one.
func (s *Sessions) Kick(id string) bool {
	return s.remove(func(si pop3front.SessionInfo) bool { return si.ID == id }) > 0
}

// KickUser removes the sessions of user and returns how many there were.
func (s *Sessions) KickUser(user string) int {
	return s.remove(func(si pop3front.SessionInfo) bool { return si.User == user })
}

func (s *Sessions) remove(match func(pop3front.SessionInfo) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []pop3front.SessionInfo
	for _, si := range s.list {
		if !match(si) {
			kept = append(kept, si)
		}
	}
	n := len(s.list) - len(kept)
	s.list = kept
	return n
}
