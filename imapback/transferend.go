package imapback

import "fmt"

// checkEnd vets a chunk of n octets that may end the message. A short
// chunk normally does, but Dovecot answers a partial FETCH of a message
// another client expunged during the transfer with BODY[]<offset> NIL,
// OK [EXPUNGEISSUED] and then "* n EXPUNGE": taken for the end, that would
// deliver a truncated message as complete. So a message that ends before
// its snapshot size is an error when it was expunged meanwhile or when the
// upstream sent nothing at all past the first chunk. (A server whose
// RFC822.SIZE is only an estimate is still served: its short last chunk
// is believed unless the message is gone.)
func (r *bodyReader) checkEnd(offset int64, asked, n int) error {
	if n >= asked {
		return nil
	}
	s := r.s
	size := s.msgs[r.i].Size
	end := offset + int64(n)
	if end >= size {
		return nil
	}
	if s.Expunged(r.i) || (n == 0 && offset > 0) {
		return fmt.Errorf("%w: UID %d ended at octet %d of %d: expunged during the transfer", ErrUnavailable, s.msgs[r.i].UID, end, size)
	}
	return nil
}
