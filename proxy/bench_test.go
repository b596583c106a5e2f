package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/popbench"
)

// benchProxy runs popbridge in front of addr with logs discarded.
func benchProxy(b *testing.B, addr string) string {
	noDelay := time.Duration(0)
	cfg := &Config{
		Listen:   []ListenConfig{{Address: "127.0.0.1:0"}},
		Upstream: UpstreamConfig{Address: addr, TLS: "none"},
		Limits:   LimitsConfig{AuthFailureDelay: &noDelay},
	}
	if err := cfg.Check(); err != nil {
		b.Fatal(err)
	}
	p, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); p.Serve() }()
	b.Cleanup(func() { p.Close(); <-done })
	return p.Addrs()[0].String()
}

// RETR of every message of a Dovecot mailbox through popbridge, by a
// client that sends one command at a time (popbench's retr-all profile,
// which also checks every message): the whole path, for profiling with
// -cpuprofile. BENCHMARKS.md has the comparison with Dovecot's own POP3.
func BenchmarkRetrAllFromDovecot(b *testing.B) {
	for _, size := range []int{4 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			n := (8 << 20) / size
			d := dovecottest.Start(b, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
			var msgs [][]byte
			for i := range n {
				m := []byte(fmt.Sprintf("Subject: %d\r\n\r\n", i))
				for len(m) < size {
					m = append(m, strings.Repeat("x", 76)+"\r\n"...)
				}
				msgs = append(msgs, m)
				d.Deliver(b, "alice", m)
			}
			opts := popbench.Options{
				Addr: benchProxy(b, d.IMAPAddr), Users: []popbench.Credentials{{User: "alice", Pass: "secret"}},
				Mode: popbench.ModeRetrAll, Expect: popbench.NewExpected(msgs),
			}
			if _, err := popbench.Run(context.Background(), opts); err != nil { // warm Dovecot's index
				b.Fatal(err)
			}
			var bytes int64
			for _, m := range msgs {
				bytes += int64(len(m))
			}
			b.SetBytes(bytes)
			for b.Loop() {
				rep, err := popbench.Run(context.Background(), opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := rep.Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
