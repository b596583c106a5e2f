package imapback

// The batch of a pipelining client: the RETR and TOP commands it already
// sent behind the one that runs (pop3front looks at them; SetUpcoming)
// say which messages it wants next, so they are fetched together in the
// read-ahead batch (readahead.go), in one UID FETCH, instead of guessed.
//
//   - What the client queued is fetched, and nothing else, within the
//     read-ahead's bounds: messages up to ChunkSize (a TOP's up to
//     topChunk, which a TOP fetches whole anyway), ReadAheadMessages of
//     them and ReadAheadBytes in all. A request that does not fit ends
//     the batch, so a large message finds the batch used up when its
//     turn comes (its ranges may then borrow the buffer). The upstream
//     answers in mailbox order: a client that asks backwards waits for
//     its batch, not for a round trip per message.
//   - The one exception: a queue that goes on from the message asked for
//     now, RETR after RETR, is the sequential client the read-ahead
//     guesses for without a queue, and its window applies as it would
//     (it may reach past the queue, as read-ahead does), but never
//     covers less than the queue.
//   - While the batch still holds the message asked for and its FETCH is
//     over, the messages queued beyond it are fetched into the buffer's
//     free room (topUp): the next batch is on its way while this one is
//     sent, and the client does not wait for a round trip between them.
//   - The bodies are fetched with BODY.PEEK[]: \Seen is set by Retrieved
//     alone, after the client received a message in full, and a client
//     that leaves before its queued commands run leaves nothing marked.
//     The FETCH's goroutine and the buffer are the read-ahead's, and are
//     waited for and given back as its are.

import (
	"context"
	"iter"
	"slices"
)

// topChunk is the most a TOP fetches in its first range: a TOP of a
// message up to this size fetches all of it, and so may come from a
// batch.
const topChunk = 64 << 10

// topUpLead is how few unserved messages the batch holds before topUp
// looks at the queue: a client rarely queues more commands than that, so
// looking earlier would find nothing new.
const topUpLead = 32

// SetUpcoming gives the session what the client queued behind the running
// command: the index and line count (-1 for RETR) of each RETR and TOP,
// in order. The session reads it only within Retrieve, when it plans a
// batch.
func (s *Session) SetUpcoming(upcoming iter.Seq2[int, int]) { s.ra.upcoming = upcoming }

// batchable reports whether a Retrieve of message i with lines can be
// served from a batch.
func (s *Session) batchable(i, lines int) bool {
	limit := int64(min(s.b.opts.ChunkSize, s.b.opts.ReadAheadBytes))
	if lines >= 0 {
		limit = min(limit, topChunk)
	}
	return s.msgs[i].Size <= limit
}

// queuedBatch lists the batch that starts with message i (asked for with
// lines) when the client queued requests behind it: i, then each queued
// message once, in the client's order, until one does not fit the
// bounds. run reports a queue that goes on from i, RETR after RETR, or
// no queue at all: then the read-ahead's window applies. The batch
// replaces the one held now.
func (s *Session) queuedBatch(i, lines int) (list []int, run bool) {
	return s.queued([]int{i}, lines < 0, int64(s.b.opts.ReadAheadBytes), false)
}

// queued adds to list the messages the client queued, as queuedBatch
// says, within room octets; run starts as whether list so far is a run
// of RETRs. With more, the batch held now stays: what it holds is not
// fetched again, and it counts against ReadAheadMessages.
func (s *Session) queued(list []int, run bool, room int64, more bool) ([]int, bool) {
	ra := &s.ra
	if ra.upcoming == nil {
		return list, true
	}
	var total int64
	for _, j := range list {
		total += s.msgs[j].Size
	}
	held := 0
	if more {
		held = ra.left
	}
	queued := false
	for j, lines := range ra.upcoming {
		queued = true
		if held+len(list) >= s.b.opts.ReadAheadMessages || !s.batchable(j, lines) ||
			total+s.msgs[j].Size > room {
			run = run && lines < 0 // a large RETR ends a sequential batch too
			break
		}
		if (more && ra.holds(j)) || slices.Contains(list, j) || s.Expunged(j) {
			continue // fetched once; or answered -ERR without a FETCH
		}
		run = run && lines < 0 && (len(list) == 0 || j == list[len(list)-1]+1)
		total += s.msgs[j].Size
		list = append(list, j)
	}
	return list, run || !queued
}

// topUp fetches the messages the client queued that the batch does not
// hold yet, while the batch still holds message i, which the client asks
// for now. It runs only when the previous FETCH is over, into the
// buffer's free room: after the newest body, or before the oldest
// unserved one. The readers of earlier messages are closed by then (the
// POP3 side closes each before its next command), so only unserved
// bodies, i among them, are kept. What does not fit waits for a later
// Retrieve.
func (s *Session) topUp(ctx context.Context, i int) {
	ra := &s.ra
	if ra.upcoming == nil || ra.bufp == nil || ra.left > topUpLead {
		return
	}
	ra.receiveArrived()
	if ra.incoming != nil && ra.coming == 0 {
		ra.join() // all bodies are in: only the FETCH's OK is to come
	}
	if ra.incoming != nil || !ra.holds(i) {
		return
	}
	// Forget the served bodies before the oldest unserved one: their
	// room is free, and take need not look at them again.
	k := 0
	for k < len(ra.items) && ra.items[k].served {
		k++
	}
	ra.items = append(ra.items[:0], ra.items[k:]...)
	base, room := ra.room()
	next := ra.items[len(ra.items)-1].i + 1 // after the newest body
	list, run := s.queued(nil, true, int64(len(room)), true)
	switch {
	case len(list) == 0:
		return
	case run && list[0] == next:
		// The sequential client goes on past the batch.
		ra.window = min(2*ra.window, s.b.opts.ReadAheadMessages)
		list = s.sequentialBatch(next, max(ra.window-ra.left, len(list)), int64(len(room)))
	case len(list) < ra.left:
		// A FETCH of fewer messages than the batch still holds would
		// cost the upstream a command for little: they are asked for once
		// as many are queued.
		return
	}
	var need int64
	for _, j := range list {
		need += s.msgs[j].Size
	}
	if err := s.fetchBatch(ctx, -1, list, room[:need], base); err != nil {
		// Nothing was sent; the next upstream command meets the failure.
		s.logger().Debug("fetching queued messages ahead failed", "err", err)
	}
}

// receiveArrived adds the bodies that arrived to the batch, and notes the
// end of the FETCH if it came, without waiting.
func (ra *readAhead) receiveArrived() {
	for ra.incoming != nil {
		select {
		case it, ok := <-ra.incoming:
			ra.add(it, ok)
		default:
			return
		}
	}
}

// holds reports whether the batch holds message i, not served yet.
func (ra *readAhead) holds(i int) bool {
	for _, it := range ra.items {
		if it.i == i && !it.served {
			return true
		}
	}
	return false
}

// room returns the largest free part of the batch buffer, and where it
// starts, when the batch's FETCH is over and ra.items starts with the
// oldest unserved body: the bodies lie in the buffer in the order they
// came, wrapping around to its start.
func (ra *readAhead) room() (base int, room []byte) {
	buf := *ra.bufp
	first := ra.items[0].off
	last := ra.items[len(ra.items)-1]
	head := last.off + last.n
	if head <= first && len(ra.items) > 1 {
		return head, buf[head:first] // wrapped: the free room lies between
	}
	if len(buf)-head >= first {
		return head, buf[head:]
	}
	return 0, buf[:first]
}
