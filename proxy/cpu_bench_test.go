package proxy

// The processor time popbridge spends per retrieved message, measured
// apart from its client: the client (popbench) runs as a process of its
// own, so the benchmark's process time is popbridge's alone.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
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
	m := metrics.New("bench")
	addr := startProxy(b, d.IMAPAddr, proxyOptions{noLogs: true, hooks: Hooks{POP3: m.POP3(), Upstream: m.Upstream()}}).addr
	bin := filepath.Join(b.TempDir(), "popbench")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/popbench").CombinedOutput(); err != nil {
		b.Fatalf("building popbench: %v\n%s", err, out)
	}
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
	for b.Loop() {
		start := selfCPU(b)
		client()
		cpu += selfCPU(b) - start
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-us/msg")
}

// selfCPU is the processor time of this process so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
