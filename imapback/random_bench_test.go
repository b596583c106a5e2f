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
	"testing"

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
}
