package imapback

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// replayStream serves src in reads of at most size octets, copying it
// into each read as a socket would.
type replayStream struct {
	net.Conn
	src  []byte
	off  int
	size int
}

func (c *replayStream) Read(p []byte) (int, error) {
	if c.off == len(c.src) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.src[c.off:])
	c.off += n
	return n, nil
}

// benchRead reads stream b.N times, in reads of size octets into one
// buffer, straight or through a boundedConn: the difference is the
// scanner's cost.
func benchRead(b *testing.B, stream []byte, size int) {
	buf := make([]byte, size)
	for _, bounded := range []bool{false, true} {
		b.Run(fmt.Sprintf("bounded=%v", bounded), func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for range b.N {
				src := &replayStream{src: stream, size: size}
				var r io.Reader = src
				if bounded {
					bc := newBoundedConn(src, ResponseLimits{})
					bc.Expect(Expectation{Responses: 20_000})
					r = bc
				}
				for {
					_, err := r.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// A 10 MiB body literal, read as the session reads a chunk: through
// bufio, whose reads of a large buffer go straight to the connection.
func BenchmarkBoundedConnBody(b *testing.B) {
	const size = 10 << 20
	stream := "* 1 FETCH (UID 1 BODY[]<0> {" + fmt.Sprint(size) + "}\r\n" +
		strings.Repeat(strings.Repeat("x", 78)+"\r\n", size/80) + strings.Repeat("y", size%80) + ")\r\nA1 OK done\r\n"
	benchRead(b, []byte(stream), 64<<10)
}

// 10,000 FETCH responses of a snapshot, read as bufio reads them: 4 KiB
// at a time.
func BenchmarkBoundedConnFetchLines(b *testing.B) {
	var sb strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&sb, "* %d FETCH (UID %d RFC822.SIZE %d)\r\n", i+1, 1000+i, 2000+i*37)
	}
	sb.WriteString("A1 OK done\r\n")
	benchRead(b, []byte(sb.String()), 4096)
}
