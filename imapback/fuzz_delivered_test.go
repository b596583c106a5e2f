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
// the model message itself when every piece was the model's.
func checkDelivered(t *testing.T, fake *fakeUpstream, m Message, got []byte, model []fakeMsg) {
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
	if !tiles(got, mine) {
		t.Fatalf("UID %d delivered %q, which is not what the upstream sent as its body (%d pieces)", m.UID, got, len(mine))
	}
	for _, fm := range model {
		if fm.uid != uint64(m.UID) || int64(len(fm.body)) != m.Size {
			continue
		}
		for _, sb := range mine {
			end := sb.off + int64(len(sb.data))
			if end > int64(len(fm.body)) || !bytes.Equal(sb.data, fm.body[sb.off:end]) ||
				end != int64(len(fm.body)) && len(sb.data) != fuzzChunk {
				return // the upstream sent something else for it too
			}
		}
		if !bytes.Equal(got, fm.body) {
			t.Fatalf("UID %d delivered %q, the upstream's message is %q", m.UID, got, fm.body)
		}
	}
}

// tiles reports whether got is a run of bodies, each at the offset
// where the one before it ends.
func tiles(got []byte, bodies []sentBody) bool {
	seen := map[int]bool{}
	var from func(off int) bool
	from = func(off int) bool {
		if seen[off] {
			return false
		}
		seen[off] = true
		for _, sb := range bodies {
			if sb.off != int64(off) || !bytes.HasPrefix(got[off:], sb.data) {
				continue
			}
			if off+len(sb.data) == len(got) || len(sb.data) > 0 && from(off+len(sb.data)) {
				return true
			}
		}
		return false
	}
	return from(0)
}

// sentBody is a BODY[] value the upstream sent in a FETCH response.
type sentBody struct {
	uids []uint64 // the UIDs named before the response's first literal
	off  int64
	data []byte
}

var (
	reLiteralEnd = regexp.MustCompile(`\{(\d{1,9})\+?\}\r?\n$`)
	reUIDItem    = regexp.MustCompile(`(?i)\bUID (\d{1,10})\b`)
	reBodyBefore = regexp.MustCompile(`(?i)\bBODY\[\](?:<(\d{1,10})>)? $`)
	reQuotedPair = regexp.MustCompile(`\\(.)`)
	reBodyQuoted = regexp.MustCompile(`(?i)\bBODY\[\](?:<(\d{1,10})>)? "((?:[^"\\\r\n]|\\.)*)"`)
)

// sentBodies finds the BODY[] values of the FETCH responses in out,
// literals and quoted strings, more leniently than go-imap reads them.
func sentBodies(out []byte) []sentBody {
	var found []sentBody
	var text []string // the response's text, cut at its literals
	var lits [][]byte
	flush := func() {
		defer func() { text, lits = nil, nil }()
		head := strings.ToUpper(text[0])
		if !strings.HasPrefix(head, "* ") || !strings.Contains(head, " FETCH (") {
			return
		}
		var uids []uint64
		for _, m := range reUIDItem.FindAllStringSubmatch(head, -1) {
			u, _ := strconv.ParseUint(m[1], 10, 64)
			uids = append(uids, u)
		}
		offset := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
		for j, lit := range lits {
			if m := reBodyBefore.FindStringSubmatch(text[j]); m != nil {
				found = append(found, sentBody{uids, offset(m[1]), lit})
			}
		}
		for _, part := range text {
			for _, m := range reBodyQuoted.FindAllStringSubmatch(part, -1) {
				q := reQuotedPair.ReplaceAllString(m[2], "$1")
				found = append(found, sentBody{uids, offset(m[1]), []byte(q)})
			}
		}
	}
	part := ""
	for len(out) > 0 {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			i = len(out) - 1
		}
		line := string(out[:i+1])
		out = out[i+1:]
		m := reLiteralEnd.FindStringSubmatchIndex(line)
		if m == nil {
			text = append(text, part+line)
			part = ""
			flush()
			continue
		}
		n, _ := strconv.Atoi(line[m[2]:m[3]])
		n = min(n, len(out))
		text = append(text, part+line[:m[0]])
		lits = append(lits, out[:n])
		out, part = out[n:], ""
	}
	if len(text) > 0 {
		flush()
	}
	return found
}
