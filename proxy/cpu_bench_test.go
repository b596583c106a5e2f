package proxy

// The processor time popbridge spends per retrieved message, measured
// apart from its client: the client (popbench) runs as a process of its
// own, so the benchmark's process time is popbridge's alone.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/benchrig"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/popbench"
	"github.com/popbridge/popbridge/metrics"
)

// RETR of every message of a mailbox of 4 KiB messages in Dovecot by one
// client that keeps 32 commands in flight, as the rig's "pipelining 32"
// row does, with the binary's metrics: cpu-us/msg is popbridge's
// processor time per message (the benchmark process holds popbridge and
// nothing else that runs meanwhile), the figure to cut on that row.
func BenchmarkRetrPipelinedProcessCPU(b *testing.B) {
	const n, size = 4096, 4 << 10
	d := dovecottest.Start(b, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
	for i := range n {
		m := []byte(fmt.Sprintf("Subject: %d\r\n\r\n", i))
		for len(m) < size {
			m = append(m, strings.Repeat("x", 76)+"\r\n"...)
		}
		d.Deliver(b, "alice", m)
	}
	addr, bin := benchProxyAndClient(b, d)
	client := func() {
		out, err := exec.Command(bin, "-addr", addr, "-user", "alice", "-pass", "secret",
			"-mode", "retr-all", "-pipeline", "32").CombinedOutput()
		if err != nil {
			b.Fatalf("popbench: %v\n%s", err, out)
		}
	}
	client() // Dovecot builds its index
	b.SetBytes(n * size)
	var cpu time.Duration
	var reads, writes int64
	for b.Loop() {
		start, r, w := selfCPU(b), selfIO(b, "syscr"), selfIO(b, "syscw")
		client()
		cpu += selfCPU(b) - start
		reads += selfIO(b, "syscr") - r
		writes += selfIO(b, "syscw") - w
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-us/msg")
	b.ReportMetric(float64(reads)/float64(b.N*n), "reads/msg")
	b.ReportMetric(float64(writes)/float64(b.N*n), "writes/msg")
}

// selfIO is a counter of /proc/self/io: syscr or syscw, the read and
// write system calls of this process so far.
func selfIO(b *testing.B, name string) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/self/io", name)
	return 0
}

// selfCPU is the processor time of this process so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The rig's "mixed profile" row seen from popbridge: 8 sessions at once,
// each logging in, listing, and then fetching random tenths of a mailbox
// of 1,000 messages (90% 4 KiB, 9% 100 KiB, 1% 2 MiB) whole (RETR) and
// in part (TOP), every one an upstream FETCH of its own. cpu-us/msg is
// popbridge's processor time per RETR or TOP.
func BenchmarkMixedProcessCPU(b *testing.B) {
	const n, sessions = 1000, 8
	d := dovecottest.Start(b, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
	for i := range n {
		m := []byte(fmt.Sprintf("Subject: %d\r\n\r\n", i))
		for size := benchrig.MixedSize(i); len(m) < size; {
			m = append(m, "."+strings.Repeat("x", 75)+"\r\n"...)
		}
		d.Deliver(b, "alice", m)
	}
	addr, bin := benchProxyAndClient(b, d)
	client := func() int64 {
		out, err := exec.Command(bin, "-addr", addr, "-user", "alice", "-pass", "secret",
			"-mode", "mixed", "-c", strconv.Itoa(sessions), "-n", strconv.Itoa(sessions), "-json", "-").Output()
		if err != nil {
			b.Fatalf("popbench: %v\n%s", err, out)
		}
		var r popbench.Report
		if err := json.Unmarshal(out[bytes.IndexByte(out, '{'):], &r); err != nil || r.Errors > 0 {
			b.Fatalf("popbench: %v, %d errors %q", err, r.Errors, r.ErrorSamples)
		}
		return r.Latency["RETR"].Count + r.Latency["TOP"].Count
	}
	client() // Dovecot builds its index
	var cpu time.Duration
	var msgs int64
	for b.Loop() {
		start := selfCPU(b)
		msgs += client()
		cpu += selfCPU(b) - start
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(msgs), "cpu-us/msg")
}

// benchProxyAndClient starts popbridge, with metrics as the binary runs
// them, in front of d, and builds popbench to run as a process of its
// own: its address and the client's path.
func benchProxyAndClient(b *testing.B, d *dovecottest.Server) (addr, bin string) {
	m := metrics.New("bench")
	addr = startProxy(b, d.IMAPAddr, proxyOptions{noLogs: true, hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()}}).addr
	bin = filepath.Join(b.TempDir(), "popbench")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/popbench").CombinedOutput(); err != nil {
		b.Fatalf("building popbench: %v\n%s", err, out)
	}
	return addr, bin
}
