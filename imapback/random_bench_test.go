package imapback

// The mixed profile of BENCHMARKS.md seen from the backend: a client that
// checks for new mail asks for a random tenth of the messages whole (RETR,
// each then marked \Seen) and another tenth's top (TOP), in mailbox order
// but never two neighbours in a row on purpose. Every one of them costs an
// upstream round trip; this measures popbridge's own work around it.

import (
	"context"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/benchrig"
	"github.com/popbridge/popbridge/internal/dovecottest"
)

func BenchmarkRetrieveRandom(b *testing.B) {
	const n = 1000
	d := dovecottest.Start(b, dovecottest.Options{})
	for i := range n {
		d.Deliver(b, "alice", message(benchrig.MixedSize(i)))
	}
	s := login(b, benchBackend(b, d.IMAPAddr, 0))
	top := make([]byte, 4<<10) // about a header and ten lines
	b.ReportAllocs()
	rng := rand.New(rand.NewPCG(1, 2))
	var got int
	cpu0 := processCPU(b)
	for b.Loop() {
		for i := range n {
			lines := -1
			switch rng.IntN(10) {
			case 0:
			case 1:
				lines = 10
			default:
				continue
			}
			rc, err := s.Retrieve(context.Background(), i, lines)
			if err != nil {
				b.Fatal(err)
			}
			if lines < 0 {
				_, err = io.Copy(io.Discard, rc)
			} else {
				_, err = io.ReadFull(rc, top)
			}
			if err != nil {
				b.Fatal(err)
			}
			rc.Close()
			if lines < 0 {
				s.Retrieved(i)
			}
			got++
		}
	}
	b.ReportMetric(float64(got)/float64(b.N), "msgs/op")
	// Wall time is mostly the upstream's; this is popbridge's own work.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(got), "cpu-µs/msg")
}

// processCPU is the processor time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
