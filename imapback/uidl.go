package imapback

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultUIDLFormat is Dovecot's default pop3_uidl_format: the UID, then
// the UIDVALIDITY, each as 8 hex digits (lower-case: Dovecot's X modifier
// writes lower-case hex). Using it means a user moved from Dovecot's POP3
// server to popbridge downloads nothing again.
const DefaultUIDLFormat = "%08Xu%08Xv"

// UIDLFormat turns a message's UID and its mailbox's UIDVALIDITY into a
// POP3 unique-id listing. It understands Dovecot's variables %u (UID) and
// %v (UIDVALIDITY), each with an optional zero flag and width and
// Dovecot's modifiers X (hex), U (upper case) and L (lower case), and %%
// for a percent sign. Dovecot's other variables (%m, %f, %g) need storage
// details that IMAP does not expose.
type UIDLFormat struct {
	parts []uidlPart
}

type uidlPart struct {
	lit   string // literal text, when verb is 0
	verb  byte   // 'u' or 'v'
	base  int
	upper bool
	width int
	zero  bool
}

// ParseUIDLFormat parses and checks a format. The result must be a valid
// RFC 1939 unique-id for any UID and UIDVALIDITY: 1 to 70 characters in the
// range 0x21 to 0x7E, and it must contain %u so that ids are unique.
func ParseUIDLFormat(s string) (*UIDLFormat, error) {
	f := &UIDLFormat{}
	hasUID := false
	for len(s) > 0 {
		i := strings.IndexByte(s, '%')
		if i != 0 {
			if i < 0 {
				i = len(s)
			}
			f.parts = append(f.parts, uidlPart{lit: s[:i]})
			s = s[i:]
			continue
		}
		s = s[1:]
		if strings.HasPrefix(s, "%") {
			f.parts = append(f.parts, uidlPart{lit: "%"})
			s = s[1:]
			continue
		}
		p := uidlPart{base: 10}
		if strings.HasPrefix(s, "0") {
			p.zero = true
			s = s[1:]
		}
		j := 0
		for j < len(s) && j < 2 && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		p.width, _ = strconv.Atoi(s[:j])
		s = s[j:]
	modifiers:
		for len(s) > 0 {
			switch s[0] {
			case 'X':
				p.base = 16
			case 'U':
				p.upper = true
			case 'L':
				p.upper = false
			default:
				break modifiers
			}
			s = s[1:]
		}
		if len(s) == 0 || (s[0] != 'u' && s[0] != 'v') {
			return nil, fmt.Errorf("uidl format: only %%u and %%v (with modifiers X, U, L) and %%%% are supported")
		}
		p.verb = s[0]
		hasUID = hasUID || p.verb == 'u'
		s = s[1:]
		f.parts = append(f.parts, p)
	}
	if !hasUID {
		return nil, fmt.Errorf("uidl format: must contain %%u to make ids unique")
	}
	// The longest ids come from the largest numbers, padding from the
	// smallest: check both ends.
	for _, id := range []string{f.Format(^uint32(0), ^uint32(0)), f.Format(1, 1)} {
		if len(id) > 70 {
			return nil, fmt.Errorf("uidl format: ids may be %d characters long, RFC 1939 allows 70", len(id))
		}
		for i := 0; i < len(id); i++ {
			if id[i] < 0x21 || id[i] > 0x7e {
				return nil, fmt.Errorf("uidl format: character %q not allowed in a unique-id", id[i])
			}
		}
	}
	return f, nil
}

// Format returns the unique-id of a message.
func (f *UIDLFormat) Format(uid, uidValidity uint32) string {
	b := make([]byte, 0, 24)
	for _, p := range f.parts {
		if p.verb == 0 {
			b = append(b, p.lit...)
			continue
		}
		v := uid
		if p.verb == 'v' {
			v = uidValidity
		}
		var num [16]byte
		digits := strconv.AppendUint(num[:0], uint64(v), p.base)
		if p.upper {
			for i, d := range digits {
				if d >= 'a' {
					digits[i] = d - 'a' + 'A'
				}
			}
		}
		pad := byte(' ')
		if p.zero {
			pad = '0'
		}
		for n := len(digits); n < p.width; n++ {
			b = append(b, pad)
		}
		b = append(b, digits...)
	}
	return string(b)
}
