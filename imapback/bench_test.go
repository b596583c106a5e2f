package imapback

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
)

// benchUpstreams start an upstream holding n messages of size octets.
var benchUpstreams = []struct {
	name  string
	start func(b *testing.B, n, size int) string
}{
	{"memimap", func(b *testing.B, n, size int) string {
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = message(size)
		}
		return startMem(b, msgs...).Addr
	}},
	{"dovecot", func(b *testing.B, n, size int) string {
		d := dovecottest.Start(b, dovecottest.Options{})
		m := message(size)
		for range n {
			d.Deliver(b, "alice", m)
		}
		return d.IMAPAddr
	}},
}

// benchBackend returns a Backend with timeouts for large mailboxes, after
// one session: Dovecot builds its index on first access.
func benchBackend(b *testing.B, addr string, raBytes int) *Backend {
	be := newBackend(b, Options{Address: addr, ReadAheadBytes: raBytes, DialTimeout: 10 * time.Second, CommandTimeout: time.Minute})
	s, err := be.Login(context.Background(), alice, be.DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	return be
}

// Login and the snapshot (SELECT, UID FETCH 1:* (UID RFC822.SIZE)) of a
// large mailbox: what a client waits for before STAT.
func BenchmarkLoginSnapshot(b *testing.B) {
	for _, up := range benchUpstreams {
		for _, n := range []int{1000, 10000} {
			b.Run(up.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				be := benchBackend(b, up.start(b, n, 300), 0)
				b.ReportAllocs()
				for b.Loop() {
					s, err := be.Login(context.Background(), alice, be.DefaultPolicy())
					if err != nil {
						b.Fatal(err)
					}
					if len(s.Messages()) != n {
						b.Fatalf("%d messages, want %d", len(s.Messages()), n)
					}
					s.Close()
				}
			})
		}
	}
}

// Retrieving every message of a mailbox of small messages in order, as a
// client downloading its mail does, with and without read-ahead.
func BenchmarkRetrieveSequential(b *testing.B) {
	const n, size = 1000, 4 << 10
	for _, up := range benchUpstreams {
		for _, ra := range []struct {
			name  string
			bytes int
		}{{"readahead", 0}, {"one-by-one", -1}} {
			b.Run(up.name+"/"+ra.name, func(b *testing.B) {
				s := login(b, benchBackend(b, up.start(b, n, size), ra.bytes))
				b.SetBytes(n * size)
				b.ReportAllocs()
				for b.Loop() {
					for i := range n {
						rc, err := s.Retrieve(context.Background(), i, -1)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.Copy(io.Discard, rc); err != nil {
							b.Fatal(err)
						}
						rc.Close()
					}
				}
			})
		}
	}
}

// Retrieving large messages, fetched in ranges (ChunkSize, 1 MiB), by a
// consumer that takes 32 KiB at a time and spends some time on each (as
// the POP3 front end does, writing them to its client): with read-ahead
// the next range is fetched meanwhile, without it after.
func BenchmarkRetrieveLarge(b *testing.B) {
	const n, size = 4, 2 << 20
	for _, ra := range []struct {
		name  string
		bytes int
	}{{"readahead", 0}, {"one-by-one", -1}} {
		b.Run("dovecot/"+ra.name, func(b *testing.B) {
			s := login(b, benchBackend(b, benchUpstreams[1].start(b, n, size), ra.bytes))
			b.SetBytes(n * size)
			b.ReportAllocs()
			buf := make([]byte, 32<<10)
			sink := make([]byte, 32<<10)
			for b.Loop() {
				for i := range n {
					rc, err := s.Retrieve(context.Background(), i, -1)
					if err != nil {
						b.Fatal(err)
					}
					for {
						k, err := rc.Read(buf)
						for range 4 { // a stand-in for the client write
							copy(sink, buf[:k])
						}
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					rc.Close()
				}
			}
		})
	}
}
