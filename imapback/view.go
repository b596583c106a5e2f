package imapback

import (
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// A view is the part of the mailbox one session sees: without a device
// and without MaxAgeDays or StartDate all of it, fetched with one UID FETCH 1:*.
// Otherwise a UID SEARCH picks the messages first, so the snapshot costs
// what the view holds, not what the mailbox holds: a device that has
// deleted 99,000 of 100,000 messages fetches the sizes of 1,000. The
// device's state lives upstream as a keyword on each message, so every
// popbridge replica serves the same view and a restart loses nothing.
//
// UIDLs depend only on the message (UID and UIDVALIDITY, its identity or
// header hash), so they are the same in every view: a client moved between
// views downloads nothing again. The one exception: equal ids are counted
// within the view (dedupeUIDLs), so a view that hides the first of two
// equal messages serves the second under the bare id.

// checkKeywords refuses a device view on a mailbox that cannot keep the
// device's keyword: its deletes would be forgotten and the device would
// download everything again. RFC 3501 (section 7.1) lets a client assume
// all flags permanent when SELECT has no PERMANENTFLAGS, but go-imap
// reports an absent and an empty list alike, and an empty one means no
// flag is kept: both are refused. The servers that matter (Dovecot,
// Cyrus, Gmail, Exchange) always send the list.
func (s *Session) checkKeywords(sel *imap.SelectData) error {
	if s.pol.Device == "" {
		return nil
	}
	kw := DeviceKeyword(s.pol.Device)
	for _, f := range sel.PermanentFlags {
		if f == imap.FlagWildcard || strings.EqualFold(string(f), string(kw)) {
			return nil
		}
	}
	return fmt.Errorf("%w: PERMANENTFLAGS %v has neither \\* nor %s", ErrNoKeywords, sel.PermanentFlags, kw)
}

// viewCriteria returns the UID SEARCH criteria of the session's view, or
// nil when it sees the whole mailbox.
func (s *Session) viewCriteria() *imap.SearchCriteria {
	var c imap.SearchCriteria
	if s.pol.Device != "" {
		c.NotFlag = []imap.Flag{DeviceKeyword(s.pol.Device)}
	}
	if s.pol.MaxAgeDays > 0 {
		// SEARCH SINCE compares dates, disregarding time and time zone.
		y, m, d := time.Now().UTC().AddDate(0, 0, -s.pol.MaxAgeDays).Date()
		c.Since = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	if !s.pol.StartDate.IsZero() {
		y, m, d := s.pol.StartDate.Date()
		if start := time.Date(y, m, d, 0, 0, 0, 0, time.UTC); start.After(c.Since) {
			c.Since = start
		}
	}
	if c.NotFlag == nil && c.Since.IsZero() {
		return nil
	}
	return &c
}

// fetchView fetches UID and size of every message in the view, in mailbox
// order, with their sequence numbers, and the UIDL material known of
// them: what the snapshot cache holds, and the header hashes fetched
// with the sizes (nil when there is neither).
// *early, if not nil, is the FETCH sent with the SELECT: fetchView
// takes it over and sets *early to nil.
func (s *Session) fetchView(sel *imap.SelectData, early **imapclient.FetchCommand) ([]Message, []uint32, []UIDLVars, error) {
	exists := sel.NumMessages
	sent := *early
	*early = nil
	s.cache.fromSnap = false
	if exists == 0 {
		// Mail arriving now waits for the next session. Some servers
		// refuse a FETCH in an empty mailbox: only a broken connection
		// matters.
		if sent != nil {
			if err := sent.Close(); ConnectionError(err) {
				return nil, nil, nil, s.upstreamErr(err)
			}
		}
		return nil, nil, nil, nil
	}
	limit := maildropBound(s.b.opts.MaxMessages)
	crit := s.viewCriteria()
	if err := limit.checkExists(exists); crit == nil && err != nil {
		if sent != nil { // not read: see fetchSizesOnce
			s.nc.Close()
			sent.Close()
		}
		return nil, nil, nil, err
	}
	if s.cache.snap != nil && limit.checkExists(exists) == nil {
		return s.fetchWarm(sel, sent)
	}
	// A view of a mailbox larger than the maximum serves what it holds,
	// but the cache would need the whole mailbox's UIDs: a full snapshot.
	s.cache.snap = nil
	uids := imap.UIDSet{{Start: 1, Stop: 0}}
	if crit != nil {
		s.bc.Expect(searchExpectation(exists, limit))
		var err error
		if uids, err = s.search(crit); err != nil || len(uids) == 0 {
			return nil, nil, nil, s.upstreamErr(err)
		}
		if err := limit.checkUIDs(uids); err != nil {
			return nil, nil, nil, err
		}
	}
	s.bc.Expect(snapshotExpectation(min(exists, uint32(limit))))
	return s.fetchSizes(uids, sent)
}

// search runs UID SEARCH, with RETURN (ALL) where ESEARCH (RFC 4731)
// offers it: the answer is then ranges, not one number per message.
func (s *Session) search(crit *imap.SearchCriteria) (imap.UIDSet, error) {
	return searchResult(s.c.UIDSearch(crit, s.searchOptions()))
}

// searchOptions asks for RETURN (ALL) where the upstream offers ESEARCH.
func (s *Session) searchOptions() *imap.SearchOptions {
	if s.c.Caps().Has(imap.CapESearch) {
		return &imap.SearchOptions{ReturnAll: true}
	}
	return nil
}

// searchResult waits for the answer of a UID SEARCH sent by search or
// pipelined.
func searchResult(cmd *imapclient.SearchCommand) (imap.UIDSet, error) {
	data, err := cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("UID SEARCH: %w", err)
	}
	uids, ok := data.All.(imap.UIDSet)
	if !ok && data.All != nil {
		// An ESEARCH without its UID indicator: sequence numbers, which
		// would be taken for an empty mailbox.
		return nil, fmt.Errorf("UID SEARCH answered with sequence numbers %v", data.All)
	}
	if uids.Dynamic() {
		// "n:*" in an answer is a server bug, and would fetch or delete
		// messages nobody asked for.
		return nil, fmt.Errorf("UID SEARCH answered with a dynamic set %v", uids)
	}
	// MIN, MAX and COUNT were not asked for; an ESEARCH that sends them
	// instead of ALL, or beside an ALL that disagrees, would have the
	// messages they count taken for none.
	if n := countUIDs(uids); data.Count != 0 && uint64(data.Count) != n ||
		(data.Min != 0 || data.Max != 0) && n == 0 {
		return nil, fmt.Errorf("UID SEARCH answered MIN %d MAX %d COUNT %d with ALL %v", data.Min, data.Max, data.Count, uids)
	}
	return uids, nil
}

// countUIDs counts the UIDs of a static set without listing them.
func countUIDs(set imap.UIDSet) uint64 {
	var n uint64
	for _, r := range set {
		n += uint64(max(r.Start, r.Stop)-min(r.Start, r.Stop)) + 1
	}
	return n
}

// deleteForDevice sets the device's keyword on uids and returns those now
// deleted by every device of AllDevices, to be removed for real.
func (s *Session) deleteForDevice(uids imap.UIDSet) (imap.UIDSet, error) {
	kw := DeviceKeyword(s.pol.Device)
	if err := s.store(uids, kw); err != nil {
		return nil, fmt.Errorf("UID STORE %s: %w", kw, err)
	}
	// A server may answer OK and still drop a keyword it cannot keep
	// (e.g. a maildir whose keyword table is full). The device would then
	// download the messages again: report it as a failed update instead.
	missing, err := s.search(&imap.SearchCriteria{UID: []imap.UIDSet{uids}, NotFlag: []imap.Flag{kw}})
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("upstream did not keep keyword %s on UIDs %v", kw, missing)
	}
	if len(s.pol.AllDevices) == 0 {
		return nil, nil
	}
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{uids}}
	for _, d := range s.pol.AllDevices {
		crit.Flag = append(crit.Flag, DeviceKeyword(d))
	}
	return s.search(crit)
}
