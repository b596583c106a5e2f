package imapback

// FuzzUpstreamSession's cache mode: a first login of the user, answered
// only with the fake upstream's defaults, fills the snapshot cache; the
// fuzzed login after it finds the mailbox cached and sends UID SEARCH
// (ESEARCH's RETURN (ALL) when the upstream offers it) and the FETCH of
// new mail with its SELECT. Here are the fake's SEARCH answers, the
// warm-up login and the checks of the snapshot the fuzzed login took.

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Bits of the fuzz target's mode for the snapshot cache.
const (
	modeCache   = 1 << 11 // a cached mailbox: the login is a warm one
	modeESearch = 1 << 24 // the upstream offers ESEARCH
)

// loginAllocBound bounds what one login may allocate: a few kilobytes
// of responses and a snapshot of at most 16 messages, so anything near
// it means a count taken from the upstream was trusted.
const loginAllocBound = 64 << 20

// searchData appends the well-formed answer to the UID SEARCH rest:
// every UID of the model, as ESEARCH ranges if rest asked for RETURN.
func (f *fakeUpstream) searchData(out []byte, tag, rest string) []byte {
	var uids []string
	for _, m := range f.model {
		uids = append(uids, strconv.FormatUint(m.uid, 10))
	}
	if !strings.Contains(strings.ToUpper(rest), "RETURN") {
		return fmt.Appendf(out, "* SEARCH %s\r\n", strings.Join(uids, " "))
	}
	out = fmt.Appendf(out, "* ESEARCH (TAG %q) UID", tag)
	if len(uids) > 0 {
		out = fmt.Appendf(out, " ALL %s", strings.Join(uids, ","))
	}
	return append(out, "\r\n"...)
}

// fillCache logs alice in on a connection that gets only default
// answers, which fill the cache with the model mailbox, and returns the
// index of the first connection after it. A login that fails (a model
// larger than MaxMessages) leaves the cache empty.
func fillCache(ctx context.Context, fake *fakeUpstream, b *Backend, pol Policy) int {
	fake.mu.Lock()
	fake.hold = true
	fake.mu.Unlock()
	if s, err := b.Login(ctx, alice, pol); err == nil {
		s.Close()
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	fake.hold = false
	return len(fake.sent)
}

var (
	reSearchLine = regexp.MustCompile(`(?i)^\* SEARCH((?: +\S+)*)`)
	reESearchAll = regexp.MustCompile(`(?i)^\* ESEARCH\b.*\bALL +([^\s)]+)`)
	reSizeItem   = regexp.MustCompile(`(?i)\bRFC822\.SIZE (\d{1,19})\b`)
)

// searchAnswers collects every UID that a SEARCH or ESEARCH response in
// out names, more leniently than go-imap reads them.
func searchAnswers(out []byte) uidRanges {
	var named uidRanges
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r")
		if m := reSearchLine.FindStringSubmatch(line); m != nil {
			for _, n := range strings.Fields(m[1]) {
				named = append(named, parseUIDRanges(n)...)
			}
		}
		for {
			m := reESearchAll.FindStringSubmatchIndex(line)
			if m == nil {
				break
			}
			named = append(named, parseUIDRanges(line[m[2]:m[3]])...)
			line = line[:m[2]] // an earlier ALL on the line, in a TAG string
		}
	}
	return named
}

// fetchedSizes collects, for each UID, the sizes FETCH responses in out
// gave it.
func fetchedSizes(out []byte) map[uint64]map[int64]bool {
	sizes := map[uint64]map[int64]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(strings.ToUpper(line), " FETCH (") {
			continue
		}
		for _, u := range reUIDItem.FindAllStringSubmatch(line, -1) {
			uid, _ := strconv.ParseUint(u[1], 10, 64)
			for _, z := range reSizeItem.FindAllStringSubmatch(line, -1) {
				n, _ := strconv.ParseInt(z[1], 10, 64)
				if sizes[uid] == nil {
					sizes[uid] = map[int64]bool{}
				}
				sizes[uid][n] = true
			}
		}
	}
	return sizes
}

// checkWarmSnapshot checks the snapshot of a login that took it from
// the cache (outcome hit or partial): its UIDs ascend, each named by a
// SEARCH answer on the login's connections (from the from-th on), with
// the size the cache holds (the model's) or one a FETCH answer gave it.
func checkWarmSnapshot(t *testing.T, fake *fakeUpstream, from int, outcome CacheOutcome, s *Session, model []fakeMsg) {
	if outcome != CacheHit && outcome != CachePartial {
		return
	}
	fake.mu.Lock()
	var out []byte
	for _, o := range fake.sent[from:] {
		out = append(out, o...)
	}
	fake.mu.Unlock()
	named, sizes := searchAnswers(out), fetchedSizes(out)
	isCached := func(uid uint64, size int64) bool {
		for _, m := range model {
			if m.uid == uid {
				return int64(len(m.body)) == size
			}
		}
		return false
	}
	var prev uint64
	for i, m := range s.Messages() {
		uid := uint64(m.UID)
		switch {
		case uid <= prev:
			t.Fatalf("warm snapshot (%s): message %d has UID %d after UID %d", outcome, i, uid, prev)
		case !named.contains(uid):
			t.Fatalf("warm snapshot (%s): UID %d, which no SEARCH answer named", outcome, uid)
		case !sizes[uid][m.Size] && !isCached(uid, m.Size):
			t.Fatalf("warm snapshot (%s): UID %d of size %d, neither cached nor fetched", outcome, uid, m.Size)
		}
		prev = uid
	}
}
