package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/sockets"
	"github.com/popbridge/popbridge/proxy/state"
)

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	// Logger receives the life-cycle logs and is given to every Proxy.
	Logger *slog.Logger
	// Hooks are given to every Proxy.
	Hooks Hooks
	// OnProbe, when set, receives the results of every round of probes:
	// each configured upstream's, by name.
	OnProbe func(results map[string]error)
}

// Runner runs popbridge for the life of the process: it serves a config,
// probes the upstream for readiness, swaps in a new config on Reload, and
// drains on Drain.
//
// The listening sockets belong to the Runner, not to a Proxy: a reload
// hands a socket whose address is still configured from the old Proxy to
// the new one without closing it, so no client is refused meanwhile. The
// old Proxy stops accepting and keeps serving its open sessions with the
// old settings until they end.
type Runner struct {
	log   *slog.Logger
	opts  RunnerOptions
	fatal chan error // a listener failed for good
	// store holds the limits and locks of every Proxy the Runner builds,
	// for the life of the process: a reload forgets no failed login and
	// frees no lock. Serve closes it when the last session has ended.
	store     state.Store
	storeOnce sync.Once

	mu       sync.Mutex
	cfg      *config.Config
	cur      *Proxy
	live     map[*Proxy]struct{} // cur and the retiring ones with open sessions
	sockets  map[string]*sockets.Shared
	serving  bool
	draining bool
	probeOK  time.Time // last successful probe
	probeErr error     // last probe's error; nil after a success
	probed   bool      // a probe has completed
	wg       sync.WaitGroup
	// stopped ends with Drain: it ends the probe loop.
	stopped context.Context
	stop    context.CancelFunc
}

// NewRunner builds the Proxy for cfg (checked) and binds its listeners.
// It does not serve yet.
func NewRunner(cfg *config.Config, opts RunnerOptions) (*Runner, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Runner{
		log:     opts.Logger,
		opts:    opts,
		fatal:   make(chan error, 1),
		live:    make(map[*Proxy]struct{}),
		sockets: make(map[string]*sockets.Shared),
	}
	r.stopped, r.stop = context.WithCancel(context.Background())
	var err error
	r.store, err = openStore(cfg, storeErrors{log: opts.Logger, obs: opts.Hooks.State})
	if err != nil {
		return nil, err
	}
	p, err := r.build(cfg, nil)
	if err != nil {
		r.store.Close()
		return nil, err
	}
	r.cfg, r.cur = cfg, p
	r.live[p] = struct{}{}
	return r, nil
}

// build makes a Proxy for cfg whose listeners are views of the runner's
// sockets, binding the addresses that are new, and which keeps the
// snapshot cache of the Proxy it replaces. On error, the sockets it bound
// are closed again.
func (r *Runner) build(cfg *config.Config, cache *imapback.SnapshotCache) (*Proxy, error) {
	p, err := New(cfg, Options{Logger: r.log, Hooks: r.opts.Hooks, Store: r.store, SnapshotCache: cache})
	if err != nil {
		return nil, err
	}
	var bound []string
	p.listenTCP = func(addr string) (net.Listener, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		s := r.sockets[addr]
		if s == nil {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, err
			}
			s = sockets.New(ln, r.log)
			r.sockets[addr] = s
			bound = append(bound, addr)
		}
		return s.View(), nil
	}
	if err := p.Listen(); err != nil {
		r.mu.Lock()
		for _, addr := range bound {
			r.sockets[addr].Close()
			delete(r.sockets, addr)
		}
		r.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// Addrs returns the current Proxy's bound addresses, in config order.
func (r *Runner) Addrs() []net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.Addrs()
}

// Serve serves until Drain has finished, and probes the upstream
// meanwhile. It returns an error if a listener fails for good.
func (r *Runner) Serve() error {
	r.mu.Lock()
	r.serving = true
	r.startLocked(r.cur)
	r.mu.Unlock()

	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		r.probeLoop()
	}()
	defer func() { <-probeDone }()
	defer r.closeStore()

	drained := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		return nil
	case err := <-r.fatal:
		r.closeAll()
		<-drained
		return err
	}
}

// startLocked serves p in the background; r.wg counts it until p's
// Serve returns.
func (r *Runner) startLocked(p *Proxy) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := p.Serve(); err != nil {
			select {
			case r.fatal <- err:
			default:
			}
		}
	}()
}

// Reload replaces the running config with cfg (checked). New connections
// get the new settings at once; open sessions keep theirs until they end.
// Listeners whose address is gone are closed, new ones bound. On error
// (an address that cannot be bound, a certificate that cannot be read, a
// changed state section...) nothing changes.
func (r *Runner) Reload(cfg *config.Config) error {
	r.mu.Lock()
	draining, stateCfg, cache := r.draining, r.cfg.State, r.cur.hooks.snapshots
	r.mu.Unlock()
	if draining {
		return errors.New("draining: reload ignored")
	}
	if cfg.State != stateCfg {
		// Another store would start with no failed logins and no locks
		// while the open sessions hold theirs in this one.
		return errors.New("state: the section changed; a new shared state store takes a restart (reload ignored)")
	}
	p, err := r.build(cfg, cache)
	if err != nil {
		return err
	}

	r.mu.Lock()
	if r.draining {
		r.mu.Unlock()
		p.Close()
		r.closeUnusedSockets()
		return errors.New("draining: reload ignored")
	}
	old := r.cur
	p.oauth.adopt(old.oauth)
	r.cfg, r.cur = cfg, p
	r.live[p] = struct{}{}
	if r.serving {
		r.startLocked(p)
	}
	r.mu.Unlock()

	// The old Proxy stops accepting (its views close; the sockets stay)
	// and lets its sessions end by themselves.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		old.Shutdown(context.Background())
		r.mu.Lock()
		delete(r.live, old)
		r.mu.Unlock()
	}()
	r.closeUnusedSockets()
	return nil
}

// closeUnusedSockets closes the sockets that the current config does not
// name.
func (r *Runner) closeUnusedSockets() {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := make(map[string]bool)
	for _, l := range r.cur.cfg.Listen {
		used[l.Address] = true
	}
	for addr, s := range r.sockets {
		if !used[addr] {
			r.log.Info("listener closed by reload", "addr", addr)
			s.Close()
			delete(r.sockets, addr)
		}
	}
}

// Drain marks the process not ready, stops accepting and waits for open
// sessions to end by themselves until ctx is done; then it closes the
// rest, without their UPDATE state, so that nothing is deleted for them.
// It returns ctx's error if it had to close sessions.
func (r *Runner) Drain(ctx context.Context) error {
	r.mu.Lock()
	r.draining = true
	r.stop()
	live := make([]*Proxy, 0, len(r.live))
	for p := range r.live {
		live = append(live, p)
	}
	// The sockets close now: a client gets "connection refused" and
	// tries another replica, instead of waiting in the backlog.
	for addr, s := range r.sockets {
		s.Close()
		delete(r.sockets, addr)
	}
	r.mu.Unlock()

	errs := make(chan error, len(live))
	for _, p := range live {
		go func() { errs <- p.Shutdown(ctx) }()
	}
	var err error
	for range live {
		if e := <-errs; e != nil {
			err = e
		}
	}
	return err
}

// closeStore closes the store, once, after every Proxy has stopped.
func (r *Runner) closeStore() {
	r.storeOnce.Do(func() { r.store.Close() })
}

// closeAll stops everything at once.
func (r *Runner) closeAll() {
	r.mu.Lock()
	r.draining = true
	r.stop()
	for addr, s := range r.sockets {
		s.Close()
		delete(r.sockets, addr)
	}
	live := make([]*Proxy, 0, len(r.live))
	for p := range r.live {
		live = append(live, p)
	}
	r.mu.Unlock()
	for _, p := range live {
		p.Close()
	}
}

// Ready returns nil when the process should get new connections: it
// serves its listeners, the last upstream probe succeeded recently, and it
// is not draining.
func (r *Runner) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.draining:
		return errors.New("draining")
	case !r.serving:
		return errors.New("listeners not serving yet")
	case !r.probed:
		return errors.New("upstream not probed yet")
	case r.probeErr != nil:
		return fmt.Errorf("upstream probe failed: %v", r.probeErr)
	}
	// A probe that hangs longer than its timeout, or a stalled loop,
	// makes the last success stale.
	m := r.cfg.Metrics
	if age := time.Since(r.probeOK); age > 2*m.ProbeInterval+m.ProbeTimeout {
		return fmt.Errorf("last successful upstream probe %v ago", age.Round(time.Second))
	}
	return nil
}

// probeLoop probes the current Proxy's upstream now and then at the
// configured interval, until Drain.
func (r *Runner) probeLoop() {
	for {
		r.mu.Lock()
		p, m := r.cur, r.cfg.Metrics
		r.mu.Unlock()

		ctx, cancel := context.WithTimeout(r.stopped, m.ProbeTimeout)
		results, err := p.probe(ctx)
		cancel()
		if r.stopped.Err() != nil {
			return
		}
		r.probeDone(err)
		if r.opts.OnProbe != nil {
			r.opts.OnProbe(results)
		}

		select {
		case <-r.stopped.Done():
			return
		case <-time.After(m.ProbeInterval):
		}
	}
}

func (r *Runner) probeDone(err error) {
	r.mu.Lock()
	was, first := r.probeErr, !r.probed
	r.probed = true
	r.probeErr = err
	if err == nil {
		r.probeOK = time.Now()
	}
	r.mu.Unlock()
	switch {
	case err != nil && (was == nil || first):
		r.log.Warn("upstream probe failed: not ready", "err", err)
	case err == nil && (was != nil || first):
		r.log.Info("upstream probe succeeded: ready")
	}
}
