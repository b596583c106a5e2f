package state

// This file holds the stamps: under each key, the first time each of a set
// of names was noted (for retention, when a device first retrieved each
// message), in process and in Redis. The time is the store's own (Redis:
// TIME), so that replicas whose clocks differ agree on how old a stamp is.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stamper keeps stamps. A key's stamps all go after ttl without a Stamp
// to the key; Memory also drops arbitrary keys past maxMemoryKeys.
// Losing stamps only makes them younger (noted again) or absent, never
// older than they are.
type Stamper interface {
	// Stamp notes the store's current time for each of names not yet
	// noted under key (the first note stays), keeps the key for ttl
	// from now, and returns every name noted under key with its time,
	// and the store's current time.
	Stamp(ctx context.Context, key string, names []string, ttl time.Duration) (stamps map[string]time.Time, now time.Time, err error)
	// Unstamp forgets names under key.
	Unstamp(ctx context.Context, key string, names []string) error
}

// stampSet is one key's stamps in a Memory.
type stampSet struct {
	at      map[string]time.Time
	expires time.Time
}

// NewMemoryWithClock returns an empty in-process store that reads the
// time from now, for tests that move time forward.
func NewMemoryWithClock(now func() time.Time) *Memory {
	m := NewMemory()
	m.now = now
	return m
}

// Stamp notes names under key.
func (m *Memory) Stamp(_ context.Context, key string, names []string, ttl time.Duration) (map[string]time.Time, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	s := m.stamps[key]
	if s == nil || !now.Before(s.expires) {
		if len(names) == 0 {
			delete(m.stamps, key) // as in Redis: nothing to keep
			return map[string]time.Time{}, now, nil
		}
		m.pruneStamps(now)
		s = &stampSet{at: make(map[string]time.Time)}
		if m.stamps == nil {
			m.stamps = make(map[string]*stampSet)
		}
		m.stamps[key] = s
	}
	for _, n := range names {
		if _, ok := s.at[n]; !ok {
			s.at[n] = now
		}
	}
	s.expires = now.Add(ttl)
	out := make(map[string]time.Time, len(s.at))
	for n, t := range s.at {
		out[n] = t
	}
	return out, now, nil
}

// pruneStamps drops expired keys, then arbitrary ones while the table is
// full.
func (m *Memory) pruneStamps(now time.Time) {
	if len(m.stamps) < maxMemoryKeys {
		return
	}
	for k, s := range m.stamps {
		if !now.Before(s.expires) {
			delete(m.stamps, k)
		}
	}
	for k := range m.stamps {
		if len(m.stamps) < maxMemoryKeys {
			break
		}
		delete(m.stamps, k) // map order: arbitrary victims
	}
}

// Unstamp forgets names under key.
func (m *Memory) Unstamp(_ context.Context, key string, names []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.stamps[key]; s != nil {
		for _, n := range names {
			delete(s.at, n)
		}
	}
	return nil
}

// stampScript notes ARGV[2..] under the hash KEYS[1] unless noted
// (HSETNX), keeps it ARGV[1] ms, and returns the server's time and the
// whole hash. Times are milliseconds since the epoch.
var stampScript = redis.NewScript(serverNow + `
local at = string.format('%.0f', now)
for i = 2, #ARGV do redis.call('HSETNX', KEYS[1], ARGV[i], at) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {at, redis.call('HGETALL', KEYS[1])}
`)

// Stamp notes names under key (stampScript).
func (r *Redis) Stamp(ctx context.Context, key string, names []string, ttl time.Duration) (map[string]time.Time, time.Time, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	args := make([]any, 0, 1+len(names))
	args = append(args, ttl.Milliseconds())
	for _, n := range names {
		args = append(args, n)
	}
	v, err := stampScript.Run(ctx, r.client, []string{r.stampKey(key)}, args...).Slice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	now, ok := msTime(v[0])
	fields, _ := v[1].([]any)
	if !ok || len(fields)%2 != 0 {
		return nil, time.Time{}, fmt.Errorf("%w: stamps of %q answered %v", ErrUnavailable, key, v)
	}
	stamps := make(map[string]time.Time, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		name, _ := fields[i].(string)
		if t, ok := msTime(fields[i+1]); ok {
			stamps[name] = t
		}
	}
	return stamps, now, nil
}

// msTime reads a time that a script wrote as milliseconds since the epoch.
func msTime(v any) (time.Time, bool) {
	s, _ := v.(string)
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// Unstamp forgets names under key.
func (r *Redis) Unstamp(ctx context.Context, key string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	if err := r.client.HDel(ctx, r.stampKey(key), names...).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

func (r *Redis) stampKey(key string) string { return r.cfg.KeyPrefix + "stamps:" + key }
