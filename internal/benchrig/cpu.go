package benchrig

// Processor time per retrieved message: what each server process spent
// while one target ran a scenario, read from /proc before and after the
// run. A target's throughput on a loaded machine follows the processor
// time it needs, so these figures say where a ratio below 1 comes from:
// popbridge's own work, or the Dovecot imap processes serving it, against
// Dovecot's pop3 processes serving the same messages natively.

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/internal/popbench"
)

// CPU is the processor time of one run, in milliseconds per message
// retrieved (RETR or TOP answered; per session when there were none).
type CPU struct {
	// Front is the process the client talks to, if it is not the store:
	// popbridge, or the gateway's Dovecot (its pop3 processes).
	Front float64 `json:"front_ms"`
	// Store is the store's Dovecot: its imap processes serving a
	// front, or its pop3 processes serving the client natively. Login
	// and auth processes count too.
	Store float64 `json:"store_ms"`
	// Per is "message" or "session".
	Per string `json:"per"`
}

// clockTicks is the unit of /proc/PID/stat's times: USER_HZ, 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// treeTicks is the processor time of process pid and its descendants,
// the exited ones (reaped into cutime and cstime) included.
func treeTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0 // gone meanwhile: its parent's cutime has it
	}
	// The fields after the command name, which may hold spaces, in ")".
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		if k < len(f) {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, c := range strings.Fields(string(children)) {
			if cp, err := strconv.Atoi(c); err == nil {
				ticks += treeTicks(cp)
			}
		}
	}
	return ticks
}

// cpuMeter measures the processes behind the targets: the store's
// Dovecot and, per target, the front process (0 for none).
type cpuMeter struct {
	store int
	front map[string]int
}

// start reads the times before target's run; the function it returns
// reads them after it and divides by what the report says was done.
func (m *cpuMeter) start(target string) func(*popbench.Report) CPU {
	front := m.front[target]
	f0, s0 := treeTicks(front), treeTicks(m.store)
	return func(rep *popbench.Report) CPU {
		f1, s1 := treeTicks(front), treeTicks(m.store)
		c := CPU{Per: "message"}
		n := rep.Latency["RETR"].Count + rep.Latency["TOP"].Count
		if n == 0 {
			c.Per, n = "session", rep.Sessions
		}
		if n == 0 {
			return c
		}
		ms := func(ticks int64) float64 { return float64(ticks) * 1000 / clockTicks / float64(n) }
		if front != 0 {
			c.Front = ms(f1 - f0)
		}
		c.Store = ms(s1 - s0)
		return c
	}
}

// WriteCPU prints the processor time per message of each target, the
// medians over the rounds.
func (r *Results) WriteCPU(w io.Writer) {
	fmt.Fprintf(w, "\nProcessor time, ms per retrieved message (RETR or TOP; per session where none), medians:\n\n")
	base := false
	for _, x := range r.Results {
		base = base || len(x.CPU[Baseline]) > 0
	}
	head, rule := "", ""
	if base {
		head, rule = " baseline popbridge + imap |", "---:|"
	}
	fmt.Fprintf(w, "| scenario | Dovecot POP3: pop3 | popbridge | + Dovecot imap | = popbridge in all | gateway: pop3 (imapc) + imap |%s\n", head)
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|%s\n", rule)
	for _, x := range r.Results {
		if len(x.CPU) == 0 {
			continue
		}
		// A target a scenario does not run (the cache's instances run
		// against native only) gets a dash, not a zero.
		med := func(target string, part func(CPU) float64) string {
			var v []float64
			for _, c := range x.CPU[target] {
				v = append(v, part(c))
			}
			if len(v) == 0 {
				return "–"
			}
			return fmt.Sprintf("%.3f", median(v))
		}
		front := func(c CPU) float64 { return c.Front }
		store := func(c CPU) float64 { return c.Store }
		both := func(c CPU) float64 { return c.Front + c.Store }
		per := ""
		if c := x.CPU[Native]; len(c) > 0 && c[0].Per != "message" {
			per = " (per " + c[0].Per + ")"
		}
		fmt.Fprintf(w, "| %s%s | %s | %s | %s | %s | %s |", x.Scenario, per,
			med(Native, store), med(Popbridge, front), med(Popbridge, store), med(Popbridge, both), med(Gateway, both))
		if base {
			fmt.Fprintf(w, " %s |", med(Baseline, both))
		}
		fmt.Fprintln(w)
	}
}
