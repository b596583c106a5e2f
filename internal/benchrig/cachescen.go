package benchrig

// The snapshot cache's figures (BENCHMARKS.md, issue 17): repeated
// login+STAT on the large mailbox warm (the cache holds it: the default
// popbridge after its warm-up), cold, and both again with %m UIDLs, and
// a cold %m session that asks for the UIDLs (login, STAT, UIDL, QUIT). Each
// variant is a popbridge instance of its own, measured as the popbridge
// target of its scenario against Dovecot's POP3 in the same rounds
// (the gateway and the baseline are left out of these). A cold instance
// has a cache too small for the mailbox: every login takes the full
// snapshot and pays for trying to store it, as a login after a restart
// or an eviction does.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/popbridge/popbridge/internal/popbench"
)

// cacheInstances are the extra popbridge instances by name, each with
// the configuration it adds.
var cacheInstances = map[string]string{
	"cold":    "performance:\n  snapshot_cache_bytes: 1024\n",
	"%m":      "policy:\n  uidl_format: \"%m\"\n",
	"%m-cold": "policy:\n  uidl_format: \"%m\"\nperformance:\n  snapshot_cache_bytes: 1024\n",
}

// cacheScenarios are the login+STAT figures of the snapshot cache on the
// mailbox named small; the default instance's login+STAT scenario is
// the warm one with the default format.
func cacheScenarios(small string) []scenario {
	stat := func(name, instance string) scenario {
		return scenario{name: "login+STAT, " + small + ", " + name, user: "small", mode: popbench.ModeStat,
			conc: 1, n: 20, metric: "login+STAT p50 ms", instance: instance}
	}
	return []scenario{
		stat("cold cache", "cold"),
		stat("%m, warm cache", "%m"),
		stat("%m, cold cache", "%m-cold"),
		// A cold %m login reads no header until the client asks for the
		// UIDLs: what one that asks pays, until its QUIT is answered.
		{name: "login+UIDL, " + small + ", %m, cold cache", user: "small", mode: popbench.ModeUIDL,
			conc: 1, n: 20, metric: "session p50 ms", instance: "%m-cold"},
	}
}

// startCacheInstances starts the instances the scenarios that cfg.Only
// selects need, warms each up on user (a first login fills the cache and
// Dovecot's), and returns them by name; stop ends them.
func startCacheInstances(ctx context.Context, cfg Config, scenarios []scenario, upstream, user string) (running map[string]*popbridgeProc, stop func(), err error) {
	running = map[string]*popbridgeProc{}
	var procs []*popbridgeProc
	stop = func() {
		for _, p := range procs {
			p.Kill()
		}
	}
	for _, sc := range scenarios {
		if sc.instance == "" || running[sc.instance] != nil || cfg.Only != "" && !strings.Contains(sc.name, cfg.Only) {
			continue
		}
		name := strings.NewReplacer("%", "", "-", "_").Replace(sc.instance)
		p, err := startPopbridgeConf(ctx, cfg.Popbridge, upstream, filepath.Join(cfg.Dir, "popbridge-"+name+".log"), cacheInstances[sc.instance])
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("popbridge instance %s: %w", sc.instance, err)
		}
		procs = append(procs, p)
		running[sc.instance] = p
		rep, err := popbench.Run(ctx, popbench.Options{Addr: p.addr, Users: []popbench.Credentials{{User: user, Pass: password}}, Mode: popbench.ModeUIDL})
		if err == nil {
			err = rep.Err()
		}
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("warm-up of popbridge instance %s: %w", sc.instance, err)
		}
	}
	return running, stop, nil
}

// medianCell is a table cell with the median of v and unit, or a dash
// for a target the scenario did not measure.
func medianCell(v []float64, unit string) string {
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f%s", median(v), unit)
}
