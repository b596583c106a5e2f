package imapback

// The snapshot's FETCH sent with the SELECT. Through a distant upstream
// every wait for an answer costs a round trip, and the snapshot of a
// mailbox without a view needs nothing from the SELECT's answer to ask
// for the sizes: UID FETCH 1:* goes out right behind the SELECT, and the
// session reads both answers in order. What changes:
//
//   - The bound on the responses set before the SELECT covers both
//     commands: the SELECT's slack plus the FETCH of the largest maildrop
//     served, since the FETCH's answers may come before the SELECT's
//     completion is read. Once it is, the bound tightens to what EXISTS
//     allows, as without pipelining: go-imap's reader hands each FETCH
//     answer to the command before it reads the next, so few can have
//     passed under the loose bound.
//   - A SELECT that fails makes the server answer the FETCH with BAD or
//     NO (no mailbox is selected), which is read and dropped; the
//     fallback SELECT (folders.go) then fetches as before.
//   - A mailbox larger than the maximum is refused once the SELECT's
//     EXISTS is in, as before: the FETCH then is not read but cut off
//     with the connection. One that grew past it between the two
//     commands is stopped by the count of FETCH answers.
//   - An empty mailbox's FETCH is read and dropped: a message arriving
//     between the two commands waits for the next session, as any
//     arriving during a session does.
//
// A view (a device's keyword, a maximum age) needs its UID SEARCH first,
// so its snapshot is not pipelined.

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// snapshotItems are the items the snapshot fetches of every message:
// UID and size, and the header for a UIDL format with %m whose UIDLs
// are needed at login (else LoadUIDLs fetches it). Asking for the
// header in the same command spares the upstream a second pass over the
// mailbox, and the session the round trip of a second FETCH; the header
// is hashed as it streams in (fetchSizesOnce), so none is held. Sent
// behind the SELECT it is read only after the SELECT's completion, which
// a server sends before answering a FETCH that needs the mailbox.
func (s *Session) snapshotItems() *imap.FetchOptions {
	o := sizeItems()
	if s.b.opts.UIDL.Needs().HeaderHash && !s.hashesLater() {
		o.BodySection = []*imap.FetchItemBodySection{headerSection}
	}
	return o
}

// sizeItems are UID and size alone, for the FETCH of new mail that a
// cached mailbox sends with its SEARCH (cachesnap.go). The headers of
// the few new messages come with a FETCH of their own (uidlfetch.go).
func sizeItems() *imap.FetchOptions {
	return &imap.FetchOptions{UID: true, RFC822Size: true}
}

// headerSection is the header a %m hash is made of, fetched without
// setting \Seen.
var headerSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}

// pipelined reports whether the snapshot's FETCH goes out with the
// SELECT.
func (s *Session) pipelined() bool { return s.viewCriteria() == nil }

// selectExpectation bounds the responses to the SELECT and, if
// pipelined, to the FETCH sent with it (and to the SEARCH of a cached
// mailbox, cachesnap.go).
func (s *Session) selectExpectation() Expectation {
	if !s.pipelined() {
		return Expectation{Responses: responseSlack}
	}
	b := maildropBound(s.b.opts.MaxMessages)
	e := snapshotExpectation(uint32(b))
	e.Responses += responseSlack
	if s.cache.snap != nil {
		e.ResponseOctets = searchExpectation(uint32(b), b).ResponseOctets
	}
	return e
}

// pipelineSnapshot sends the snapshot's UID FETCH 1:* without waiting
// for the SELECT just sent (or, for a cached mailbox, the FETCH of new
// mail and its SEARCH), or returns nil when the session has a view.
func (s *Session) pipelineSnapshot() *imapclient.FetchCommand {
	if !s.pipelined() {
		return nil
	}
	if s.cache.snap != nil {
		return s.sendWarm()
	}
	return s.c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, s.snapshotItems())
}
