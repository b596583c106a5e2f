package pop3front

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchMessage is a message of about size octets in typical 78-character
// lines, every tenth starting with a dot; lf uses bare LFs.
func benchMessage(size int, lf bool) []byte {
	eol := "\r\n"
	if lf {
		eol = "\n"
	}
	var b bytes.Buffer
	b.WriteString("Subject: benchmark" + eol + eol)
	for i := 0; b.Len() < size; i++ {
		line := strings.Repeat("abcdefghij", 8)[:76]
		if i%10 == 0 {
			line = "." + line[1:]
		}
		b.WriteString(line + eol)
	}
	return b.Bytes()
}

// The dot-stuffing writer, fed in the 32 KiB pieces send uses.
func BenchmarkDotWriter(b *testing.B) {
	for _, tt := range []struct {
		name string
		lf   bool
	}{{"CRLF", false}, {"bareLF", true}} {
		b.Run(tt.name, func(b *testing.B) {
			msg := benchMessage(1<<20, tt.lf)
			bw := bufio.NewWriterSize(io.Discard, writeBufferSize)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				dw := newDotWriter(bw)
				for p := msg; len(p) > 0; {
					n := min(len(p), 32<<10)
					dw.Write(p[:n])
					p = p[n:]
				}
				dw.Close()
			}
		})
	}
}

// benchServer serves backend on 127.0.0.1 and returns a logged-in client
// connection with its reader.
func benchServer(b *testing.B, backend Backend) (net.Conn, *bufio.Reader) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &Server{Backend: backend, Logger: discardLogger()}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); <-done })
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReaderSize(nc, 64<<10)
	io.WriteString(nc, "USER alice\r\nPASS secret\r\n")
	for range 3 {
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			b.Fatalf("login: %q %v", line, err)
		}
	}
	return nc, br
}

// The command parser and dispatcher: a batch of pipelined one-line
// commands per round trip, so that the client's and the network's share
// stays small.
func BenchmarkPipelinedCommands(b *testing.B) {
	nc, br := benchServer(b, newFakeBackend())
	batch := strings.Repeat("STAT\r\nLIST 2\r\nUIDL 3\r\nNOOP\r\n", 25)
	const perBatch = 100
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		nc.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(nc, batch)
		for range perBatch {
			line, err := br.ReadSlice('\n')
			if err != nil || line[0] != '+' {
				b.Fatalf("%q %v", line, err)
			}
		}
		n += perBatch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/command")
}

// RETR through the front end from a backend that has the message in
// memory: the front end's share of a transfer. "writerto": the backend's
// reader is an io.WriterTo (as imapback's are), so the front end copies
// nothing itself.
func BenchmarkRetr(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, wt := range []bool{false, true} {
			name := byteSize(size)
			if wt {
				name += "/writerto"
			}
			b.Run(name, func(b *testing.B) {
				benchRetr(b, size, wt)
			})
		}
	}
}

func benchRetr(b *testing.B, size int, writerTo bool) {
	msg := benchMessage(size, false)
	fb := newFakeBackend().withBodies(string(msg))
	if writerTo {
		fb.readChunk, fb.writeWhole = -1, true
	}
	nc, br := benchServer(b, fb)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		nc.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(nc, "RETR 1\r\n")
		for {
			line, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			if len(line) == 3 && line[0] == '.' {
				break
			}
		}
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MiB"
	}
	return strconv.Itoa(n>>10) + "KiB"
}
