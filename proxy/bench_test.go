package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/benchrig"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/popbench"
)

// RETR of every message of a Dovecot mailbox through popbridge, by a
// client that sends one command at a time (popbench's retr-all profile,
// which also checks every message): the whole path, for profiling with
// -cpuprofile. The "native" runs retrieve the same mailbox from
// Dovecot's own POP3 server, the reference BENCHMARKS.md compares with;
// "mixed" is the rig's mixed mailbox (90% 4 KiB, 9% 100 KiB, 1% 2 MiB),
// a tenth of its size. "4KiB-pipelined" keeps 32 commands in flight, as
// the rig's pipelining scenario does.
func BenchmarkRetrAllFromDovecot(b *testing.B) {
	for _, mb := range []struct {
		name     string
		n        int
		size     func(i int) int
		pipeline int
	}{
		{"4KiB", 2048, func(int) int { return 4 << 10 }, 0},
		{"4KiB-pipelined", 2048, func(int) int { return 4 << 10 }, 32},
		{"100KiB", 81, func(int) int { return 100 << 10 }, 0},
		{"mixed", 100, benchrig.MixedSize, 0},
	} {
		d := dovecottest.Start(b, dovecottest.Options{Users: map[string]string{"alice": "secret"}, POP3: true})
		var msgs [][]byte
		var bytes int64
		for i := range mb.n {
			m := []byte(fmt.Sprintf("Subject: %d\r\n\r\n", i))
			for len(m) < mb.size(i) {
				m = append(m, strings.Repeat("x", 76)+"\r\n"...)
			}
			msgs = append(msgs, m)
			bytes += int64(len(m))
			d.Deliver(b, "alice", m)
		}
		for _, target := range []struct{ name, addr string }{
			{"popbridge", startProxy(b, d.IMAPAddr, proxyOptions{noLogs: true}).addr},
			{"native", d.POP3Addr},
		} {
			b.Run(mb.name+"/"+target.name, func(b *testing.B) {
				opts := popbench.Options{
					Addr: target.addr, Users: []popbench.Credentials{{User: "alice", Pass: "secret"}},
					Mode: popbench.ModeRetrAll, Expect: popbench.NewExpected(msgs), Pipeline: mb.pipeline,
				}
				if _, err := popbench.Run(context.Background(), opts); err != nil { // warm Dovecot's index
					b.Fatal(err)
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
}
