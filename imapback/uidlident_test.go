package imapback

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestUIDLFormatIdentities(t *testing.T) {
	hash := strings.Repeat("ab", 20)
	for _, tc := range []struct {
		format string
		needs  UIDLNeeds
		want   string
	}{
		{"%g", UIDLNeeds{Identity: true}, "Mabc123"},
		{"%Lg", UIDLNeeds{Identity: true}, "mabc123"},
		{"%m", UIDLNeeds{HeaderHash: true}, hash},
		{"%Um", UIDLNeeds{HeaderHash: true}, strings.ToUpper(hash)},
		{"%g.%u", UIDLNeeds{Identity: true}, "Mabc123.42"},
		{"%Xu.%m", UIDLNeeds{HeaderHash: true}, "2a." + hash},
		{DefaultUIDLFormat, UIDLNeeds{}, "0000002a00000007"},
	} {
		f, err := ParseUIDLFormat(tc.format)
		if err != nil {
			t.Fatalf("ParseUIDLFormat(%q): %v", tc.format, err)
		}
		if f.Needs() != tc.needs {
			t.Errorf("%q needs %+v, want %+v", tc.format, f.Needs(), tc.needs)
		}
		got := f.FormatVars(UIDLVars{UID: 42, UIDValidity: 7, Identity: "Mabc123", HeaderHash: hash})
		if got != tc.want {
			t.Errorf("%q = %q, want %q", tc.format, got, tc.want)
		}
	}
}

func TestDedupeUIDLs(t *testing.T) {
	ids := []string{"a", "b", "a", "a-2", "a", "c", "b"}
	dedupeUIDLs(ids)
	want := []string{"a", "b", "a-2", "a-2-2", "a-3", "c", "b-2"}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("dedupeUIDLs = %q, want %q", ids, want)
	}
	// Stable: the same ids in the same order come out the same; with the
	// first of the equal ones gone, the later ones move down a number.
	again := []string{"a", "a", "a"}
	dedupeUIDLs(again)
	if strings.Join(again, " ") != "a a-2 a-3" {
		t.Errorf("three equal ids = %q", again)
	}
	after := []string{"a", "a"}
	dedupeUIDLs(after)
	if strings.Join(after, " ") != "a a-2" {
		t.Errorf("after an expunge = %q", after)
	}
}

func TestHeaderHashNormalises(t *testing.T) {
	base := "From: a@example.org\r\nSubject: hello  world\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"
	h0, err := HeaderHash(strings.NewReader(base))
	if err != nil || len(h0) != 40 {
		t.Fatalf("HeaderHash = %q, %v", h0, err)
	}
	same := []string{
		// LF line ends, the body left out, blanks moved.
		"From: a@example.org\nSubject: hello world\nMessage-ID: <1@x>\n\n",
		"From:a@example.org\r\nSubject:\thelloworld \r\nMessage-ID: <1@x>\r\n\r\nother body",
		// Skipped headers, any case, with their continuations.
		"Return-Path: <b@y>\r\nFrom: a@example.org\r\nX-UIDL: 123\r\n continued\r\nSubject: hello world\r\nstatus: RO\r\nMessage-ID: <1@x>\r\n\r\n",
		// A line that is no header, a blank continuation, a bad name.
		"From: a@example.org\r\nnot a header\r\nSubject: hello world\r\n   \r\nMessage-ID: <1@x>\r\nBad Name: x\r\n\r\n",
		// Continuations of a line left out are left out too.
		"From: a@example.org\r\nnoheader\r\n cont\r\nSubject: hello world\r\n \r\n after blank\r\nMessage-ID: <1@x>\r\n\r\n",
	}
	for _, s := range same {
		if h, _ := HeaderHash(strings.NewReader(s)); h != h0 {
			t.Errorf("HeaderHash(%q) = %s, want %s as for %q", s, h, h0, base)
		}
	}
	differ := []string{
		"From: a@example.org\r\nSubject: hello world!\r\nMessage-ID: <1@x>\r\n\r\n",
		"From: a@example.org\r\nSubject: hello world\r\nMessage-ID: <2@x>\r\n\r\n",
		"From: a@example.org\r\nSubject: hello world\r\nMessage-ID: <1@x>\r\n", // no end of header
	}
	for _, s := range differ {
		if h, _ := HeaderHash(strings.NewReader(s)); h == h0 {
			t.Errorf("HeaderHash(%q) equals that of %q", s, base)
		}
	}
	// 8-bit and control runs become one '?', as does '?' itself.
	a, _ := HeaderHash(strings.NewReader("Subject: caf\xc3\xa9\x01?\r\n\r\n"))
	b, _ := HeaderHash(strings.NewReader("Subject: caf?\r\n\r\n"))
	if a != b {
		t.Errorf("8-bit runs: %s != %s", a, b)
	}
	// A line of CRs ends the hash; what follows does not count.
	c, _ := HeaderHash(strings.NewReader("Subject: x\r\n\r\r\nFrom: y\r\n\r\n"))
	d, _ := HeaderHash(strings.NewReader("Subject: x\r\n\r\r\n"))
	if c != d {
		t.Errorf("CR line: %s != %s", c, d)
	}
}

func TestParseFetchLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want map[string]string
	}{
		{"* 1 FETCH (UID 5 X-GUID 0c2b1a2bd4c7fb65d9250000a8be2e34)\r\n", map[string]string{"UID": "5", "X-GUID": "0c2b1a2bd4c7fb65d9250000a8be2e34"}},
		{"* 12 FETCH (UID 7 EMAILID (M6d99ac3275bb4e))\r\n", map[string]string{"UID": "7", "EMAILID": "M6d99ac3275bb4e"}},
		{"* 3 fetch (X-GM-MSGID 1278455344230334865 UID 9 FLAGS (\\Seen \\Answered))\r\n", map[string]string{"UID": "9", "X-GM-MSGID": "1278455344230334865", "FLAGS": "(\\Seen \\Answered)"}},
		{"* 3 FETCH (UID 9 X-GUID \"a\\\"b\")\n", map[string]string{"UID": "9", "X-GUID": "a\"b"}},
		{"* 3 FETCH (UID 9 EMAILID NIL)\r\n", map[string]string{"UID": "9", "EMAILID": ""}},
	} {
		got, err := parseFetchLine([]byte(tc.line))
		if err != nil {
			t.Errorf("parseFetchLine(%q): %v", tc.line, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("parseFetchLine(%q) = %q, want %q", tc.line, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("parseFetchLine(%q)[%s] = %q, want %q", tc.line, k, got[k], v)
			}
		}
	}
	for _, bad := range []string{
		"* 1 EXISTS\r\n", "* OK x\r\n", "* 1 FETCH (UID 5 BODY[] {3}\r\n",
		"* 1 FETCH (UID)\r\n", "* 1 FETCH (UID 5\r\n", "* 1 FETCH (UID 5) x\r\n",
		"* 1 FETCH (X-GUID \"abc)\r\n", "* 1 FETCH (A " + strings.Repeat("(", 20) + "x" + strings.Repeat(")", 20) + ")\r\n",
	} {
		if got, err := parseFetchLine([]byte(bad)); err == nil {
			t.Errorf("parseFetchLine(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzParseFetchLine: the parser never panics, and what it returns as an
// item value has no line end in it.
func FuzzParseFetchLine(f *testing.F) {
	for _, s := range []string{
		"* 1 FETCH (UID 5 X-GUID abc)\r\n", "* 2 FETCH (UID 7 EMAILID (M1))\r\n",
		"* 3 FETCH (UID 9 FLAGS (\\Seen) X-GM-MSGID 12)\r\n", "* 3 FETCH (UID 9 X-GUID \"a\\\\b\")\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		items, err := parseFetchLine(line)
		if err != nil {
			return
		}
		for k, v := range items {
			if strings.ContainsAny(k+v, "\r\n") {
				t.Fatalf("item %q = %q from %q", k, v, line)
			}
		}
	})
}

// FuzzHeaderHash: any input hashes, as modelHeaderHash does where no
// line is cut, and a header in memory (the way a header FETCH read
// beside go-imap hashes it) hashes as one read a byte at a time does.
// The seeds hold lines longer than the reader's buffer and than
// maxHeaderLine, a header of only that line, headers without a line end,
// and names of every kind.
func FuzzHeaderHash(f *testing.F) {
	f.Add([]byte("From: a\r\nSubject: b\r\n\r\n"))
	f.Add([]byte("X-UIDL: 1\r\n c\r\n\r\r\nz"))
	f.Add([]byte(""))
	f.Add([]byte("\r\n"))
	f.Add([]byte("Subject: x\r"))
	f.Add([]byte("X: " + strings.Repeat("y", 5000) + "\r\n\tz\r\n\r\n"))
	f.Add([]byte("X: " + strings.Repeat("y", maxHeaderLine-5) + "\r\n"))
	f.Add([]byte("X: " + strings.Repeat("y", maxHeaderLine-3)))
	f.Add([]byte("X: " + strings.Repeat("y", maxHeaderLine) + "\r\nY: z\r\n\r\n"))
	f.Add([]byte("X-Status: O\r\nx-statuz: 1\r\nRECEIVED: a\r\n\tb\r\nX-UIDL : c\r\n d\r\n:e\r\n\xc3X: f\r\nA\x7fB: g\r\n" +
		"A B: h\r\n \t\r\n i\r\n" + strings.Repeat("N", maxHeaderName+1) + ": j\r\n" + strings.Repeat("M", maxHeaderName) + ": k\r\n\r\r\n"))
	f.Fuzz(func(t *testing.T, header []byte) {
		h, err := HeaderHash(iotest.OneByteReader(bytes.NewReader(header)))
		if err != nil || len(h) != 40 {
			t.Fatalf("HeaderHash(%q) = %q, %v", clip(header), h, err)
		}
		hh := headerHashers.Get().(*headerHasher)
		defer headerHashers.Put(hh)
		if m := hh.hashBytes(header); m != h {
			t.Fatalf("%q: %s in memory, %s read", clip(header), m, h)
		}
		if m, ok := modelHeaderHash(header); ok && m != h {
			t.Fatalf("%q: %s, the model %s", clip(header), h, m)
		}
	})
}

// modelHeaderHash is HeaderHash as its comment words it, written to be
// read rather than to be fast; ok false: a line is longer than
// maxHeaderLine, which HeaderHash cuts.
func modelHeaderHash(header []byte) (sum string, ok bool) {
	var kept []byte // the lines hashed, each with its LF
	dropping := false
	for rest := header; len(rest) > 0; {
		line, after, eol := bytes.Cut(rest, []byte("\n"))
		if len(line) >= maxHeaderLine {
			return "", false
		}
		rest = after
		if eol {
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if len(line) == 0 {
			if eol {
				kept = append(kept, '\n')
			}
			break
		}
		if len(bytes.Trim(line, "\r")) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			dropping = dropping || len(bytes.Trim(line, " \t")) == 0
		} else {
			name, _, colon := bytes.Cut(line, []byte(":"))
			name = bytes.TrimRight(name, " \t")
			bad := slices.ContainsFunc(name, func(c byte) bool { return c <= ' ' || c >= 0x7f })
			dropping = !colon || bad || len(name) > maxHeaderName || hashSkipHeaders[strings.ToLower(string(name))]
		}
		if !dropping {
			kept = append(kept, line...)
			if eol {
				kept = append(kept, '\n')
			}
		}
		if !eol {
			break
		}
	}
	var norm []byte
	question := false
	for _, c := range kept {
		switch {
		case c == ' ' || c == '\t':
			question = false
		case c == '\n':
			norm, question = append(norm, c), false
		case c < 0x20 || c >= 0x7f || c == '?':
			if !question {
				norm = append(norm, '?')
			}
			question = true
		default:
			norm, question = append(norm, c), false
		}
	}
	digest := sha1.Sum(norm)
	return hex.EncodeToString(digest[:]), true
}
