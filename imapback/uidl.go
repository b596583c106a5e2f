package imapback

// The UIDL format: its parser, what a format needs fetched, and how a
// snapshot's unique-ids are made distinct (dedupeUIDLs).

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
)

// DefaultUIDLFormat is Dovecot's default pop3_uidl_format: the UID, then
// the UIDVALIDITY, each as 8 hex digits (lower-case: Dovecot's X modifier
// writes lower-case hex). Using it means a user moved from Dovecot's POP3
// server to popbridge downloads nothing again.
const DefaultUIDLFormat = "%08Xu%08Xv"

// UIDLFormat turns what is known of a message into a POP3 unique-id
// listing. It understands Dovecot's variables %u (UID) and %v
// (UIDVALIDITY), each with an optional zero flag and width and Dovecot's
// modifiers X (hex), U (upper case) and L (lower case); %g, the message's
// identity on the server (OBJECTID's EMAILID, Gmail's X-GM-MSGID or
// Dovecot's X-GUID) and %m, the hash of its header that Dovecot's
// pop3_migration plugin computes (headerhash.go), both with U or L; and
// %% for a percent sign. %g and %m do not change when a mailbox is
// rebuilt, restored or moved to another server, which changes UIDVALIDITY.
type UIDLFormat struct {
	parts []uidlPart
	needs UIDLNeeds
	// unique: the ids of one mailbox are distinct by construction, the
	// format holding %u once and no %g or %m (everything else in it is
	// the same for every message), so dedupeUIDLs has nothing to do.
	unique bool
}

// UIDLNeeds says which items beyond UID and UIDVALIDITY a format needs
// from the upstream, so that a snapshot fetches only those.
type UIDLNeeds struct {
	Identity   bool // %g
	HeaderHash bool // %m
}

// UIDLVars is what a unique-id may be made of.
type UIDLVars struct {
	UID, UIDValidity uint32
	Identity         string // %g: the server's id of the message
	HeaderHash       string // %m: 40 hex digits (HeaderHash)
}

type uidlPart struct {
	lit   string // literal text, when verb is 0
	verb  byte   // 'u', 'v', 'g' or 'm'
	base  int
	upper bool
	lower bool // L given: for %g and %m, whose case is otherwise kept
	width int
	zero  bool
}

// Bounds used to check a format's ids: the longest identity that the
// servers we know send (Gmail's 64-bit X-GM-MSGID in decimal: 20; Cyrus'
// EMAILID: 25; Dovecot's GUID: 32) with room to spare, and the suffix
// that dedupeUIDLs may append ("-" and up to 7 digits).
const (
	maxIdentityLen = 40
	dedupeSuffix   = 8
)

// ParseUIDLFormat parses and checks a format. The result must be a valid
// RFC 1939 unique-id for any message: 1 to 70 characters in the range
// 0x21 to 0x7E, and it must contain %u, %g or %m so that ids are unique
// (equal %g or %m values are told apart by dedupeUIDLs).
func ParseUIDLFormat(s string) (*UIDLFormat, error) {
	f := &UIDLFormat{}
	distinct, uses := false, 0 // uses counts %u
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
				p.upper, p.lower = true, false
			case 'L':
				p.upper, p.lower = false, true
			default:
				break modifiers
			}
			s = s[1:]
		}
		if len(s) == 0 || strings.IndexByte("uvgm", s[0]) < 0 {
			return nil, fmt.Errorf("uidl format: only %%u, %%v (with modifiers X, U, L), %%g, %%m (with U, L) and %%%% are supported")
		}
		p.verb = s[0]
		s = s[1:]
		switch p.verb {
		case 'g', 'm':
			if p.base != 10 || p.width != 0 || p.zero {
				return nil, fmt.Errorf("uidl format: %%%c takes no width and no X", p.verb)
			}
			f.needs.Identity = f.needs.Identity || p.verb == 'g'
			f.needs.HeaderHash = f.needs.HeaderHash || p.verb == 'm'
			distinct = true
		case 'u':
			distinct = true
			uses++
		}
		f.parts = append(f.parts, p)
	}
	if !distinct {
		return nil, fmt.Errorf("uidl format: must contain %%u, %%g or %%m to make ids unique")
	}
	f.unique = !f.needs.Identity && !f.needs.HeaderHash && uses == 1
	// The longest ids come from the largest numbers and identities,
	// padding from the smallest: check both ends.
	longest := UIDLVars{^uint32(0), ^uint32(0), strings.Repeat("9", maxIdentityLen), strings.Repeat("f", 40)}
	shortest := UIDLVars{1, 1, "1", strings.Repeat("0", 40)}
	for _, v := range []UIDLVars{longest, shortest} {
		id := f.FormatVars(v)
		if max := 70 - f.suffixRoom(); len(id) > max {
			return nil, fmt.Errorf("uidl format: ids may be %d characters long, RFC 1939 allows 70 (less %d when %%g or %%m may need a suffix)", len(id), f.suffixRoom())
		}
		if err := checkUIDL(id); err != nil {
			return nil, fmt.Errorf("uidl format: %v", err)
		}
	}
	return f, nil
}

// suffixRoom is the room a format's ids keep for dedupeUIDLs: formats
// with %u are unique by themselves.
func (f *UIDLFormat) suffixRoom() int {
	for _, p := range f.parts {
		if p.verb == 'u' {
			return 0
		}
	}
	return dedupeSuffix
}

// checkUIDL reports a character RFC 1939 does not allow in a unique-id.
func checkUIDL(id string) error {
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return fmt.Errorf("character %q not allowed in a unique-id", id[i])
		}
	}
	return nil
}

// Needs tells which items the format needs besides UID and UIDVALIDITY.
func (f *UIDLFormat) Needs() UIDLNeeds { return f.needs }

// Format returns the unique-id of a message from its UID and its
// mailbox's UIDVALIDITY (%g and %m are empty).
func (f *UIDLFormat) Format(uid, uidValidity uint32) string {
	return f.FormatVars(UIDLVars{UID: uid, UIDValidity: uidValidity})
}

// FormatVars returns the unique-id of a message.
func (f *UIDLFormat) FormatVars(v UIDLVars) string {
	if len(f.parts) == 1 && !f.parts[0].upper && !f.parts[0].lower {
		// A format of %g or %m alone is the value as it is: no copy
		// of it for each message of a snapshot.
		switch f.parts[0].verb {
		case 'g':
			return v.Identity
		case 'm':
			return v.HeaderHash
		}
	}
	// Room for the longest unique-id there is: the id is built on the
	// stack, and only the string is allocated.
	b := make([]byte, 0, maxUIDLLen)
	for _, p := range f.parts {
		switch p.verb {
		case 0:
			b = append(b, p.lit...)
			continue
		case 'g', 'm':
			s := v.Identity
			if p.verb == 'm' {
				s = v.HeaderHash
			}
			switch {
			case p.upper:
				s = strings.ToUpper(s)
			case p.lower:
				s = strings.ToLower(s)
			}
			b = append(b, s...)
			continue
		}
		n := v.UID
		if p.verb == 'v' {
			n = v.UIDValidity
		}
		var num [16]byte
		digits := strconv.AppendUint(num[:0], uint64(n), p.base)
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

// dedupeUIDLs makes the unique-ids of a snapshot distinct. ids must be in
// UID order (mailbox order is UID order). The first message with an id
// keeps it; each later one with the same id gets "-2", "-3", ... (the
// first of these not already taken), counted in UID order.
//
// Equal ids come from messages with equal headers (%m) or server
// identities (%g: a COPY within the mailbox), or from an imported id that
// equals a made one. Counting in UID order is stable across sessions and
// across a rebuild that APPENDs the messages in their old order, which
// is what %m is for. When one of the equal messages is expunged, the
// later ones move down a number and a client sees, for the first of them,
// the id of the one that went: it takes the survivor for the message it
// already has. Its header is the same, Message-ID and Received lines
// included, so it is a second delivery of the same mail; no message a
// client has not seen is hidden unless it was a byte-for-byte copy of
// the header of one it has.
//
// It reports whether it changed any.
func dedupeUIDLs(ids []string) (changed bool) {
	if distinctUIDLs(ids) {
		return false // as most are
	}
	seen := make(map[string]int, len(ids))
	for _, id := range ids {
		seen[id] = 0
	}
	taken := make(map[string]bool, len(ids))
	for i, id := range ids {
		if !taken[id] {
			taken[id] = true
			continue
		}
		for n := max(seen[id], 1) + 1; ; n++ {
			// The suffix takes the end of an id too long for it (an id
			// of a merged folder may already be 70 characters long).
			suffix := "-" + strconv.Itoa(n)
			c := id[:min(len(id), maxUIDLLen-len(suffix))] + suffix
			if !taken[c] {
				taken[c] = true
				seen[id] = n
				ids[i], changed = c, true
				break
			}
		}
	}
	return changed
}

// distinctUIDLs reports that ids are all different, by their 64-bit
// hashes: ids whose hashes differ differ. Cheaper than a map of the
// strings; equal hashes (equal ids, or rarely a collision) answer false,
// and dedupeUIDLs then compares the ids themselves.
func distinctUIDLs(ids []string) bool {
	seed := maphash.MakeSeed()
	seen := make(map[uint64]struct{}, len(ids))
	for _, id := range ids {
		h := maphash.String(seed, id)
		if _, dup := seen[h]; dup {
			return false
		}
		seen[h] = struct{}{}
	}
	return true
}
