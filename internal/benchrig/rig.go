// Package benchrig is the reproducible comparison behind BENCHMARKS.md. It
// starts a private Dovecot (IMAP and its native POP3 over one maildir per
// user), fills the mailboxes, starts popbridge (the binary) in front of
// Dovecot's IMAP and a second Dovecot as POP3-over-IMAP gateway (imapc) in
// front of the same IMAP, and measures the three POP3 servers with
// popbench, alternating the targets within each round and repeating
// rounds, so that every figure is a ratio to Dovecot's native POP3
// measured moments before or after it. It also measures popbridge's
// memory: RSS per idle session and RSS growth while a 100 MiB message
// streams. It needs root (Dovecot switches to the mail user).
package benchrig

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/popbench"
)

// Config configures Run.
type Config struct {
	// Dir holds the instances and mail (default: a new temp dir, removed
	// afterwards).
	Dir string
	// Popbridge is the binary to measure; "" builds ./cmd/popbridge.
	Popbridge string
	// Baseline, if set, is another popbridge binary measured as a fourth
	// target (Baseline), e.g. a build of the previous commit, so that a
	// change is compared with what it changes in the same rounds.
	Baseline string
	// Rounds is how often each scenario runs per target (default 3).
	Rounds int
	// Small is the size of the many-small-messages mailbox (default
	// 10,000) and Mixed that of the mixed one (default 1,000).
	Small, Mixed int
	// IdleSessions is how many idle sessions the memory measurement
	// opens (default 10,000; 0 after defaults means skip: set -1).
	IdleSessions int
	// HugeSize is the size of the message of the streaming-memory figure
	// (default 100 MiB).
	HugeSize int
	// Only, if set, runs only the scenarios whose name contains it.
	Only string
	// Log receives progress and the result table.
	Log io.Writer
}

// Result is one scenario's figures.
type Result struct {
	Scenario string `json:"scenario"`
	Metric   string `json:"metric"`
	// Values maps a target to its metric per round.
	Values map[string][]float64 `json:"values"`
	// Ratios maps a target to metric/native per round.
	Ratios map[string][]float64 `json:"ratios"`
	// Reports are the raw popbench reports, per round and target.
	Reports []*popbench.Report `json:"reports"`
	// CPU maps a target to its processor time per round (cpu.go).
	CPU map[string][]CPU `json:"cpu_ms"`
}

// Results is everything Run measured.
type Results struct {
	Machine  string    `json:"machine"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Rounds   int       `json:"rounds"`
	Results  []*Result `json:"results"`
	Memory   *Memory   `json:"memory,omitempty"`
	Commands []string  `json:"commands"`
}

// Targets, in the order of the first round.
const (
	Native    = "dovecot-pop3"
	Popbridge = "popbridge"
	Gateway   = "dovecot-imapc"
	// Baseline is Config.Baseline's popbridge.
	Baseline = "popbridge-baseline"
)

var targets = []string{Native, Popbridge, Gateway}

const password = "benchpass"

// scenario is one measurement, run against every target each round.
type scenario struct {
	name   string
	user   string
	mode   popbench.Mode
	conc   int
	n      int // sessions per run; gatewayN for the gateway, which is slow
	gwN    int
	pipe   int
	metric string // "MB/s", "sessions/s", "login+STAT p50 ms", "session p50 ms"
	// instance, if set, names the popbridge of cacheInstances that is
	// the popbridge target; only Dovecot's POP3 runs beside it.
	instance string
}

func (s scenario) value(r *popbench.Report) float64 {
	switch s.metric {
	case "MB/s":
		return r.MBPerSec
	case "sessions/s":
		return r.SessionsPerSec
	case "commands/s":
		return r.CommandsPerSec
	case "session p50 ms":
		return r.Latency["session"].P50
	}
	return r.Latency["login+STAT"].P50
}

// Run runs the whole benchmark.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Small <= 0 {
		cfg.Small = 10000
	}
	if cfg.Mixed <= 0 {
		cfg.Mixed = 1000
	}
	if cfg.HugeSize <= 0 {
		cfg.HugeSize = 100 << 20
	}
	if cfg.IdleSessions == 0 {
		cfg.IdleSessions = 10000
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, format+"\n", args...) }
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "popbench-rig-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	// Dovecot's processes must reach the homes.
	if err := os.Chmod(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	res := &Results{Machine: machine(), Started: time.Now(), Rounds: cfg.Rounds}
	start := time.Now()

	if cfg.Popbridge == "" {
		cfg.Popbridge = filepath.Join(cfg.Dir, "popbridge")
		logf("building popbridge")
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.Popbridge, "./cmd/popbridge")
		build.Stdout, build.Stderr = cfg.Log, cfg.Log
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/popbridge (run the rig from the repository root, or pass -popbridge): %w", err)
		}
	}

	users := map[string]string{"mixed": password, "small": password, "huge": password}
	store, err := startDovecot(filepath.Join(cfg.Dir, "store"), users, "")
	if err != nil {
		return nil, err
	}
	defer store.proc.Stop()

	logf("filling mailboxes: %d mixed messages, %d small ones, one of %d MiB", cfg.Mixed, cfg.Small, cfg.HugeSize>>20)
	expect := map[string]*popbench.Expected{}
	fill := func(user string, n int, size func(i int) int) error {
		e := &popbench.Expected{}
		for i := range n {
			m := message(user, i, size(i))
			if err := store.deliver(user, m); err != nil {
				return err
			}
			e.Add(int64(len(m)), digest(m))
		}
		expect[user] = e
		return nil
	}
	if err := fill("mixed", cfg.Mixed, MixedSize); err != nil {
		return nil, err
	}
	if err := fill("small", cfg.Small, func(int) int { return 4 << 10 }); err != nil {
		return nil, err
	}
	if err := fill("huge", 1, func(int) int { return cfg.HugeSize }); err != nil {
		return nil, err
	}

	gw, err := startDovecot(filepath.Join(cfg.Dir, "gateway"), nil, store.imapAddr)
	if err != nil {
		return nil, err
	}
	defer gw.proc.Stop()
	pb, err := startPopbridge(ctx, cfg.Popbridge, store.imapAddr, filepath.Join(cfg.Dir, "popbridge.log"))
	if err != nil {
		return nil, err
	}
	defer pb.Kill()
	addrs := map[string]string{Native: store.pop3Addr, Popbridge: pb.addr, Gateway: gw.pop3Addr}
	meter := &cpuMeter{store: store.proc.Pid(), front: map[string]int{Popbridge: pb.Pid(), Gateway: gw.proc.Pid()}}
	targets := targets
	if cfg.Baseline != "" {
		base, err := startPopbridge(ctx, cfg.Baseline, store.imapAddr, filepath.Join(cfg.Dir, "baseline.log"))
		if err != nil {
			return nil, err
		}
		defer base.Kill()
		addrs[Baseline] = base.addr
		meter.front[Baseline] = base.Pid()
		targets = append(slices.Clone(targets), Baseline)
	}
	res.Commands = []string{
		fmt.Sprintf("%s -listen %s -upstream %s -upstream-tls none -log-level warn", cfg.Popbridge, pb.addr, store.imapAddr),
	}

	// Warm-up: Dovecot builds its index (and caches sizes) on first access.
	for _, t := range targets {
		for _, u := range []string{"mixed", "small"} {
			logf("warming up %s for %s", t, u)
			rep, err := popbench.Run(ctx, popbench.Options{Addr: addrs[t], Users: []popbench.Credentials{{User: u, Pass: password}}, Mode: popbench.ModeUIDL, Timeout: 5 * time.Minute})
			if err != nil {
				return nil, err
			}
			if err := rep.Err(); err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w", t, err)
			}
		}
	}

	small := fmt.Sprintf("%d small", cfg.Small)
	mixed := fmt.Sprintf("%d mixed", cfg.Mixed)
	scenarios := []scenario{
		{name: "login+STAT, " + small, user: "small", mode: popbench.ModeStat, conc: 1, n: 20, gwN: 3, metric: "login+STAT p50 ms"},
		// One pass over the mixed mailbox takes a fifth of a second, too
		// short to measure alone on a shared machine: the session runs
		// five times in a row (eight sessions, three times each).
		{name: "RETR all, " + mixed + ", 1 session", user: "mixed", mode: popbench.ModeRetrAll, conc: 1, n: 5, gwN: 1, metric: "MB/s"},
		{name: "RETR all, " + mixed + ", 8 sessions", user: "mixed", mode: popbench.ModeRetrAll, conc: 8, n: 24, gwN: 8, metric: "MB/s"},
		{name: "RETR all, " + small + ", 1 session, no pipelining", user: "small", mode: popbench.ModeRetrAll, conc: 1, n: 1, gwN: 1, metric: "MB/s"},
		{name: "RETR all, " + small + ", 1 session, pipelining 32", user: "small", mode: popbench.ModeRetrAll, conc: 1, n: 1, gwN: 1, pipe: 32, metric: "MB/s"},
		{name: "mixed profile, " + mixed + ", 8 sessions", user: "mixed", mode: popbench.ModeMixed, conc: 8, n: 32, gwN: 8, metric: "sessions/s"},
	}
	scenarios = append(scenarios, cacheScenarios(small)...)
	instances, stopInstances, err := startCacheInstances(ctx, cfg, scenarios, store.imapAddr, "small")
	if err != nil {
		return nil, err
	}
	defer stopInstances()
	for _, sc := range scenarios {
		if cfg.Only != "" && !strings.Contains(sc.name, cfg.Only) {
			continue
		}
		r := &Result{Scenario: sc.name, Metric: sc.metric, Values: map[string][]float64{}, Ratios: map[string][]float64{}, CPU: map[string][]CPU{}}
		for round := range cfg.Rounds {
			// Rotate the order so that no target always runs first
			// (cold) or right after the heaviest one.
			order := append(slices.Clone(targets[round%len(targets):]), targets[:round%len(targets)]...)
			vals := map[string]float64{}
			for _, t := range order {
				n, addr := sc.n, addrs[t]
				if t == Gateway {
					n = sc.gwN
				}
				meterKey := t
				if sc.instance != "" && t == Popbridge {
					// The instance's own process, not the default one.
					p := instances[sc.instance]
					addr, meterKey = p.addr, "instance "+sc.instance
					meter.front[meterKey] = p.Pid()
				} else if sc.instance != "" && t != Native {
					continue
				}
				cpu := meter.start(meterKey)
				rep, err := popbench.Run(ctx, popbench.Options{
					Addr: addr, Users: []popbench.Credentials{{User: sc.user, Pass: password}}, Mode: sc.mode,
					Concurrency: sc.conc, Sessions: n, Pipeline: sc.pipe, Expect: expect[sc.user],
					Timeout: 5 * time.Minute, Label: t, Seed: uint64(round + 1),
				})
				if err != nil {
					return nil, err
				}
				if err := rep.Err(); err != nil {
					return nil, fmt.Errorf("%s on %s: %w", sc.name, t, err)
				}
				vals[t] = sc.value(rep)
				r.CPU[t] = append(r.CPU[t], cpu(rep))
				r.Reports = append(r.Reports, rep)
				logf("round %d  %-50s %-14s %10.2f %s", round+1, sc.name, t, vals[t], sc.metric)
			}
			for _, t := range targets {
				if _, ok := vals[t]; !ok {
					continue
				}
				r.Values[t] = append(r.Values[t], vals[t])
				r.Ratios[t] = append(r.Ratios[t], vals[t]/vals[Native])
			}
		}
		res.Results = append(res.Results, r)
	}
	pb.Kill()
	res.WriteBaseline(cfg.Log)

	if cfg.Only == "" || strings.Contains("memory", cfg.Only) {
		mem, err := measureMemory(ctx, cfg, store.imapAddr, expect["huge"], logf)
		if err != nil {
			return nil, err
		}
		res.Memory = mem
	}
	res.Seconds = time.Since(start).Seconds()
	res.WriteMarkdown(cfg.Log)
	return res, nil
}

// MixedSize gives the mixed mailbox 90% messages of 4 KiB, 9% of 100 KiB
// and 1% of 2 MiB, spread evenly. Go benchmarks use it too, so that they
// measure the mailbox the rig does.
func MixedSize(i int) int {
	switch {
	case i%100 == 99:
		return 2 << 20
	case i%10 == 9:
		return 100 << 10
	}
	return 4 << 10
}

// message is a deterministic message of exactly size octets, CRLF line
// ends, with lines that start with a dot (which POP3 must stuff) and
// incompressible base-32 text (so nothing on the path gains from
// compression).
func message(user string, i, size int) []byte {
	m := fmt.Appendf(nil, "From: sender%d@example.org\r\nTo: %s@example.org\r\nSubject: benchmark message %d\r\nMessage-ID: <%d.%s@popbench>\r\nDate: Thu, 26 Nov 2026 08:00:00 +0000\r\n\r\n", i, user, i, i, user)
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	line := make([]byte, 78)
	raw := make([]byte, 78)
	for k := 0; len(m) < size; k++ {
		rand.Read(raw)
		for j := range line {
			line[j] = alphabet[raw[j]%32]
		}
		if k%20 == 3 {
			line[0] = '.'
		}
		m = append(m, line...)
		m = append(m, '\r', '\n')
	}
	m = m[:size-2]
	if m[len(m)-1] == '\r' {
		m[len(m)-1] = 'x'
	}
	return append(m, '\r', '\n')
}

func digest(m []byte) popbench.Digest { return sha256.Sum256(m) }

// rss reads a process's resident set (VmRSS) or its peak (VmHWM) in KiB.
func rss(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New(field + " not found")
}

// machine describes where the figures come from.
func machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		mem = strings.Join(strings.Fields(line)[1:], " ")
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	dv, _ := exec.Command("dovecot", "--version").Output()
	return fmt.Sprintf("%d CPUs (%s), %s RAM, Linux %s, %s, Dovecot %s",
		runtime.NumCPU(), cpu, mem, strings.TrimSpace(string(kernel)), runtime.Version(), strings.TrimSpace(string(dv)))
}

// median of a copy of v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteMarkdown prints the result tables.
func (r *Results) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\nMachine: %s\nRounds: %d, %.0f s in all\n\n", r.Machine, r.Rounds, r.Seconds)
	fmt.Fprintf(w, "| scenario | metric | Dovecot POP3 | popbridge | Dovecot imapc gateway | popbridge / native | gateway / native | ratio range (popbridge) |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.Results {
		pr := x.Ratios[Popbridge]
		fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %s | %.2f× | %s | %.2f–%.2f |\n", x.Scenario, x.Metric,
			median(x.Values[Native]), median(x.Values[Popbridge]), medianCell(x.Values[Gateway], ""),
			median(pr), medianCell(x.Ratios[Gateway], "×"), slices.Min(pr), slices.Max(pr))
	}
	r.WriteCPU(w)
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "\nMemory (popbridge binary): %d idle authenticated sessions: RSS %d KiB -> %d KiB, %.1f KiB per session; RETR of a %d MiB message: RSS %d KiB -> peak %d KiB (+%d KiB) in %.2f s\n",
			m.IdleSessions, m.IdleRSSBeforeKiB, m.IdleRSSAfterKiB, m.IdleKiBPerSession, m.HugeSize>>20,
			m.HugeRSSBeforeKiB, m.HugePeakKiB, m.HugePeakKiB-m.HugeRSSBeforeKiB, m.HugeSeconds)
	}
}

// WriteBaseline prints the baseline popbridge's figures next to the
// measured one's, if there is a baseline.
func (r *Results) WriteBaseline(w io.Writer) {
	for _, x := range r.Results {
		if br := x.Ratios[Baseline]; len(br) > 0 {
			pr := x.Ratios[Popbridge]
			fmt.Fprintf(w, "%-50s popbridge %.2f× (%.2f–%.2f), baseline %.2f× (%.2f–%.2f) of native\n", x.Scenario,
				median(pr), slices.Min(pr), slices.Max(pr), median(br), slices.Min(br), slices.Max(br))
		}
	}
}

// WriteJSON writes everything, raw reports included.
func (r *Results) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
