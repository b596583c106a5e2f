package imapback

// FuzzUpstreamSession's delivery check: what a RETR or TOP delivered must
// be made of the bodies the scripted upstream sent for its UID.

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// checkDelivered checks a message read to its end: its octets are
// pieces the upstream sent as that UID's body, each at its offset, and
// the model message itself when every piece was the model's. What a TOP
// (top) delivered may end inside a piece, and is a prefix of the model
// message.
func checkDelivered(t *testing.T, fake *fakeUpstream, m Message, got []byte, model []fakeMsg, top bool) {
	fake.mu.Lock()
	var bodies []sentBody
	for _, out := range fake.sent {
		bodies = append(bodies, sentBodies(out)...)
	}
	fake.mu.Unlock()
	var mine []sentBody
	for _, sb := range bodies {
		for _, u := range sb.uids {
			if u == uint64(m.UID) {
				mine = append(mine, sb)
				break
			}
		}
	}
	if !tiles(got, mine, top) {
		t.Fatalf("UID %d delivered %q, which is not what the upstream sent as its body (%d pieces)", m.UID, got, len(mine))
	}
	for _, fm := range model {
		if fm.uid != uint64(m.UID) || int64(len(fm.body)) != m.Size {
			continue
		}
		for _, sb := range mine {
			end := sb.off + int64(len(sb.data))
			if end > int64(len(fm.body)) || !bytes.Equal(sb.data, fm.body[sb.off:end]) ||
				!top && end != int64(len(fm.body)) && len(sb.data) != fuzzChunk {
				return // the upstream sent something else for it too
			}
		}
		if top && !bytes.HasPrefix(fm.body, got) {
			t.Fatalf("TOP of UID %d delivered %q, the upstream's message is %q", m.UID, got, fm.body)
		}
		if !top && !bytes.Equal(got, fm.body) {
			t.Fatalf("UID %d delivered %q, the upstream's message is %q", m.UID, got, fm.body)
		}
	}
}

// tiles reports whether got is a run of bodies, each at the offset
// where the one before it ends; with prefix, the last may go on past
// the end of got.
func tiles(got []byte, bodies []sentBody, prefix bool) bool {
	seen := map[int]bool{}
	var from func(off int) bool
	from = func(off int) bool {
		if seen[off] {
			return false
		}
		seen[off] = true
		for _, sb := range bodies {
			rest := got[off:]
			if sb.off != int64(off) {
				continue
			}
			if prefix && bytes.HasPrefix(sb.data, rest) {
				return true
			}
			if !bytes.HasPrefix(rest, sb.data) {
				continue
			}
			if len(sb.data) == len(rest) || len(sb.data) > 0 && from(off+len(sb.data)) {
				return true
			}
		}
		return false
	}
	return from(0)
}

// sentBody is a BODY[] value the upstream sent in a FETCH response, or
// a BODY[HEADER] or BODY[TEXT] value, placed where it is in BODY[].
type sentBody struct {
	uids []uint64 // the UIDs named before the response's first literal
	off  int64
	data []byte
}

var (
	reLiteralEnd = regexp.MustCompile(`\{(\d{1,9})\+?\}\r?\n$`)
	reUIDItem    = regexp.MustCompile(`(?i)\bUID (\d{1,10})\b`)
	reBodyBefore = regexp.MustCompile(`(?i)\bBODY\[(HEADER|TEXT)?\](?:<(\d{1,10})>)? $`)
	reQuotedPair = regexp.MustCompile(`\\(.)`)
	reBodyQuoted = regexp.MustCompile(`(?i)\bBODY\[(HEADER|TEXT)?\](?:<(\d{1,10})>)? "((?:[^"\\\r\n]|\\.)*)"`)
)

// sentBodies finds the BODY[] values of the FETCH responses in out,
// literals and quoted strings, more leniently than go-imap reads them.
// A BODY[TEXT] value starts where the response's BODY[HEADER] ends; one
// without a header is left out.
func sentBodies(out []byte) []sentBody {
	offset := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	var found []sentBody
	eachResponse(out, func(text []string, lits [][]byte) {
		head := strings.ToUpper(text[0])
		if !strings.HasPrefix(head, "* ") || !strings.Contains(head, " FETCH (") {
			return
		}
		var uids []uint64
		for _, m := range reUIDItem.FindAllStringSubmatch(head, -1) {
			u, _ := strconv.ParseUint(m[1], 10, 64)
			uids = append(uids, u)
		}
		var values []sentBody
		var sections []string
		for j, lit := range lits {
			if m := reBodyBefore.FindStringSubmatch(text[j]); m != nil {
				values, sections = append(values, sentBody{uids, offset(m[2]), lit}), append(sections, m[1])
			}
		}
		for _, part := range text {
			for _, m := range reBodyQuoted.FindAllStringSubmatch(part, -1) {
				q := reQuotedPair.ReplaceAllString(m[3], "$1")
				values, sections = append(values, sentBody{uids, offset(m[2]), []byte(q)}), append(sections, m[1])
			}
		}
		header := -1
		for k, sec := range sections {
			if strings.EqualFold(sec, "HEADER") && header < 0 {
				header = len(values[k].data)
			}
		}
		for k, sb := range values {
			switch {
			case strings.EqualFold(sections[k], "TEXT") && header < 0:
				continue
			case strings.EqualFold(sections[k], "TEXT"):
				sb.off += int64(header)
			}
			found = append(found, sb)
		}
	})
	return found
}

// eachResponse calls each with every response in out: its text, cut
// at its literals (text[j] the part before lits[j]), and its literals,
// each the octets it announces or as many as follow.
func eachResponse(out []byte, each func(text []string, lits [][]byte)) {
	var text []string
	var lits [][]byte
	for len(out) > 0 {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			i = len(out) - 1
		}
		line := string(out[:i+1])
		out = out[i+1:]
		m := reLiteralEnd.FindStringSubmatchIndex(line)
		if m == nil {
			each(append(text, line), lits)
			text, lits = nil, nil
			continue
		}
		n, _ := strconv.Atoi(line[m[2]:m[3]])
		n = min(n, len(out))
		text = append(text, line[:m[0]])
		lits = append(lits, out[:n])
		out = out[n:]
	}
	if len(text) > 0 {
		each(text, lits)
	}
}
