package imapback

// parseFetchLine: a small parser for the one-line FETCH responses that
// carry identities (itemTap), which go-imap does not parse.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

var errNotFetch = errors.New("not a FETCH response")

// parseFetchLine parses "* n FETCH (name value ...)" ending in CRLF or LF,
// without literals, and returns each item's value by upper-case name. A
// number, atom or quoted string is its value; a list of one such is that
// (EMAILID answers "(M6d99ac3275bb4e)"); NIL is ""; longer lists (FLAGS)
// are kept as their text.
func parseFetchLine(line []byte) (map[string]string, error) {
	p := fetchParser{s: line}
	if !p.lit("* ") {
		return nil, errNotFetch
	}
	if p.atom() == "" || !p.lit(" ") || !strings.EqualFold(p.atom(), "FETCH") || !p.lit(" (") {
		return nil, errNotFetch
	}
	items := make(map[string]string)
	for !p.lit(")") {
		if len(items) > 0 && !p.lit(" ") {
			return nil, fmt.Errorf("FETCH: expected a space at %d", p.i)
		}
		name := strings.ToUpper(p.atom())
		if name == "" || !p.lit(" ") {
			return nil, fmt.Errorf("FETCH: expected an item name at %d", p.i)
		}
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		items[name] = v
	}
	if !p.lit("\r\n") && !p.lit("\n") || p.i != len(p.s) {
		return nil, fmt.Errorf("FETCH: text after the item list at %d", p.i)
	}
	return items, nil
}

type fetchParser struct {
	s []byte
	i int
}

func (p *fetchParser) lit(s string) bool {
	if bytes.HasPrefix(p.s[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

// atom reads an atom (RFC 3501 ATOM-CHAR, and '\' for flags, '[' and
// ']' for section names); "" if there is none.
func (p *fetchParser) atom() string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"`, c) >= 0 {
			break
		}
		p.i++
	}
	return string(p.s[start:p.i])
}

// maxFetchDepth bounds nested lists.
const maxFetchDepth = 8

func (p *fetchParser) value(depth int) (string, error) {
	if p.i >= len(p.s) {
		return "", fmt.Errorf("FETCH: value missing")
	}
	switch p.s[p.i] {
	case '"':
		return p.quoted()
	case '{':
		return "", fmt.Errorf("FETCH: a literal")
	case '(':
		if depth == maxFetchDepth {
			return "", fmt.Errorf("FETCH: lists nested too deep")
		}
		start := p.i
		p.i++
		var elems []string
		for !p.lit(")") {
			if len(elems) > 0 && !p.lit(" ") {
				return "", fmt.Errorf("FETCH: expected a space at %d", p.i)
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return "", err
			}
			elems = append(elems, v)
		}
		if len(elems) == 1 {
			return elems[0], nil
		}
		return string(p.s[start:p.i]), nil
	}
	a := p.atom()
	if a == "" {
		return "", fmt.Errorf("FETCH: unexpected %q at %d", p.s[p.i], p.i)
	}
	if strings.EqualFold(a, "NIL") {
		return "", nil
	}
	return a, nil
}

func (p *fetchParser) quoted() (string, error) {
	p.i++ // the opening quote
	var b []byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return string(b), nil
		case '\\':
			if p.i == len(p.s) {
				return "", fmt.Errorf("FETCH: unterminated string")
			}
			c = p.s[p.i]
			p.i++
		case '\r', '\n':
			return "", fmt.Errorf("FETCH: line end in a string")
		}
		b = append(b, c)
	}
	return "", fmt.Errorf("FETCH: unterminated string")
}
