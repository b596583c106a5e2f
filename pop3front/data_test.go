package pop3front

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"testing"
)

// dotStuff runs dotWriter over input, written in the given pieces, and
// returns everything it wrote, Close included.
func dotStuff(t testing.TB, pieces ...[]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16) // small: exercise flushes mid-line
	dw := newDotWriter(bw)
	for _, p := range pieces {
		n, err := dw.Write(p)
		if n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if err := dw.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// splits calls f with in cut at every boundary, at every pair of
// boundaries, and one byte at a time.
func splits(in []byte, f func(desc string, pieces ...[]byte)) {
	f("whole", in)
	for i := 0; i <= len(in); i++ {
		f("split at "+strconv.Itoa(i), in[:i], in[i:])
		for j := i; j <= len(in); j++ {
			f("split at "+strconv.Itoa(i)+","+strconv.Itoa(j), in[:i], in[i:j], in[j:])
		}
	}
	var bytewise [][]byte
	for i := range in {
		bytewise = append(bytewise, in[i:i+1])
	}
	f("bytewise", bytewise...)
}

var dotWriterTests = []struct {
	name string
	in   string
	want string
}{
	{"empty", "", ".\r\n"},
	{"one line", "abc\r\n", "abc\r\n.\r\n"},
	{"no final line end", "abc", "abc\r\n.\r\n"},
	{"bare LF", "a\nb\n", "a\r\nb\r\n.\r\n"},
	{"bare LF only", "\n", "\r\n.\r\n"},
	{"empty lines", "\r\n\n\r\n\n", "\r\n\r\n\r\n\r\n.\r\n"},
	{"dot line", ".\r\n", "..\r\n.\r\n"},
	{"dot line with bare LF", ".\n", "..\r\n.\r\n"},
	{"dot without line end", ".", "..\r\n.\r\n"},
	{"double dot", "..\r\n", "...\r\n.\r\n"},
	{"dot starts lines", "a\r\n.b\r\n..c\n.\r\n", "a\r\n..b\r\n...c\r\n..\r\n.\r\n"},
	{"dot inside lines", "a.b\r\n a.\r\n", "a.b\r\n a.\r\n.\r\n"},
	{"bare CR inside a line", "a\rb\r\n", "a\rb\r\n.\r\n"},
	{"bare CR before a dot", "a\r.b\r\n", "a\r.b\r\n.\r\n"},
	{"CR CR LF", "a\r\r\n", "a\r\r\n.\r\n"},
	{"trailing bare CR is data", "a\r", "a\r\r\n.\r\n"},
	{"lone CR", "\r", "\r\r\n.\r\n"},
	{"LF CR at the end", "a\n\r", "a\r\n\r\r\n.\r\n"},
	{"CR then dot at the end", "a\r\n\r.", "a\r\n\r.\r\n.\r\n"},
	{"LF CR LF", "\n\r\n", "\r\n\r\n.\r\n"},
	{"terminator-like data", "x\r\n.\r\n\r\n.\r\n", "x\r\n..\r\n\r\n..\r\n.\r\n"},
}

func TestDotWriterStuffsDotsAndNormalisesLineEnds(t *testing.T) {
	for _, tt := range dotWriterTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(dotStuff(t, []byte(tt.in))); got != tt.want {
				t.Errorf("dotWriter(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDotWriterOutputDoesNotDependOnHowInputIsSplit(t *testing.T) {
	for _, tt := range dotWriterTests {
		t.Run(tt.name, func(t *testing.T) {
			splits([]byte(tt.in), func(desc string, pieces ...[]byte) {
				if got := string(dotStuff(t, pieces...)); got != tt.want {
					t.Errorf("%s %q: got %q, want %q", desc, pieces, got, tt.want)
				}
			})
		})
	}
}

func TestDotWriterEmptyWritesChangeNothing(t *testing.T) {
	e := []byte{}
	got := string(dotStuff(t, e, []byte("a\r"), e, []byte("\n."), e, nil, []byte("x"), e))
	if want := "a\r\n..x\r\n.\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

type failWriter struct{ n int }

var errWrite = errors.New("write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errWrite
	}
	w.n -= len(p)
	return len(p), nil
}

func TestDotWriterReportsWriteErrors(t *testing.T) {
	bw := bufio.NewWriterSize(&failWriter{n: 20}, 16)
	dw := newDotWriter(bw)
	var err error
	for range 10 {
		if _, err = dw.Write([]byte("line\n")); err != nil {
			break
		}
	}
	if !errors.Is(err, errWrite) {
		t.Errorf("Write error = %v, want %v", err, errWrite)
	}
	if err := dw.Close(); !errors.Is(err, errWrite) {
		t.Errorf("Close error = %v, want %v", err, errWrite)
	}
}

// topCut runs a topCutter over the pieces and returns what it passes and
// whether it reported done.
func topCut(n int, pieces ...[]byte) (string, bool) {
	tc := topCutter{n: n}
	var out []byte
	for _, p := range pieces {
		out = append(out, tc.cut(p)...)
	}
	return string(out), tc.done
}

var topCutterTests = []struct {
	name     string
	in       string
	n        int
	want     string
	wantDone bool
}{
	{"header only, 0 lines", "A: 1\r\nB: 2\r\n", 0, "A: 1\r\nB: 2\r\n", false},
	{"0 lines", "A: 1\r\n\r\nx\r\ny\r\n", 0, "A: 1\r\n\r\n", true},
	{"1 line", "A: 1\r\n\r\nx\r\ny\r\n", 1, "A: 1\r\n\r\nx\r\n", true},
	{"all lines", "A: 1\r\n\r\nx\r\ny\r\n", 2, "A: 1\r\n\r\nx\r\ny\r\n", true},
	{"more lines than the body", "A: 1\r\n\r\nx\r\ny\r\n", 5, "A: 1\r\n\r\nx\r\ny\r\n", false},
	{"unterminated last line", "A: 1\r\n\r\nx\r\ny", 5, "A: 1\r\n\r\nx\r\ny", false},
	{"bare LF", "A: 1\nB: 2\n\nx\ny\nz\n", 2, "A: 1\nB: 2\n\nx\ny\n", true},
	{"no header", "\r\nx\r\ny\r\n", 1, "\r\nx\r\n", true},
	{"no header, 0 lines", "\r\nx\r\n", 0, "\r\n", true},
	{"empty body lines count", "A: 1\r\n\r\n\r\n\r\nx\r\n", 2, "A: 1\r\n\r\n\r\n\r\n", true},
	{"CR-only header line ends the header", "A: 1\r\n\r\r\nx\r\n", 0, "A: 1\r\n\r\r\n", true},
	{"whitespace line does not end the header", "A: 1\r\n \r\nB: 2\r\n\r\nx\r\n", 0, "A: 1\r\n \r\nB: 2\r\n\r\n", true},
	{"dot lines are data", "A: 1\r\n\r\n.\r\n..\r\nx\r\n", 2, "A: 1\r\n\r\n.\r\n..\r\n", true},
	{"empty", "", 3, "", false},
}

func TestTopCutterPassesHeaderAndNLines(t *testing.T) {
	for _, tt := range topCutterTests {
		t.Run(tt.name, func(t *testing.T) {
			got, done := topCut(tt.n, []byte(tt.in))
			if got != tt.want || done != tt.wantDone {
				t.Errorf("topCutter(%q, %d) = %q, done %v; want %q, done %v", tt.in, tt.n, got, done, tt.want, tt.wantDone)
			}
		})
	}
}

func TestTopCutterOutputDoesNotDependOnHowInputIsSplit(t *testing.T) {
	for _, tt := range topCutterTests {
		t.Run(tt.name, func(t *testing.T) {
			splits([]byte(tt.in), func(desc string, pieces ...[]byte) {
				got, done := topCut(tt.n, pieces...)
				if got != tt.want || done != tt.wantDone {
					t.Errorf("%s %q: got %q, done %v; want %q, done %v", desc, pieces, got, done, tt.want, tt.wantDone)
				}
			})
		})
	}
}

func TestTopCutterPassesNothingAfterDone(t *testing.T) {
	tc := topCutter{n: 1}
	if got := string(tc.cut([]byte("A: 1\r\n\r\nx\r\n"))); got != "A: 1\r\n\r\nx\r\n" || !tc.done {
		t.Fatalf("got %q, done %v", got, tc.done)
	}
	for _, p := range []string{"y\r\n", "\r\n", "."} {
		if got := tc.cut([]byte(p)); len(got) != 0 {
			t.Errorf("after done, cut(%q) = %q", p, got)
		}
	}
}

func TestTopCutterThenDotWriter(t *testing.T) {
	// The two together, as send uses them, on a message with every kind
	// of line end and dot line.
	in := "A: 1\nB: 2\r\n\n.one\r\ntwo\n.\r\nthree"
	tests := []struct {
		n    int
		want string
	}{
		{0, "A: 1\r\nB: 2\r\n\r\n.\r\n"},
		{1, "A: 1\r\nB: 2\r\n\r\n..one\r\n.\r\n"},
		{3, "A: 1\r\nB: 2\r\n\r\n..one\r\ntwo\r\n..\r\n.\r\n"},
		{4, "A: 1\r\nB: 2\r\n\r\n..one\r\ntwo\r\n..\r\nthree\r\n.\r\n"},
	}
	for _, tt := range tests {
		splits([]byte(in), func(desc string, pieces ...[]byte) {
			tc := topCutter{n: tt.n}
			var cut [][]byte
			for _, p := range pieces {
				cut = append(cut, tc.cut(p))
			}
			if got := string(dotStuff(t, cut...)); got != tt.want {
				t.Errorf("n=%d %s: got %q, want %q", tt.n, desc, got, tt.want)
			}
		})
	}
}
