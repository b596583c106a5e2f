package imapback

// FuzzUpstreamSession's check of a cold %m snapshot: each message's UIDL
// is the hash of a header the scripted upstream sent for its UID during
// the login, in the snapshot's FETCH or the FETCH of the headers it
// lacked, or the default format when none was sent.

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	reHeaderNil    = regexp.MustCompile(`(?i)\bBODY\[HEADER\] NIL\b`)
	reHeaderBefore = regexp.MustCompile(`(?i)\bBODY\[HEADER\] $`)
	reHeaderQuoted = regexp.MustCompile(`(?i)\bBODY\[HEADER\] "((?:[^"\\\r\n]|\\.)*)"`)
)

// sentHeaders are the headers an upstream sent for one UID.
type sentHeaders struct {
	values  [][]byte
	lacking bool // a FETCH response for the UID had NIL or no header
}

// headersSent finds the BODY[HEADER] values of the FETCH responses in
// out by UID. A response that names no UID, or more than one, is left
// out: which message it is for depends on how go-imap reads it.
func headersSent(out []byte, into map[uint64]*sentHeaders) {
	eachResponse(out, func(text []string, lits [][]byte) {
		if !strings.HasPrefix(text[0], "* ") || !strings.Contains(strings.ToUpper(text[0]), " FETCH (") {
			return
		}
		uids := map[uint64]bool{}
		var uid uint64
		for _, part := range text {
			for _, m := range reUIDItem.FindAllStringSubmatch(part, -1) {
				uid, _ = strconv.ParseUint(m[1], 10, 64)
				uids[uid] = true
			}
		}
		if len(uids) != 1 {
			return
		}
		sh := into[uid]
		if sh == nil {
			sh = &sentHeaders{}
			into[uid] = sh
		}
		n := len(sh.values)
		for j, lit := range lits {
			if reHeaderBefore.MatchString(text[j]) {
				sh.values = append(sh.values, lit)
			}
		}
		for _, part := range text {
			for _, m := range reHeaderQuoted.FindAllStringSubmatch(part, -1) {
				sh.values = append(sh.values, []byte(reQuotedPair.ReplaceAllString(m[1], "$1")))
			}
			if reHeaderNil.MatchString(part) {
				sh.lacking = true
			}
		}
		if len(sh.values) == n {
			sh.lacking = true
		}
	})
}

// checkHeaderHashes checks the UIDLs of a cold %m snapshot against
// sent, what the login's connections were sent by the time it returned.
// A UIDL may carry dedupeUIDLs' suffix, as two messages may have been
// sent the same header.
func checkHeaderHashes(t *testing.T, s *Session, sent [][]byte) {
	byUID := map[uint64]*sentHeaders{}
	for _, out := range sent {
		headersSent(out, byUID)
	}
	for _, m := range s.Messages() {
		sh := byUID[uint64(m.UID)]
		if sh == nil {
			sh = &sentHeaders{}
		}
		var allowed []string
		for _, v := range sh.values {
			if h, err := HeaderHash(bytes.NewReader(v)); err == nil {
				allowed = append(allowed, h)
			}
		}
		if len(sh.values) == 0 || sh.lacking {
			allowed = append(allowed, defaultUIDL.Format(uint32(m.UID), s.rc.uidValidity))
		}
		ok := false
		for _, a := range allowed {
			ok = ok || m.UIDL == a || strings.HasPrefix(m.UIDL, a+"-")
		}
		if !ok {
			t.Fatalf("UID %d has UIDL %q; the headers sent for it (%q) allow only %q", m.UID, m.UIDL, sh.values, allowed)
		}
	}
}
