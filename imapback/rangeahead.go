package imapback

import "time"

// Range read-ahead. A message larger than one chunk is fetched in ranges
// (bodyReader). Fetching a range and then writing it to the client, one
// after the other, leaves the upstream idle while the client is written
// to: with read-ahead on, the next range is fetched into a second buffer
// while the client is sent the current one.
//
//   - The second buffer is the session's read-ahead buffer (readahead.go),
//     taken only when it holds no unserved batch and the Backend-wide
//     ReadAheadTotal allows, so a session holds no more read-ahead memory
//     than with a batch: one ReadAheadBytes buffer. Without it the ranges
//     are fetched one after the other.
//   - The ranges are read at upstream speed by the reader's goroutine,
//     whatever the client's pace: a slow client never holds a literal
//     open. At most one FETCH is in flight, and the next one starts only
//     when a buffer is free.
//   - The guard (reconnect) and \Seen STOREs stay on the session's
//     goroutine, which sends no command while a transfer is open: guard
//     and Close wait for a running batch (readahead.go), and
//     bodyReader.Close waits for its goroutine.
//   - A failed range is returned by Read like any failed chunk: the
//     transfer is cut and the client never gets the final ".".

// rangeBuffer takes the session's read-ahead buffer as the second buffer
// of a large message, or returns nil: read-ahead is off, the batch still
// holds messages, or the Backend-wide budget is spent.
func (s *Session) rangeBuffer() []byte {
	if !s.readAheadEnabled() {
		return nil
	}
	// The batch is used up when a large message is asked for in a
	// sequential run; one that still holds messages stays.
	s.ra.join()
	if s.ra.left > 0 {
		return nil
	}
	s.ra.release(s.b)
	if !s.ra.acquire(s.b) {
		return nil
	}
	return *s.ra.bufp
}

// awaitClosed waits, after a range or batch FETCH broke the connection,
// until go-imap has noticed, so that the next command reconnects (revive)
// instead of writing to a closed socket.
func (s *Session) awaitClosed() {
	select {
	case <-s.c.Closed():
	case <-time.After(closeTimeout):
	}
}
