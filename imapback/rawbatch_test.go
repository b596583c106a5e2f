package imapback

import (
	"errors"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// The head and closing lines of a batch's FETCH responses, in the forms
// servers write them: the usual one, the UID after the body, other items
// around it; and what is not the batch's.
func TestParseBodyHead(t *testing.T) {
	for _, tc := range []struct {
		line     string
		uid      imap.UID
		size     int
		body     bool
		err      error // errNotFetch or errNoLiteral
		wantFail bool
	}{
		{line: "* 1 FETCH (UID 7 BODY[] {4096}\r\n", uid: 7, size: 4096, body: true},
		{line: "* 1 FETCH (UID 7 BODY[] {0}\n", uid: 7, size: 0, body: true},
		{line: "* 12 fetch (uid 9 body[] {12}\r\n", uid: 9, size: 12, body: true},
		{line: "* 1 FETCH (BODY[] {5}\r\n", uid: 0, size: 5, body: true},
		{line: "* 1 FETCH (FLAGS (\\Seen \\Recent) UID 3 BODY[]<0> {5}\r\n", uid: 3, size: 5, body: true},
		{line: "* 1 FETCH (UID 3 BODY[HEADER] {5}\r\n", uid: 3, size: 5, body: false},
		{line: "* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n", err: errNoLiteral},
		{line: "* 3 EXISTS\r\n", err: errNotFetch},
		{line: "* 1 FETCH (UID 0 BODY[] {5}\r\n", wantFail: true},
		{line: "* 1 FETCH (UID 3 BODY[] {5} X}\r\n", wantFail: true},
		{line: "* 1 FETCH (UID 3 BODY[] {99999999999}\r\n", wantFail: true},
	} {
		uid, size, body, err := parseBodyHead([]byte(tc.line))
		switch {
		case tc.wantFail:
			if err == nil {
				t.Errorf("%q: parsed as UID %d, %d octets; want an error", tc.line, uid, size)
			}
		case tc.err != nil:
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: error %v, want %v", tc.line, err, tc.err)
			}
		case err != nil || uid != tc.uid || size != tc.size || body != tc.body:
			t.Errorf("%q: UID %d, %d octets, body %v, %v; want UID %d, %d octets, body %v",
				tc.line, uid, size, body, err, tc.uid, tc.size, tc.body)
		}
	}
}

func TestParseBodyTail(t *testing.T) {
	for _, tc := range []struct {
		line string
		uid  imap.UID
		ok   bool
	}{
		{")\r\n", 0, true},
		{")\n", 0, true},
		{" UID 7)\r\n", 7, true},
		{" FLAGS (\\Seen) UID 8)\r\n", 8, true},
		{") junk\r\n", 0, false},
		{" BODY[HEADER] {3}\r\n", 0, false},
		{"\r\n", 0, false},
	} {
		uid, err := parseBodyTail([]byte(tc.line))
		if (err == nil) != tc.ok || uid != tc.uid {
			t.Errorf("%q: UID %d, %v; want UID %d, ok %v", tc.line, uid, err, tc.uid, tc.ok)
		}
	}
}
