package imapback

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// streamConn serves a response stream from r. Only Read is used by the
// tests.
type streamConn struct {
	net.Conn
	r io.Reader
}

func (c *streamConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// readBounded reads stream through a boundedConn in reads of at most
// chunk octets, as imapclient would, and returns what it passed and the
// error that ended it (nil at the end of the stream).
func readBounded(stream []byte, lim ResponseLimits, e Expectation, chunk int) ([]byte, error) {
	c := newBoundedConn(&streamConn{r: testkit.ChunkReader(bytes.NewReader(stream), chunk)}, lim)
	c.Expect(e)
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			if c.Err() == nil || c.Err() != err {
				return out.Bytes(), errors.New("Err() does not return the error Read returned")
			}
			if _, again := c.Read(buf); again != err {
				return out.Bytes(), errors.New("the bound error is not sticky")
			}
			return out.Bytes(), err
		}
	}
}

// lit is a literal of n octets, announced with header (e.g. "{%d}").
func lit(header string, n int) string {
	return strings.Replace(header, "N", strconv.Itoa(n), 1) + "\r\n" + strings.Repeat("x", n)
}

var boundCases = []struct {
	name   string
	stream string
	lim    ResponseLimits
	expect Expectation
	want   Bound // "": the stream passes whole
	// before: the stream passed ends before this text's first octet.
	before string
}{
	{name: "session", stream: "* OK [CAPABILITY IMAP4rev1] hi\r\nA1 OK [CAPABILITY IMAP4rev1 UIDPLUS] done\r\n" +
		"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] x\r\n* FLAGS (\\Seen)\r\nA2 OK [READ-WRITE] done\r\n" +
		"* 1 FETCH (UID 5 RFC822.SIZE 10)\r\n* 2 FETCH (UID 6 RFC822.SIZE 11 FLAGS (\\Seen))\r\nA3 OK done\r\n" +
		"* 1 FETCH (UID 5 BODY[]<0> " + lit("{N}", 5000) + ")\r\nA4 OK done\r\n",
		lim: ResponseLimits{Literal: 100, Response: 1000}},
	{name: "list literal", stream: "* LIST () \"/\" " + lit("{N}", 2000) + "\r\n", lim: ResponseLimits{Literal: 1000},
		want: BoundLiteral, before: "xxx"},
	{name: "list literal under the bound", stream: "* LIST () \"/\" " + lit("{N}", 1000) + "\r\n", lim: ResponseLimits{Literal: 1000}},
	{name: "non-sync literal", stream: "* LIST () \"/\" " + lit("{N+}", 2000) + "\r\n", lim: ResponseLimits{Literal: 1000},
		want: BoundLiteral, before: "xxx"},
	{name: "literal8", stream: "* LIST () \"/\" " + lit("~{N}", 2000) + "\r\n", lim: ResponseLimits{Literal: 1000},
		want: BoundLiteral, before: "xxx"},
	{name: "literal header with space and bare LF", stream: "* LIST () \"/\" {2000} \n" + strings.Repeat("x", 2000) + "\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "literals add up in a response", stream: "* ID (" + lit("{N}", 600) + " " + lit("{N}", 600) + ")\r\n",
		lim: ResponseLimits{Literal: 1000, Response: 1000}, want: BoundResponse, before: strings.Repeat("x", 600) + ")"},
	{name: "long text", stream: "* OK " + strings.Repeat("t", 3000) + "\r\n", lim: ResponseLimits{Response: 1000}, want: BoundResponse},
	{name: "quoted string across lines", stream: "* LIST () \"/\" \"a\r\n" + strings.Repeat("q", 3000) + "\"\r\n",
		lim: ResponseLimits{Response: 1000}, want: BoundResponse},
	{name: "literal header in a quoted string", stream: "* LIST () \"/\" \"a\r\n{99999999}\r\nb\"\r\n* 1 EXISTS\r\n",
		lim: ResponseLimits{Literal: 100}},
	{name: "literal header in text", stream: "* OK {99999999}\r\n+ {99999999}\r\nA1 NO {99999999}\r\n* BYE {99999999}\r\n",
		lim: ResponseLimits{Literal: 100}},
	{name: "text hides no literal", stream: "* OK {20}\r\n* LIST () \"/\" " + lit("{N}", 2000) + "\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "response code across lines", stream: "* OK [X {5}\r\n* LIST () \"/\" {200000000}\r\n] t\r\n* 1 EXISTS\r\n",
		lim: ResponseLimits{Literal: 1000}},
	{name: "body literal", stream: "* 1 FETCH (UID 5 BODY[] " + lit("{N}", 5000) + ")\r\n", lim: ResponseLimits{Literal: 100}},
	{name: "body literal, lower case, after flags", stream: "* 1 fetch (flags (\\Seen) uid 5 body[] " + lit("{N}", 5000) + ")\r\n",
		lim: ResponseLimits{Literal: 100}},
	{name: "partial body literal", stream: "* 1 FETCH (UID 5 BODY[]<1048576> " + lit("{N}", 5000) + ")\r\n", lim: ResponseLimits{Literal: 100}},
	{name: "binary literal8", stream: "* 1 FETCH (UID 5 BINARY[1.2] " + lit("~{N}", 5000) + ")\r\n", lim: ResponseLimits{Literal: 100}},
	{name: "header fields body", stream: "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (" + lit("{N}", 4) + " To)] " + lit("{N}", 5000) + ")\r\n",
		lim: ResponseLimits{Literal: 100}},
	{name: "header field name literal", stream: "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (" + lit("{N}", 400) + ")] {5}\r\nxxxxx)\r\n",
		lim: ResponseLimits{Literal: 100}, want: BoundLiteral, before: "xxx"},
	{name: "body bound", stream: "* 1 FETCH (UID 5 BODY[] " + lit("{N}", 5000) + ")\r\n", lim: ResponseLimits{Body: 4000},
		want: BoundBody, before: "xxx"},
	{name: "body name inside a list", stream: "* 1 FETCH (ENVELOPE (BODY[] " + lit("{N}", 2000) + "))\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "body name quoted", stream: "* 1 FETCH (ENVELOPE \"BODY[]\" " + lit("{N}", 2000) + ")\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "body name outside FETCH", stream: "* LIST (BODY[] " + lit("{N}", 2000) + ")\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "BODY.PEEK is no answer", stream: "* 1 FETCH (BODY.PEEK[] " + lit("{N}", 2000) + ")\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "body value then another literal", stream: "* 1 FETCH (BODY[] {1}\r\nx X " + lit("{N}", 2000) + ")\r\n",
		lim: ResponseLimits{Literal: 1000}, want: BoundLiteral, before: "xxx"},
	{name: "responses", stream: strings.Repeat("* 1 FETCH (UID 1 RFC822.SIZE 5)\r\n", 10) + "* 2 EXPUNGE\r\n",
		expect: Expectation{Responses: 10}, want: BoundResponses, before: "* 2 EXPUNGE"},
	{name: "responses within the bound", stream: strings.Repeat("* 1 EXPUNGE\r\n", 10), expect: Expectation{Responses: 10}},
	{name: "raised response bound", stream: "* SEARCH" + strings.Repeat(" 4294967295", 200) + "\r\n",
		lim: ResponseLimits{Response: 1000}, expect: Expectation{ResponseOctets: 4000}},
	{name: "responses together", stream: strings.Repeat("* LIST () \"/\" INBOX\r\n", 10) + "* LIST () \"/\" Trash\r\n",
		expect: Expectation{Octets: 10 * 21}, want: BoundOctets, before: "sh\r\n"},
	{name: "responses together within the bound", stream: strings.Repeat("* LIST () \"/\" INBOX\r\n", 10),
		expect: Expectation{Octets: 10 * 21}},
	{name: "literals count in the responses together", stream: "* LIST () \"/\" " + lit("{N}", 100) + "\r\n",
		expect: Expectation{Octets: 100}, want: BoundOctets, before: "xxx"},
	{name: "size that overflows", stream: "* LIST () \"/\" {99999999999999999999999}\r\nx\r\n", lim: ResponseLimits{Literal: 1000},
		want: BoundLiteral},
}

// The scanner passes streams within their bounds whole and stops at the
// first octet past one, however the stream is cut into reads.
func TestBoundedConnCases(t *testing.T) {
	for _, tc := range boundCases {
		for _, chunk := range []int{1, 3, 4096, 1 << 20} {
			got, err := readBounded([]byte(tc.stream), tc.lim, tc.expect, chunk)
			if tc.want == "" {
				if err != nil || string(got) != tc.stream {
					t.Errorf("%s (reads of %d): passed %d of %d octets, err %v; want all", tc.name, chunk, len(got), len(tc.stream), err)
				}
				continue
			}
			var be *BoundError
			if !errors.As(err, &be) || be.Bound != tc.want || !errors.Is(err, ErrResponseTooLarge) {
				t.Errorf("%s (reads of %d): err %v, want a %s bound", tc.name, chunk, err, tc.want)
				continue
			}
			if !strings.HasPrefix(tc.stream, string(got)) {
				t.Errorf("%s (reads of %d): passed octets that are not the stream's", tc.name, chunk)
			}
			if tc.before != "" && len(got) > strings.Index(tc.stream, tc.before) {
				t.Errorf("%s (reads of %d): passed %q, beyond the bound", tc.name, chunk, got[strings.Index(tc.stream, tc.before):])
			}
		}
	}
}

// Expect restarts the count: a session that expects n responses per
// command may send any number of commands.
func TestBoundedConnExpectRestartsCount(t *testing.T) {
	line := "* 1 FETCH (UID 1 RFC822.SIZE 5)\r\nA1 OK done\r\n"
	r := strings.NewReader(strings.Repeat(line, 100))
	c := newBoundedConn(&streamConn{r: testkit.ChunkReader(r, len(line))}, ResponseLimits{})
	buf := make([]byte, len(line))
	for i := range 100 {
		c.Expect(Expectation{Responses: 2})
		if n, err := io.ReadFull(c, buf); n != len(line) || err != nil {
			t.Fatalf("command %d: %d octets, %v", i, n, err)
		}
	}
	c.Expect(Expectation{Responses: 1})
	r.Reset(line)
	if _, err := io.ReadFull(c, buf); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("two responses past a bound of one: %v", err)
	}
}
