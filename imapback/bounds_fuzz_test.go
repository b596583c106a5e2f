package imapback

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzBoundedConn feeds the scanner random response streams, cut into
// reads of a random size:
//   - it never panics, passes a prefix of the stream and fails only
//     with a *BoundError, at the same octet however the stream is cut;
//   - with bounds nothing can reach, it passes every stream whole;
//   - a well-formed stream built from the same input, whose literals
//     and responses are all within the bounds (bodies of any size),
//     passes whole.
func FuzzBoundedConn(f *testing.F) {
	for _, tc := range boundCases {
		if len(tc.stream) < 512 {
			f.Add([]byte(tc.stream), uint8(3))
		}
	}
	for _, s := range []string{
		"* 1 FETCH (BODY[] {3}\r\n{9}\r\n)\r\n* OK [X\n{5}] \"\r\n",
		"* 1 FETCH (UID 1 BODY[]<0> {40}\r\n" + strings.Repeat("b", 40) + ")\r\nA1 OK x\r\n",
		"* 2 FETCH (BINARY[1] ~{20}\r\n" + strings.Repeat("b", 20) + ")\r\n* LIST () \"/\" {17}\r\n" + strings.Repeat("l", 17) + "\r\n",
		"* 3 FETCH (BODY[HEADER.FIELDS ({4}\r\nFrom)] {50}\r\n" + strings.Repeat("b", 50) + ")\r\n",
		"+ {99}\r\n* SEARCH 1 2 3\r\n* 4 EXPUNGE\r\n* 5 EXPUNGE\r\n* 6 EXPUNGE\r\n* 7 EXPUNGE\r\n* 8 EXPUNGE\r\n",
	} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		chunk := 1 + int(cut)%64
		small := ResponseLimits{Literal: 16, Response: 64, Body: 48}
		exp := Expectation{Responses: 6, Octets: 300}
		got, err := readBounded(data, small, exp, chunk)
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("passed octets that are not the stream's")
		}
		var be *BoundError
		if err != nil && !errors.As(err, &be) {
			t.Fatalf("failed with %v, not a bound", err)
		}
		if err == nil && len(got) != len(data) {
			t.Fatalf("passed %d of %d octets without an error", len(got), len(data))
		}
		whole, werr := readBounded(data, small, exp, len(data)+1)
		if len(whole) != len(got) || fmt.Sprint(werr) != fmt.Sprint(err) {
			t.Fatalf("reads of %d: %d octets, %v; one read: %d octets, %v", chunk, len(got), err, len(whole), werr)
		}

		huge := ResponseLimits{Literal: 1<<63 - 1, Response: 1<<63 - 1}
		if got, err := readBounded(data, huge, Expectation{}, chunk); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("without reachable bounds: %d of %d octets, %v", len(got), len(data), err)
		}

		lim := ResponseLimits{Literal: 32, Response: 4096}
		stream := wellFormed(data, lim)
		if got, err := readBounded(stream, lim, Expectation{}, chunk); err != nil || !bytes.Equal(got, stream) {
			t.Fatalf("well-formed stream %q: %d of %d octets, %v", stream, len(got), len(stream), err)
		}
	})
}

// wellFormed builds a response stream from data: each octet picks a
// response, and the following octets fill its literals, quoted strings
// and text, whatever they are. Non-body literals stay within
// lim.Literal and each response within lim.Response.
func wellFormed(data []byte, lim ResponseLimits) []byte {
	var b bytes.Buffer
	take := func(n int) []byte {
		n = min(n, len(data))
		p := data[:n]
		data = data[n:]
		return p
	}
	size := func(max int) int {
		if len(data) == 0 {
			return 0
		}
		return int(take(1)[0]) % (max + 1)
	}
	for len(data) > 0 {
		op := take(1)[0]
		switch op % 9 {
		case 0:
			fmt.Fprintf(&b, "* %d EXISTS\r\n", op)
		case 1:
			fmt.Fprintf(&b, "* %d FETCH (UID %d RFC822.SIZE %d FLAGS (\\Seen $x))\r\n", op, op, op)
		case 2: // a body, larger than any other literal may be
			p := take(8 * size(255))
			fmt.Fprintf(&b, "* 1 FETCH (UID 1 BODY[]<%d> {%d}\r\n%s)\r\n", op, len(p), p)
		case 3:
			p := take(size(int(lim.Literal)))
			fmt.Fprintf(&b, "* 2 fetch (uid 2 binary[1] ~{%d}\r\n%s FLAGS ())\r\n", len(p), p)
		case 4:
			p := take(size(int(lim.Literal)))
			fmt.Fprintf(&b, "* LIST () \"/\" {%d}\r\n%s\r\n", len(p), p)
		case 5:
			fmt.Fprintf(&b, "* OK %s\r\n", text(take(size(200))))
		case 6:
			code := bytes.ReplaceAll(take(size(100)), []byte("]"), nil)
			fmt.Fprintf(&b, "A%d NO [X %s] %s\r\n", op, code, text(take(size(100))))
		case 7:
			q := take(size(200))
			q = bytes.ReplaceAll(q, []byte(`\`), []byte(`\\`))
			q = bytes.ReplaceAll(q, []byte(`"`), []byte(`\"`))
			fmt.Fprintf(&b, "* LIST (\\Noselect) \"/\" \"%s\"\r\n", q)
		case 8:
			fmt.Fprintf(&b, "+ %s\r\n", text(take(size(100))))
		}
	}
	return b.Bytes()
}

// text is p without line ends, as free text must be.
func text(p []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, p)
}
