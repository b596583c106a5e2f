package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// A device that retries a failing login every minute must not flood the
// log: the POP3 server's "login error" line (an upstream or token failure
// the device cannot fix by retrying) is written at WARN once per user and
// error every loginErrorEvery, and at DEBUG in between.

// loginErrorEvery is how often one user's same login error reaches WARN,
// the interval docs/oauth2.md promises.
const loginErrorEvery = 5 * time.Minute

// maxRepeatKeys bounds the remembered (user, error) pairs: when it is
// reached, the stale pairs are forgotten, and others until it is not.
const maxRepeatKeys = 4096

// repeatLimiter is a slog.Handler that demotes repeated "login error"
// records. Its state is shared by the handlers that With derives.
type repeatLimiter struct {
	next  slog.Handler
	state *repeatState
}

type repeatState struct {
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	last  map[string]time.Time // "user\x00error" -> time of its last WARN
}

func newRepeatLimiter(next slog.Handler, every time.Duration) *repeatLimiter {
	return &repeatLimiter{next: next, state: &repeatState{every: every, now: time.Now, last: make(map[string]time.Time)}}
}

func (h *repeatLimiter) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) // a record is only ever demoted

}

func (h *repeatLimiter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == "login error" && !h.state.first(r) {
		if !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.next.Handle(ctx, r)
}

// first reports whether r's user and error were not seen at WARN within
// the interval, and records it if so.
func (s *repeatState) first(r slog.Record) bool {
	var user, err string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "user":
			user = a.Value.String()
		case "err":
			err = a.Value.String()
		}
		return true
	})
	key := user + "\x00" + err
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.last[key]; ok && now.Sub(t) < s.every {
		return false
	}
	if len(s.last) >= maxRepeatKeys {
		for k, t := range s.last {
			if now.Sub(t) >= s.every || len(s.last) >= maxRepeatKeys {
				delete(s.last, k)
			}
		}
	}
	s.last[key] = now
	return true
}

func (h *repeatLimiter) WithAttrs(as []slog.Attr) slog.Handler {
	return &repeatLimiter{next: h.next.WithAttrs(as), state: h.state}
}

func (h *repeatLimiter) WithGroup(name string) slog.Handler {
	return &repeatLimiter{next: h.next.WithGroup(name), state: h.state}
}
