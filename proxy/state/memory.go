package state

// This file holds the in-process store: one mutex over plain maps, the
// state of a single popbridge process.

import (
	"context"
	"sync"
	"time"
)

// maxMemoryKeys bounds each table of a Memory: beyond it, arbitrary idle
// keys are dropped, so that an attacker who cycles through addresses or
// names makes the table forget, not grow.
const maxMemoryKeys = 100_000

// Memory is the in-process Store: shared by the sessions of one process
// only. Its operations never fail.
type Memory struct {
	now func() time.Time

	mu        sync.Mutex
	attempts  map[string][]*attempt // per key, at most its limit entries
	notes     map[string]time.Time  // Remember: key -> expiry
	slots     map[string]int        // Acquire: key -> slots taken
	locks     map[string]struct{}
	stamps    map[string]*stampSet // stamps.go
	lastPrune time.Time
}

// attempt is one reserved login attempt: in flight, or failed at t.
type attempt struct{ t time.Time }

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{
		now:      time.Now,
		attempts: make(map[string][]*attempt),
		notes:    make(map[string]time.Time),
		slots:    make(map[string]int),
		locks:    make(map[string]struct{}),
	}
}

// Reserve keeps a sliding log per key: the attempts reserved within the
// last window, as the Redis store does.
func (m *Memory) Reserve(_ context.Context, key string, limit int, window time.Duration) (func(failed bool), bool, error) {
	if limit <= 0 {
		return func(bool) {}, true, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.prune(now, window)
	live := liveAttempts(m.attempts[key], now, window)
	if len(live) >= limit {
		m.attempts[key] = live
		return nil, false, nil
	}
	a := &attempt{t: now}
	m.attempts[key] = append(live, a)
	var once sync.Once
	return func(failed bool) {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if failed {
				a.t = m.now() // counted for a window from the failure on
				return
			}
			list := m.attempts[key]
			for i, b := range list {
				if b == a {
					m.attempts[key] = append(list[:i:i], list[i+1:]...)
					break
				}
			}
		})
	}, true, nil
}

// liveAttempts drops, in place, the attempts that left the window.
func liveAttempts(list []*attempt, now time.Time, window time.Duration) []*attempt {
	live := list[:0]
	for _, a := range list {
		if now.Sub(a.t) < window {
			live = append(live, a)
		}
	}
	clear(list[len(live):])
	return live
}

// prune drops, at most once a second, keys with nothing in the window,
// expired notes, and arbitrary keys of a table that is too large. Every
// caller of a key passes the same window, and the shortest one seen decides
// which keys are idle; a key pruned early only forgets failures as old as
// that window.
func (m *Memory) prune(now time.Time, window time.Duration) {
	if len(m.attempts) < maxMemoryKeys && len(m.notes) < maxMemoryKeys && now.Sub(m.lastPrune) < time.Second {
		return
	}
	m.lastPrune = now
	for k, list := range m.attempts {
		if live := liveAttempts(list, now, window); len(live) > 0 {
			m.attempts[k] = live
		} else {
			delete(m.attempts, k)
		}
	}
	for k, exp := range m.notes {
		if !now.Before(exp) {
			delete(m.notes, k)
		}
	}
	for k := range m.attempts {
		if len(m.attempts) < maxMemoryKeys {
			break
		}
		delete(m.attempts, k) // map order: arbitrary victims
	}
	for k := range m.notes {
		if len(m.notes) < maxMemoryKeys {
			break
		}
		delete(m.notes, k)
	}
}

// Remember notes key until now+ttl.
func (m *Memory) Remember(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes[key] = m.now().Add(ttl)
	return nil
}

// Remembered reports whether key's note has not expired.
func (m *Memory) Remembered(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.notes[key]
	return ok && m.now().Before(exp), nil
}

// Acquire counts slots per key; a key without slots is deleted, so the
// table holds only addresses with open connections.
func (m *Memory) Acquire(_ context.Context, key string, limit int) (func(), bool, error) {
	if limit <= 0 {
		return func() {}, true, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots[key] >= limit {
		return nil, false, nil
	}
	m.slots[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.slots[key]--; m.slots[key] <= 0 {
				delete(m.slots, key)
			}
		})
	}, true, nil
}

// Lock holds key until the lease is released.
func (m *Memory) Lock(_ context.Context, key string) (*Lease, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, busy := m.locks[key]; busy {
		return nil, false, nil
	}
	m.locks[key] = struct{}{}
	return newLease(func() {
		m.mu.Lock()
		delete(m.locks, key)
		m.mu.Unlock()
	}), true, nil
}

// Close does nothing: an in-process store ends with its process.
func (m *Memory) Close() error { return nil }
