package imapback

// The size check: a body that cannot be the listed message is not
// delivered as that message.
//
// Some servers answer a FETCH of a message that another client expunged,
// and that they have not yet reported as expunged, with OK and a stand-in
// body: Courier serves a 129-octet "message unavailable" note, and cuts
// partial fetches from that note. Delivered, it would be stored by the
// POP3 client under the real message's UIDL.
//
// The rule. The snapshot's RFC822.SIZE is the number of octets the
// server serves as BODY[] (RFC 3501 section 2.3.4: the size "expressed
// in the format used by the server's protocol", so a server that stores
// LF and serves CRLF counts the CRs it adds, as Courier and Dovecot do).
// A correct server's body is therefore exactly as long as listed, and no
// allowance is made for line ends: any difference, shorter or longer, is
// checked with the upstream before the last octet reaches the client. The
// check costs a round trip only for a body of the wrong length:
//
//  1. NOOP, after which a server reports the EXPUNGEs it held back
//     (Courier reports them only then);
//  2. if none named the message, UID FETCH of its FLAGS: no answer for the
//     UID (or NO [EXPUNGEISSUED]) means it is gone.
//
// A message that is gone is ErrGone when nothing was sent yet (-ERR, as
// for any expunged message), and an ErrUnavailable error that cuts the
// client off without the terminating line when part of it was. A message
// that is still there was served by a server that miscounts its sizes
// (reported for Exchange): it is delivered, and the difference is logged
// and counted (SizeObserver). If the check itself fails, the body is not
// delivered as complete.
//
// A stand-in exactly as long as the listed message cannot be told from
// it by its length; Courier's is 129 octets.
//
// The check is sent by whichever goroutine owns the connection at the
// end of the body: the reader's goroutine for a streamed message, the
// session's goroutine (after the batch FETCH is over) for a batched one.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// SizeObserver is implemented by an Options.Observer that counts the
// messages delivered with a length other than their listed size, after
// the upstream confirmed that they still exist.
type SizeObserver interface {
	// SizeMismatch reports one such message: its RFC822.SIZE in the
	// snapshot and the octets the upstream served.
	SizeMismatch(listed, served int64)
}

// vetSize decides whether message i's body, which ended after served
// octets, may be delivered: nil when served is the listed size or the
// message still exists, an ErrGone error when it is gone, an
// ErrUnavailable error when the upstream could not say. Only the
// goroutine that owns the connection may call it.
func (s *Session) vetSize(i int, served int64) error {
	m := s.msgs[i]
	if served == m.Size {
		return nil
	}
	present, err := s.present(i)
	if err != nil {
		return fmt.Errorf("%w: UID %d served %d octets, listed %d, and checking whether it exists failed: %v", ErrUnavailable, m.UID, served, m.Size, err)
	}
	if !present {
		s.markGone(i)
		return fmt.Errorf("%w: UID %d (the upstream served %d octets of a stand-in for its %d)", ErrGone, m.UID, served, m.Size)
	}
	s.logger().Warn("upstream served a message with another length than its RFC822.SIZE", "uid", m.UID, "listed", m.Size, "served", served)
	if o, ok := s.b.opts.Observer.(SizeObserver); ok {
		o.SizeMismatch(m.Size, served)
	}
	return nil
}

// vetBatched is vetSize for a body of the batch, from the session's
// goroutine: it waits for the batch FETCH to end and bounds the check.
func (s *Session) vetBatched(ctx context.Context, i int, served int64) error {
	if served == s.msgs[i].Size {
		return nil
	}
	done, err := s.guardSettled(ctx)
	defer done()
	if err != nil {
		return err
	}
	return s.vetSize(i, served)
}

// codeExpungeIssued (RFC 5530) answers a command that named a message
// another client expunged.
const codeExpungeIssued imap.ResponseCode = "EXPUNGEISSUED"

// present asks the upstream whether message i still exists: NOOP, then,
// unless that reported it expunged, UID FETCH of its flags.
func (s *Session) present(i int) (bool, error) {
	start := time.Now()
	err := s.c.Noop().Wait()
	s.observe("NOOP", start, err)
	if err != nil {
		return false, err
	}
	if s.Expunged(i) {
		return false, nil
	}
	uid := s.msgs[i].UID
	start = time.Now()
	msgs, err := s.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	s.observe("UID FETCH", start, err)
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Code == codeExpungeIssued {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if s.Expunged(i) {
		return false, nil
	}
	for _, m := range msgs {
		if m.UID == uid {
			return true, nil
		}
	}
	return false, nil
}

// checkEnd vets a chunk of n octets that may end the message. A short
// chunk normally does, but Dovecot answers a partial FETCH of a message
// another client expunged during the transfer with BODY[]<offset> NIL,
// OK [EXPUNGEISSUED] and then "* n EXPUNGE": taken for the end, that would
// deliver a truncated message as complete. So a message that ends before
// its snapshot size is an error when it was expunged meanwhile or when the
// upstream sent nothing at all past the first chunk. Any other end at a
// length other than the listed size is checked with the upstream
// (vetSize, sizecheck.go); a message gone by then is ErrGone if this is
// the first chunk, which the client has not seen yet.
func (r *bodyReader) checkEnd(offset int64, asked, n int) error {
	if n >= asked {
		return nil
	}
	s := r.s
	m := s.msgs[r.i]
	end := offset + int64(n)
	if end < m.Size && (s.Expunged(r.i) || (n == 0 && offset > 0)) {
		return fmt.Errorf("%w: UID %d ended at octet %d of %d: expunged during the transfer", ErrUnavailable, m.UID, end, m.Size)
	}
	err := s.vetSize(r.i, end)
	if offset > 0 && errors.Is(err, ErrGone) {
		return fmt.Errorf("%w: UID %d ended at octet %d of %d: expunged during the transfer", ErrUnavailable, m.UID, end, m.Size)
	}
	return err
}
