package imapback

import (
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// Bounds on the snapshot, so that its memory follows what the upstream
// actually sent and not the numbers it named. An EXISTS is only a
// number: "* 4000000000 EXISTS" followed by one FETCH for sequence number
// 4,000,000,000 used to make the session reserve a slot per sequence
// number up to it. Here:
//
//   - maildropBound refuses a maildrop larger than the configured
//     maximum, as soon as the upstream names its size (EXISTS, or the
//     UIDs a view's SEARCH found) and again while the FETCH answers
//     arrive, whatever the numbers said: ErrMaildropTooLarge, which the
//     proxy answers with -ERR [SYS/PERM] for that user only.
//   - seqIndex maps sequence numbers to the snapshot's messages with one
//     entry per message of the snapshot, for the EXPUNGE responses that
//     name messages by sequence number.
//   - snapshotExpectation, searchExpectation, listExpectation and
//     commandExpectation bound the responses to those commands on the
//     upstream connection (bounds.go).

// DefaultMaxMessages is the default largest maildrop served. Taking the
// snapshot of a million messages peaks at about 130 MB; a POP3 client
// would need days to download such a maildrop anyway.
const DefaultMaxMessages = 1_000_000

// ErrMaildropTooLarge: the maildrop holds more messages than popbridge
// is configured to serve. It is no upstream failure: trying again gives
// the same answer, until the mailbox shrinks.
var ErrMaildropTooLarge = errors.New("upstream maildrop holds more messages than allowed")

// maildropBound is the most messages a snapshot may hold.
type maildropBound int

// checkExists checks the EXISTS of SELECT, for a snapshot of the whole
// mailbox.
func (b maildropBound) checkExists(exists uint32) error {
	if uint64(exists) > uint64(b) {
		return fmt.Errorf("%w: %d messages, at most %d served", ErrMaildropTooLarge, exists, b)
	}
	return nil
}

// checkUIDs checks the UIDs a view's SEARCH found.
func (b maildropBound) checkUIDs(uids imap.UIDSet) error {
	if n := countUIDs(uids); n > uint64(b) {
		return fmt.Errorf("%w: %d messages in the view, at most %d served", ErrMaildropTooLarge, n, b)
	}
	return nil
}

// checkFetched checks the count of FETCH answers received so far,
// whatever EXISTS said: a server may send more than it announced.
func (b maildropBound) checkFetched(n int) error {
	if n > int(b) {
		return fmt.Errorf("%w: more than %d messages in the FETCH answer", ErrMaildropTooLarge, b)
	}
	return nil
}

// responseSlack is the room left for responses no command asked for:
// flag changes and expunges by other clients, EXISTS, status lines.
const responseSlack = 1000

// commandExpectation bounds the responses to any other command in a
// mailbox of exists messages (the larger of the snapshot's and the
// mailbox's count now): a NOOP collects an EXPUNGE or a flag change by
// another client for each at most, and go-imap starts a goroutine for
// each FETCH that no command asked for.
func commandExpectation(exists uint32, b maildropBound) Expectation {
	return Expectation{Responses: 2*min(int64(exists), int64(b)) + responseSlack}
}

// listExpectation bounds the answer to a LIST (the search for the trash
// folder), which go-imap collects whole: ten thousand folders, in 8 MiB.
func listExpectation() Expectation {
	return Expectation{Responses: 10_000 + responseSlack, Octets: 8 << 20}
}

// snapshotExpectation bounds the responses to the snapshot's FETCH of
// up to n messages (n: EXISTS, or the UIDs of the view, already checked
// against the maximum): one FETCH each, and as many again for flag
// changes or expunges by other clients during the command.
func snapshotExpectation(n uint32) Expectation {
	return Expectation{Responses: 2*int64(n) + responseSlack}
}

// searchExpectation bounds the responses to a view's UID SEARCH in a
// mailbox of exists messages (at most the maximum): without ESEARCH the
// answer lists every UID, up to ten digits and a space each.
func searchExpectation(exists uint32, b maildropBound) Expectation {
	n := min(int64(exists), int64(b))
	return Expectation{Responses: responseSlack, ResponseOctets: 11*n + 4096}
}

// seqIndex maps the mailbox's sequence numbers to snapshot indices. It
// holds the snapshot's messages only, in sequence order; an EXPUNGE of a
// message outside the snapshot (not in the view, or arrived since) still
// moves the numbers of those after it.
type seqIndex []seqEntry

type seqEntry struct {
	seq uint32 // the message's sequence number now
	i   int32  // its index in the snapshot
}

// newSeqIndex indexes a snapshot whose message i has sequence number
// seqs[i]; seqs ascend, as fetchSizes returns them.
func newSeqIndex(seqs []uint32) seqIndex {
	x := make(seqIndex, len(seqs))
	for i, n := range seqs {
		x[i] = seqEntry{seq: n, i: int32(i)}
	}
	return x
}

// expunge applies "* n EXPUNGE" and returns the snapshot index of the
// message it removed, or -1 for one outside the snapshot (or for 0, a
// server bug).
func (x *seqIndex) expunge(n uint32) int {
	if n == 0 {
		return -1
	}
	p, found := slices.BinarySearchFunc(*x, n, func(e seqEntry, n uint32) int {
		return cmpUint32(e.seq, n)
	})
	gone := -1
	if found {
		gone = int((*x)[p].i)
		*x = slices.Delete(*x, p, p+1)
	}
	for q := p; q < len(*x); q++ {
		(*x)[q].seq--
	}
	return gone
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// seqUID is one answer of a FETCH 1:* (UID) after a reconnect.
type seqUID struct {
	seq uint32
	uid imap.UID
}

// remapSeqIndex builds the index after a reconnect from the answers of
// FETCH 1:* (UID), in any order, against the snapshot msgs. It reports
// which of msgs are still in the mailbox. A sequence number given twice
// is a server bug, refused rather than guessed at.
func remapSeqIndex(msgs []Message, got []seqUID) (seqIndex, []bool, error) {
	index := make(map[imap.UID]int32, len(msgs))
	for i, m := range msgs {
		index[m.UID] = int32(i)
	}
	var x seqIndex
	present := make([]bool, len(msgs))
	for _, g := range got {
		if i, ok := index[g.uid]; ok && g.seq > 0 && !present[i] {
			x = append(x, seqEntry{seq: g.seq, i: i})
			present[i] = true
		}
	}
	slices.SortFunc(x, func(a, b seqEntry) int { return cmpUint32(a.seq, b.seq) })
	for k := 1; k < len(x); k++ {
		if x[k].seq == x[k-1].seq {
			return nil, nil, fmt.Errorf("FETCH answered sequence number %d twice", x[k].seq)
		}
	}
	return x, present, nil
}

// maxFetchHint caps the room a snapshot's FETCH reserves before its
// answers come: that many messages cost about 1 MB, and a mailbox that
// names more in its EXISTS has to send them to get the room.
const maxFetchHint = 1 << 14

// newMailHint is the room reserved for the mail that arrived since a
// cached snapshot.
const newMailHint = 16

// fetchHint is the room to reserve for the answers of a FETCH of uids:
// their count, or for "1:*" what the mailbox holds now, at most
// maxFetchHint (the numbers are only what the upstream named). A FETCH
// of "n:*" above 1 asks for the mail that arrived since a cached
// snapshot, mostly none: its answers grow the room as they come.
func (s *Session) fetchHint(uids imap.UIDSet, b maildropBound) int {
	n := 0
	for _, r := range uids {
		if r.Stop == 0 && r.Start > 1 || r.Start == 0 && r.Stop > 1 {
			n += newMailHint
			continue
		}
		if r.Stop == 0 || r.Start == 0 {
			if mbox := s.c.Mailbox(); mbox != nil {
				n = int(mbox.NumMessages)
			}
			break
		}
		n += int(max(r.Start, r.Stop)-min(r.Start, r.Stop)) + 1
	}
	return min(n, int(b), maxFetchHint)
}
