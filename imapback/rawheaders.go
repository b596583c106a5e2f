package imapback

// The UID FETCH of the headers a %m snapshot hashes (LoadUIDLs, or the
// headers a login's snapshot lacked), read beside go-imap by the tap as
// a read-ahead batch's bodies are. Through go-imap each header crossed its
// reader goroutine and a channel, went through its parser item by item,
// and set a read deadline per response: for 10,000 small headers that was
// most of popbridge's processor time for a first UIDL. Here go-imap's
// reader goroutine, inside the tap's Read, copies each header literal
// into a small buffer, hashes it there as soon as it is in, and reuses
// the buffer for the next: no header is held beyond its own.
//
// The answers this path does not hash go to go-imap's way afterwards, in
// one FETCH of their UIDs, so that every header is hashed as before:
// a header larger than the buffer (hashed as it streams in), and one
// answered as a string without a literal (which HeaderHash hashes; NIL
// has no hash, as before, and is not fetched again: Dovecot answers
// NIL for a message another client expunged). A section other than BODY[HEADER] whole (a
// part, a range) passes on to go-imap and is dropped there: it is no
// header, and hashed it would give the message a UIDL that the next
// session, answered properly, changes.

import (
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// headerRoomSize is the buffer a header is hashed in; a larger header
// (no mail server writes one) is fetched again through go-imap.
const headerRoomSize = bigReadSize

// fetchHeaderHashes fetches BODY.PEEK[HEADER] of uids and hashes each
// header as it arrives. It runs on the session's goroutine, under a
// bound (the login's, or guard's) that closes the connection when the
// upstream stalls.
func (s *Session) fetchHeaderHashes(uids imap.UIDSet) (map[imap.UID]string, error) {
	start := time.Now()
	n := uidCount(uids)
	s.bc.Expect(snapshotExpectation(uint32(n)))
	a := &headerAnswer{hashes: make(map[imap.UID]string, n), hh: headerHashers.Get().(*headerHasher)}
	defer headerHashers.Put(a.hh)
	room := bigReads.Get().(*[]byte)
	b := &a.batch
	*b = bodyBatch{room: (*room)[:headerRoomSize], header: true, to: a}
	err := s.tap.fetchBodies(uids, 0, b, s.held, s.c.Closed())
	if b.broken {
		// Whatever was read of the answer, the connection is out of
		// step or failed: close it, so that go-imap fails too.
		s.nc.Close()
	}
	// fetchBodies is over: go-imap's reader no longer writes to room.
	bigReads.Put(room)
	err = s.upstreamErr(err)
	s.observe("UID FETCH", start, err)
	if err != nil {
		return nil, fmt.Errorf("%w: headers: %w", ErrUnavailable, err)
	}
	if len(a.again) == 0 {
		return a.hashes, nil
	}
	more, err := s.fetchHeaderHashesSlowly(a.again)
	if err != nil {
		return nil, err
	}
	for uid, h := range more {
		a.hashes[uid] = h
	}
	return a.hashes, nil
}

// headerAnswer is what the answer to a header FETCH held (a bodySink):
// told by go-imap's reader goroutine under the tap's mutex.
type headerAnswer struct {
	hashes map[imap.UID]string
	again  imap.UIDSet // headers to fetch through go-imap
	hh     *headerHasher
	batch  bodyBatch
}

func (a *headerAnswer) keep(uid imap.UID, off, n int, fits bool) bool {
	switch {
	case uid == 0: // a response that names no message
	case !fits:
		a.again.AddNum(uid)
	default:
		a.hashes[uid] = a.hh.hashBytes(a.batch.room[off : off+n])
	}
	return false // the room takes the next header at the same place
}

func (a *headerAnswer) named(uid imap.UID, bare bool) {
	if bare {
		a.again.AddNum(uid)
	}
}

func (a *headerAnswer) arriving(int, int) {}
