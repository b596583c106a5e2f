//go:build ignore

// gen writes the small messages of the interoperability corpus, byte for
// byte, into the directory it runs in:
//
//	cd proxy/testdata/corpus && go run gen.go
//
// The files are the corpus (.gitattributes keeps git from touching their
// line ends); this program only documents how each awkward shape was made.
// The large messages (a 20 MiB message, a big base64 attachment) are not
// committed: proxy/corpus_test.go generates them deterministically.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	for _, m := range corpus() {
		if err := os.WriteFile(m.name+".eml", []byte(m.data), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

type msg struct{ name, data string }

// hdr is a plain CRLF header block for a message named n, with the blank line.
func hdr(n string) string {
	return "From: Sender <sender@example.org>\r\nTo: alice@example.org\r\nSubject: " + n +
		"\r\nMessage-ID: <" + n + "@example.org>\r\nDate: Thu, 26 Nov 2026 08:00:00 +0000\r\n\r\n"
}

func lines(n int, f func(i int) string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(f(i))
	}
	return b.String()
}

func corpus() []msg {
	long998 := strings.Repeat("x", 998)
	return []msg{
		{"plain", hdr("plain") + "line 1\r\nline 2\r\nline 3\r\nline 4\r\nline 5\r\nline 6\r\nline 7\r\n"},
		{"dot-lines", hdr("dot-lines") + ".\r\n..\r\n.x\r\n...\r\n . \r\n..\r\nend\r\n"},
		{"body-starts-with-dot", hdr("body-starts-with-dot") + ".first line\r\nsecond\r\n"},
		{"ends-with-dot-line", hdr("ends-with-dot-line") + "text\r\n.\r\n"},
		{"ends-with-dotdot-line", hdr("ends-with-dotdot-line") + "text\r\n..\r\n"},
		{"ends-with-dot-no-crlf", hdr("ends-with-dot-no-crlf") + "text\r\n."},
		{"ends-with-crlf-dot-crlf-crlf", hdr("ends-with-crlf-dot-crlf-crlf") + "text\r\n.\r\n\r\n"},
		{"empty-body", hdr("empty-body")},
		{"header-only", "Subject: header-only\r\nX-A: b\r\n"},
		{"header-only-no-crlf", "Subject: header-only-no-crlf"},
		{"header-only-bare-lf", "Subject: header-only-bare-lf\nX-A: b\n"},
		{"no-header", "\r\nbody after an empty header\r\n"},
		{"only-crlf", "\r\n"},
		{"empty", ""},
		{"no-final-crlf", hdr("no-final-crlf") + "line 1\r\nlast line without CRLF"},
		{"line-998", hdr("line-998") + long998 + "\r\n" + "." + long998[1:] + "\r\nshort\r\n"},
		{"line-999", hdr("line-999") + long998 + "y\r\nshort\r\n"},
		{"line-5000", hdr("line-5000") + strings.Repeat("0123456789", 500) + "\r\nshort\r\n"},
		{"line-100k", hdr("line-100k") + "." + strings.Repeat("abcdefghij", 10000) + "\r\nshort\r\n"},
		{"header-line-1500", "Subject: header-line-1500\r\nX-Long: " + strings.Repeat("h", 1500) + "\r\n\r\nbody\r\n"},
		{"folded-headers", "Subject: folded-headers with a long subject that goes on\r\n\tand on\r\n  and on\r\n" +
			"References:" + lines(60, func(i int) string { return fmt.Sprintf("\r\n <ref%03d@example.org>", i) }) + "\r\n" +
			"X-Dot-Fold: a\r\n\t.dot after the fold\r\n.X-Dot-Header: leading dot\r\n\r\nbody\r\n"},
		{"whitespace-separator", "Subject: whitespace-separator\r\n \r\nX-After: space line\r\n\r\nbody 1\r\nbody 2\r\n"},
		{"trailing-whitespace", hdr("trailing-whitespace") + "trailing space \r\ntrailing tab\t\r\n \r\n\t\r\n\r\n\r\n\r\n"},
		{"8bit-headers", "Subject: 8bit-headers caf\xe9 \xfcber\r\nFrom: J\xf6rg <j@example.org>\r\n\r\nLatin-1 body: \xe9\xe8\xe0\r\n"},
		{"utf8-headers", "From: Jörg Ünsal <jörg@bücher.example>\r\nTo: 日本語 <ユーザー@例え.jp>\r\nSubject: utf8-headers ✓ ünïcödé\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, 👋\r\n"},
		{"8bit-body-all-bytes", hdr("8bit-body-all-bytes") + lines(16, func(i int) string {
			var b []byte
			for c := i * 16; c < i*16+16; c++ {
				if c != '\r' && c != '\n' && c != 0 {
					b = append(b, byte(c))
				}
			}
			return string(b) + "\r\n"
		})},
		{"nul-bytes", hdr("nul-bytes") + "a\x00b\r\n\x00\r\n.\x00\r\nend\x00"},
		{"bare-lf", "Subject: bare-lf\nFrom: a@example.org\n\nline 1\n.dot\n..\nline 4\n"},
		{"bare-lf-no-final", "Subject: bare-lf-no-final\n\nline 1\nlast"},
		{"bare-cr", "Subject: bare-cr\rFrom: a@example.org\r\rline 1\r.dot\rline 3\r"},
		{"bare-cr-crlf-header", "Subject: bare-cr-crlf-header\r\n\r\nline 1\rline 2\r\n.dot\rafter\r\n"},
		{"ends-with-bare-cr", hdr("ends-with-bare-cr") + "line\r"},
		{"mixed-line-ends", "Subject: mixed-line-ends\r\nX-A: lf\nX-B: cr\rX-C: crcrlf\r\r\n\r\ncrlf\r\nlf\ncr\r.dot-after-cr\n\n\rlfcr\n\rend"},
		{"crcrlf", hdr("crcrlf") + "line\r\r\n.\r\r\nlast\r\r\n"},
		{"lfcr", "Subject: lfcr\n\r\n\rbody\n\r"},
		{"mbox-from-lines", hdr("mbox-from-lines") + "From the start\r\n>From quoted\r\nFrom: not a header\r\n"},
		{"many-empty-lines", hdr("many-empty-lines") + strings.Repeat("\r\n", 2000) + "after\r\n"},
		{"multipart-alternative", "Subject: multipart-alternative\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n" +
			"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n.\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b1--\r\nepilogue\r\n"},
		{"nested-rfc822", "Subject: nested-rfc822\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
			"--outer\r\nContent-Type: text/plain\r\n\r\nForwarded below.\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: inner 1\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: inner 2\r\n\r\n.deepest body\r\n--inner--\r\n--outer--\r\n"},
	}
}
