// Package popbench is a POP3 load generator that checks what it gets: N
// concurrent sessions against one address, each logging in, running a
// profile of commands (optionally pipelined) and verifying every answer:
// LIST sizes against the octets RETR delivers, dot-stuffing, a SHA-256 of
// each message that must be the same in every session (and, if given, one
// of an expected set). It reports sessions/s, commands/s, MB/s and latency
// percentiles per command. cmd/popbench is its command line.
package popbench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is a command profile run in every session after login and STAT.
type Mode string

// Modes.
const (
	ModeStat    Mode = "stat"     // login, STAT, QUIT: the cost of a session and its snapshot
	ModeList    Mode = "list"     // ... LIST
	ModeUIDL    Mode = "uidl"     // ... UIDL
	ModeRetrAll Mode = "retr-all" // ... UIDL, LIST, RETR of every message
	ModeTop     Mode = "top"      // ... UIDL, LIST, TOP n TopLines of every message
	// ModeMixed is a client checking for new mail: UIDL, LIST, then RETR
	// of about a tenth of the messages and TOP of another tenth, chosen
	// at random (reproducibly, from Seed).
	ModeMixed Mode = "mixed"
)

// Modes lists every mode, for flag help.
var Modes = []Mode{ModeStat, ModeList, ModeUIDL, ModeRetrAll, ModeTop, ModeMixed}

// Credentials is one POP3 login.
type Credentials struct {
	User, Pass string
}

// Options configures Run.
type Options struct {
	// Addr is the POP3 server, host:port.
	Addr string
	// Users are cycled through, one per session. At least one.
	Users []Credentials
	// Mode is the command profile (default ModeStat).
	Mode Mode
	// Concurrency is the number of sessions open at a time (default 1).
	Concurrency int
	// Sessions is the total number of sessions to run. With Duration set
	// too, whichever ends first; with neither, Concurrency sessions.
	Sessions int
	// Duration stops starting new sessions after this long.
	Duration time.Duration
	// Pipeline is the number of commands in flight (RFC 2449 PIPELINING):
	// USER and PASS go in one write and the profile's commands are sent
	// ahead of their answers. 0 or 1: one command at a time.
	Pipeline int
	// TopLines is the line count of TOP (default 10).
	TopLines int
	// Expect, if set, is the mailbox every session must see.
	Expect *Expected
	// Timeout bounds each read and write (default 60s).
	Timeout time.Duration
	// Seed makes the mixed profile reproducible.
	Seed uint64
	// Label names the target in the report.
	Label string
}

// Expected is the content of the mailbox under test: STAT must report its
// count and total size, every RETR must deliver one of its messages, and a
// retr-all session exactly all of them.
type Expected struct {
	Count  int
	Size   int64
	digest map[Digest]int
}

// Digest is the SHA-256 of a message as the client stores it: the octets of
// a RETR with dot-stuffing undone, lines ending in CRLF.
type Digest [sha256.Size]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// NewExpected builds the expected set from messages as stored (with CRLF
// line ends, which is what RETR then delivers byte for byte).
func NewExpected(msgs [][]byte) *Expected {
	e := &Expected{digest: make(map[Digest]int)}
	for _, m := range msgs {
		e.Add(int64(len(m)), sha256.Sum256(m))
	}
	return e
}

// Add adds one message to the set.
func (e *Expected) Add(size int64, d Digest) {
	if e.digest == nil {
		e.digest = make(map[Digest]int)
	}
	e.Count++
	e.Size += size
	e.digest[d]++
}

// expectedFile is the JSON form of Expected.
type expectedFile struct {
	Messages []struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"messages"`
}

// LoadExpected reads an expected set from a JSON file of the form
// {"messages":[{"size":N,"sha256":"hex"},...]}.
func LoadExpected(path string) (*Expected, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f expectedFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	e := &Expected{}
	for i, m := range f.Messages {
		var d Digest
		if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != len(d) {
			return nil, fmt.Errorf("%s: message %d: bad sha256 %q", path, i, m.SHA256)
		} else {
			copy(d[:], b)
		}
		e.Add(m.Size, d)
	}
	return e, nil
}

// WriteExpected writes msgs as a file LoadExpected reads.
func WriteExpected(w io.Writer, msgs [][]byte) error {
	var f expectedFile
	for _, m := range msgs {
		d := sha256.Sum256(m)
		f.Messages = append(f.Messages, struct {
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		}{int64(len(m)), hex.EncodeToString(d[:])})
	}
	return json.NewEncoder(w).Encode(f)
}

// Report is the outcome of Run. Rates are per second of wall-clock time
// from the first connection to the end of the last session; MB are 10^6
// octets read from the server, status lines included.
type Report struct {
	Label          string                  `json:"label,omitempty"`
	Addr           string                  `json:"addr"`
	Mode           Mode                    `json:"mode"`
	Concurrency    int                     `json:"concurrency"`
	Pipeline       int                     `json:"pipeline"`
	Seconds        float64                 `json:"seconds"`
	Sessions       int64                   `json:"sessions"`
	Commands       int64                   `json:"commands"`
	Messages       int64                   `json:"messages"` // complete RETRs
	Bytes          int64                   `json:"bytes"`
	SessionsPerSec float64                 `json:"sessions_per_sec"`
	CommandsPerSec float64                 `json:"commands_per_sec"`
	MessagesPerSec float64                 `json:"messages_per_sec"`
	MBPerSec       float64                 `json:"mb_per_sec"`
	Errors         int64                   `json:"errors"`
	ErrorSamples   []string                `json:"error_samples,omitempty"`
	Latency        map[string]LatencyStats `json:"latency_ms"`
}

// LatencyStats summarises one command's latencies, in milliseconds. For a
// pipelined command the latency runs from queueing the command to the end
// of its answer.
type LatencyStats struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Err is nil when every session ran clean.
func (r *Report) Err() error {
	if r.Errors == 0 {
		return nil
	}
	return fmt.Errorf("popbench: %d errors, first: %s", r.Errors, strings.Join(r.ErrorSamples, "; "))
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	label := r.Label
	if label == "" {
		label = r.Addr
	}
	fmt.Fprintf(w, "%s: mode %s, %d concurrent, pipeline %d: %d sessions in %.2fs\n",
		label, r.Mode, r.Concurrency, r.Pipeline, r.Sessions, r.Seconds)
	fmt.Fprintf(w, "  %.1f sessions/s  %.1f commands/s  %.1f messages/s  %.2f MB/s  %d errors\n",
		r.SessionsPerSec, r.CommandsPerSec, r.MessagesPerSec, r.MBPerSec, r.Errors)
	names := make([]string, 0, len(r.Latency))
	for name := range r.Latency {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "  %-8s %8s %9s %9s %9s %9s\n", "ms", "count", "p50", "p95", "p99", "max")
	for _, name := range names {
		l := r.Latency[name]
		fmt.Fprintf(w, "  %-8s %8d %9.3f %9.3f %9.3f %9.3f\n", name, l.Count, l.P50, l.P95, l.P99, l.Max)
	}
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}

// maxErrorSamples bounds the errors kept verbatim in a report.
const maxErrorSamples = 5

// Run runs the sessions and reports. A session that fails a check counts
// as an error and the run goes on; Run's own error is for bad options or a
// cancelled ctx.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Addr == "" || len(opts.Users) == 0 {
		return nil, errors.New("popbench: need an address and at least one user")
	}
	if opts.Mode == "" {
		opts.Mode = ModeStat
	}
	if !slices.Contains(Modes, opts.Mode) {
		return nil, fmt.Errorf("popbench: unknown mode %q", opts.Mode)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Sessions <= 0 && opts.Duration <= 0 {
		opts.Sessions = opts.Concurrency
	}
	if opts.Pipeline <= 0 {
		opts.Pipeline = 1
	}
	if opts.TopLines < 0 {
		return nil, errors.New("popbench: negative TOP line count")
	}
	if opts.TopLines == 0 {
		opts.TopLines = 10
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}

	r := &runner{opts: opts, uidls: make(map[string]Digest)}
	var deadline time.Time
	start := time.Now()
	if opts.Duration > 0 {
		deadline = start.Add(opts.Duration)
	}
	var wg sync.WaitGroup
	recs := make([]*recorder, opts.Concurrency)
	for w := range opts.Concurrency {
		recs[w] = newRecorder()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := r.next.Add(1) - 1
				if opts.Sessions > 0 && k >= int64(opts.Sessions) {
					return
				}
				if !deadline.IsZero() && time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				u := opts.Users[int(k)%len(opts.Users)]
				rng := rand.New(rand.NewPCG(opts.Seed, uint64(k)))
				s := &session{r: r, rec: recs[w], user: u, rng: rng}
				if err := s.run(ctx); err != nil {
					r.fail(fmt.Errorf("session %d (%s): %w", k, u.User, err))
				} else {
					recs[w].sessions++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	rep := &Report{
		Label: opts.Label, Addr: opts.Addr, Mode: opts.Mode, Concurrency: opts.Concurrency,
		Pipeline: opts.Pipeline, Seconds: elapsed.Seconds(), Latency: make(map[string]LatencyStats),
	}
	all := make(map[string][]time.Duration)
	for _, rec := range recs {
		rep.Sessions += rec.sessions
		rep.Commands += rec.commands
		rep.Messages += rec.messages
		rep.Bytes += rec.bytes
		for name, ds := range rec.lat {
			all[name] = append(all[name], ds...)
		}
	}
	for name, ds := range all {
		rep.Latency[name] = summarize(ds)
	}
	r.mu.Lock()
	rep.Errors, rep.ErrorSamples = r.errors, r.samples
	r.mu.Unlock()
	if s := rep.Seconds; s > 0 {
		rep.SessionsPerSec = float64(rep.Sessions) / s
		rep.CommandsPerSec = float64(rep.Commands) / s
		rep.MessagesPerSec = float64(rep.Messages) / s
		rep.MBPerSec = float64(rep.Bytes) / 1e6 / s
	}
	return rep, nil
}

// runner is the state shared by all sessions of a run.
type runner struct {
	opts Options
	next atomic.Int64 // next session number

	mu      sync.Mutex
	errors  int64
	samples []string
	// uidls records each message's digest (and each TOP's, keyed with
	// its line count) the first time a session sees it: later sessions
	// must get the same bytes for the same unique-id.
	uidls map[string]Digest
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	if len(r.samples) < maxErrorSamples {
		r.samples = append(r.samples, err.Error())
	}
}

// consistent checks a digest against what earlier sessions saw for key.
func (r *runner) consistent(key string, d Digest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.uidls[key]; ok && prev != d {
		return fmt.Errorf("%s: content differs from an earlier session's (sha256 %s, earlier %s)", key, d, prev)
	} else if !ok {
		r.uidls[key] = d
	}
	return nil
}

// recorder holds one worker's counters, merged at the end of the run.
type recorder struct {
	sessions, commands, messages, bytes int64
	lat                                 map[string][]time.Duration
}

func newRecorder() *recorder { return &recorder{lat: make(map[string][]time.Duration)} }

func (r *recorder) observe(name string, d time.Duration) {
	r.lat[name] = append(r.lat[name], d)
}

func summarize(ds []time.Duration) LatencyStats {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	q := func(p float64) float64 {
		// Nearest rank: the smallest sample with at least p of all at or
		// below it.
		i := int(p*float64(len(ds))+0.999999) - 1
		return ms(ds[max(0, min(i, len(ds)-1))])
	}
	return LatencyStats{Count: int64(len(ds)), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ms(ds[len(ds)-1])}
}
