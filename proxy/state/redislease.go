package state

// This file holds the Redis store's leases: connection slots and locks,
// each a token with an expiry in the store that the replica holding it
// renews every third of LeaseTTL, so that what a crashed replica held
// frees itself within LeaseTTL.
//
// Goroutines: one renewer per Redis store owns the renewals; it starts in
// NewRedis and ends in Close. Acquire, Lock and the releases run on the
// callers' goroutines and only add to or take from the renewer's set
// under its mutex.

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// renewBatch bounds one pipeline of renewals.
const renewBatch = 500

// held is one lease in the store that this replica renews.
type held struct {
	feature string // "connections" or "locks"
	key     string
	token   string
	lease   *Lease    // locks only: its Lost is closed through here
	lastOK  time.Time // when the last renewal that the store confirmed was sent
}

type renewer struct {
	r        *Redis
	mu       sync.Mutex
	set      map[*held]struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newRenewer(r *Redis) *renewer {
	w := &renewer{r: r, set: make(map[*held]struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *renewer) add(h *held) {
	w.mu.Lock()
	w.set[h] = struct{}{}
	w.mu.Unlock()
}

// remove reports whether h was still renewed, i.e. not yet released or
// lost.
func (w *renewer) remove(h *held) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.set[h]
	delete(w.set, h)
	return ok
}

func (w *renewer) loop() {
	defer close(w.done)
	every := w.r.cfg.LeaseTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.renewAll(every)
		}
	}
}

// renewAll renews every lease, in pipelines of renewBatch. A lock whose
// renewal the store refuses is lost at once; one whose renewals fail is
// lost when the next attempt, one interval away, could come after its
// expiry.
func (w *renewer) renewAll(every time.Duration) {
	w.mu.Lock()
	all := make([]*held, 0, len(w.set))
	for h := range w.set {
		all = append(all, h)
	}
	w.mu.Unlock()
	ttl := w.r.cfg.LeaseTTL.Milliseconds()
	var failed [2]error // connections, locks: one report per tick each
	for len(all) > 0 {
		batch := all[:min(len(all), renewBatch)]
		all = all[len(batch):]
		sent := time.Now()
		ctx, cancel := w.r.background()
		pipe := w.r.client.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, h := range batch {
			s := renewSlotScript
			args := []any{ttl, h.token}
			if h.lease != nil {
				s, args = renewLockScript, []any{h.token, ttl}
			}
			// EVAL, not EVALSHA: a restarted server has no scripts
			// loaded, and a pipeline cannot fall back per command.
			cmds[i] = s.Eval(ctx, pipe, []string{h.key}, args...)
		}
		pipe.Exec(ctx)
		cancel()
		for i, h := range batch {
			n, err := cmds[i].Int()
			switch {
			case err == nil && (h.lease == nil || n == 1):
				h.lastOK = sent
			case err == nil:
				w.lose(h)
			case h.lease == nil:
				failed[0] = err
			default:
				failed[1] = err
				if time.Since(h.lastOK)+every >= w.r.cfg.LeaseTTL {
					w.lose(h)
				}
			}
		}
	}
	w.r.report("connections", failed[0])
	w.r.report("locks", failed[1])
}

// lose stops renewing a lock and tells its holder, unless it was released
// meanwhile.
func (w *renewer) lose(h *held) {
	if w.remove(h) {
		close(h.lease.lost)
	}
}

// halt stops the loop and waits for it to end.
func (w *renewer) halt() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

// close stops the loop and releases what is still held, in one pipeline.
func (w *renewer) close() {
	w.halt()
	w.mu.Lock()
	all := w.set
	w.set = make(map[*held]struct{})
	w.mu.Unlock()
	if len(all) == 0 {
		return
	}
	ctx, cancel := w.r.background()
	defer cancel()
	pipe := w.r.client.Pipeline()
	for h := range all {
		w.r.releaseCmd(ctx, pipe, h)
	}
	_, err := pipe.Exec(ctx)
	w.r.report("locks", err)
}

// releaseCmd queues the command that gives h up.
func (r *Redis) releaseCmd(ctx context.Context, c redis.Cmdable, h *held) redis.Cmder {
	if h.lease != nil {
		return unlockScript.Eval(ctx, c, []string{h.key}, h.token)
	}
	return c.ZRem(ctx, h.key, h.token)
}

// release gives h up now, unless it was lost or released already.
func (r *Redis) release(h *held) {
	if !r.leases.remove(h) {
		return
	}
	ctx, cancel := r.background()
	defer cancel()
	r.report(h.feature, r.releaseCmd(ctx, r.client, h).Err())
}

// Acquire takes a slot in key's sorted set of slot tokens scored by
// expiry (acquireSlotScript).
func (r *Redis) Acquire(ctx context.Context, key string, limit int) (func(), bool, error) {
	if limit <= 0 {
		return func() {}, true, nil
	}
	h := &held{feature: "connections", key: r.cfg.KeyPrefix + "conn:" + key, token: newToken(), lastOK: time.Now()}
	opCtx, cancel := r.bounded(ctx)
	defer cancel()
	n, err := acquireSlotScript.Run(opCtx, r.client, []string{h.key}, limit, r.cfg.LeaseTTL.Milliseconds(), h.token).Int()
	if err != nil {
		ok, err := r.unavailable(ctx, r.cfg.OnFailure.Connections, err)
		if !ok {
			return nil, false, err
		}
		return func() {}, true, err
	}
	if n == 0 {
		return nil, false, nil
	}
	r.leases.add(h)
	return func() { r.release(h) }, true, nil
}

// Lock sets key to a fresh token with an expiry of LeaseTTL when it is
// free (lockScript); renewals and the release check the token first, so a
// replica never extends or frees a lock that another holds.
func (r *Redis) Lock(ctx context.Context, key string) (*Lease, bool, error) {
	h := &held{feature: "locks", key: r.cfg.KeyPrefix + "lock:" + key, token: newToken(), lastOK: time.Now()}
	opCtx, cancel := r.bounded(ctx)
	defer cancel()
	n, err := lockScript.Run(opCtx, r.client, []string{h.key}, h.token, r.cfg.LeaseTTL.Milliseconds()).Int()
	if err != nil {
		ok, err := r.unavailable(ctx, r.cfg.OnFailure.Locks, err)
		if !ok {
			return nil, false, err
		}
		return newLease(func() {}), true, err
	}
	if n == 0 {
		return nil, false, nil
	}
	h.lease = newLease(func() { r.release(h) })
	r.leases.add(h)
	return h.lease, true, nil
}
