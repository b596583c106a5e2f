package imapback

import (
	"bytes"
	"context"
	"fmt"
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
	benchBackendLogin(b, be)
	return be
}

// benchBackendLogin logs in to be once, before the measured logins.
func benchBackendLogin(b *testing.B, be *Backend) {
	s, err := be.Login(context.Background(), alice, be.DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
}

// Login and the snapshot (SELECT, UID FETCH 1:* (UID RFC822.SIZE)) of a
// large mailbox: what a client waits for before STAT.
func BenchmarkLoginSnapshot(b *testing.B) {
	for _, up := range benchUpstreams {
		for _, n := range []int{1000, 10000} {
			b.Run(up.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				benchLogins(b, benchBackend(b, up.start(b, n, 300), 0), n)
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

// A cold %m snapshot of 10,000 messages in Dovecot that makes the UIDLs
// at login (as retention needs them): sizes and headers of every
// message, each header hashed. The header is a typical one of mail
// delivered through two hops.
func BenchmarkLoginSnapshotHeaderHash(b *testing.B) {
	const n = 10000
	addr := typicalMailbox(b, n)
	be := newBackend(b, Options{Address: addr, DialTimeout: 10 * time.Second, CommandTimeout: time.Minute, UIDL: uidlFormat(b, "%m"), UIDLsAtLogin: true})
	benchLogins(b, be, n)
}

// The first UIDL of a cold %m session of 10,000 messages in Dovecot: the
// login fetches sizes alone, then LoadUIDLs fetches and hashes every
// header. What a POP3 client's first UIDL costs without a cache entry.
func BenchmarkLoadUIDLsHeaderHash(b *testing.B) {
	const n = 10000
	addr := typicalMailbox(b, n)
	be := newBackend(b, Options{Address: addr, DialTimeout: 10 * time.Second, CommandTimeout: time.Minute, UIDL: uidlFormat(b, "%m")})
	benchBackendLogin(b, be) // Dovecot builds its index and caches
	benchSessions(b, be, n, func(s *Session) {
		if err := s.LoadUIDLs(context.Background()); err != nil {
			b.Fatal(err)
		}
		if s.Messages()[n-1].UIDL == "" {
			b.Fatal("no UIDL after LoadUIDLs")
		}
	})
}

// A warm login of 10,000 messages in Dovecot, nothing changed since the
// last: the snapshot comes from the cache, the upstream only names the
// UIDs in the mailbox. With the default UIDL format and with %m.
func BenchmarkLoginSnapshotWarm(b *testing.B) {
	const n = 10000
	addr := typicalMailbox(b, n)
	for _, format := range []string{"default", "%m"} {
		b.Run(format, func(b *testing.B) {
			if format == "default" {
				format = "%08Xu%08Xv"
			}
			be := newBackend(b, Options{Address: addr, DialTimeout: 10 * time.Second, CommandTimeout: time.Minute,
				UIDL: uidlFormat(b, format), SnapshotCache: NewSnapshotCache(DefaultSnapshotCacheBytes)})
			benchBackendLogin(b, be) // fills the cache
			benchLogins(b, be, n)
		})
	}
}

// benchLogins measures logins to be, whose snapshot must hold n messages.
// Beside the time, it reports the processor time popbridge spent per
// login (the upstream's is not counted): on the critical path of a
// session too, and what the wall time of a local upstream hides.
func benchLogins(b *testing.B, be *Backend, n int) { benchSessions(b, be, n, nil) }

// benchSessions is benchLogins with then, if not nil, run in each
// session after its login.
func benchSessions(b *testing.B, be *Backend, n int, then func(*Session)) {
	b.ReportAllocs()
	start := processCPU(b)
	defer func() {
		b.ReportMetric(float64((processCPU(b)-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}()
	for b.Loop() {
		s, err := be.Login(context.Background(), alice, be.DefaultPolicy())
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Messages()) != n {
			b.Fatalf("%d messages, want %d", len(s.Messages()), n)
		}
		if then != nil {
			then(s)
		}
		s.Close()
	}
}

// typicalMailbox starts Dovecot with n typical messages for alice and
// returns its IMAP address.
func typicalMailbox(b *testing.B, n int) string {
	d := dovecottest.Start(b, dovecottest.Options{})
	for i := range n {
		d.Deliver(b, "alice", typicalMessage(i))
	}
	return d.IMAPAddr
}

// typicalMessage is message i with a header of about 1 KiB.
func typicalMessage(i int) []byte {
	return fmt.Appendf(nil, "Return-Path: <sender@example.org>\r\n"+
		"Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby mail.example.com with ESMTPS id %d\r\n\tfor <alice@example.com>; Sat, 5 Dec 2026 10:00:00 +0000\r\n"+
		"Received: from client.example.org (client.example.org [192.0.2.7])\r\n\tby mx.example.org with ESMTPSA id %d; Sat, 5 Dec 2026 09:59:59 +0000\r\n"+
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\tb=dGVzdGluZyB0ZXN0aW5nIHRlc3RpbmcgdGVzdGluZyB0ZXN0aW5nIHRlc3Rpbmc=\r\n"+
		"From: Sender <sender@example.org>\r\nTo: Alice <alice@example.com>\r\n"+
		"Subject: Report number %d\r\nDate: Sat, 5 Dec 2026 09:59:58 +0000\r\n"+
		"Message-ID: <%d.report@example.org>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+
		"The body of message %d.\r\n", i, i, i, i, i)
}

// Hashing the headers of typical messages in memory, as the header FETCH
// of a %m snapshot does with each header it reads: the hash alone.
func BenchmarkHeaderHash(b *testing.B) {
	headers := make([][]byte, 1000)
	for i := range headers {
		m := typicalMessage(i)
		headers[i] = m[:bytes.Index(m, []byte("\r\n\r\n"))+4]
	}
	hh := headerHashers.Get().(*headerHasher)
	defer headerHashers.Put(hh)
	b.ReportAllocs()
	for b.Loop() {
		for _, h := range headers {
			hh.hashBytes(h)
		}
	}
}
