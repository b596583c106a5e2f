package imapback

// Tests of the batch a pipelining client's queue drives: exactly the
// messages queued, in one FETCH, within the read-ahead's bounds, \Seen
// only for what Retrieved reports, nothing held after Close, and a cut
// upstream never passed off as a whole message.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
)

// request is one queued RETR (lines < 0) or TOP.
type request struct{ i, lines int }

// pipelined retrieves reqs in order as a client that keeps depth more
// of them queued behind the running one, and returns each reader's
// content, or its error as text.
func pipelined(t *testing.T, s *Session, reqs []request, depth int) []string {
	t.Helper()
	var queue []request
	s.SetUpcoming(func(yield func(i, lines int) bool) {
		for _, r := range queue {
			if !yield(r.i, r.lines) {
				return
			}
		}
	})
	var got []string
	for k, r := range reqs {
		queue = reqs[k+1 : min(len(reqs), k+1+depth)]
		rc, err := s.Retrieve(context.Background(), r.i, r.lines)
		if err != nil {
			got = append(got, "error: "+err.Error())
			continue
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			got = append(got, "error: "+err.Error())
			continue
		}
		got = append(got, string(body))
	}
	return got
}

// numbered returns message n of about size octets, its number in every
// line, so that a body served for another message shows.
func numbered(n, size int) []byte {
	m := fmt.Appendf(nil, "Subject: message %d\r\n\r\n", n)
	for len(m) < size {
		m = fmt.Appendf(m, "line of message number %d\r\n", n)
	}
	return m
}

// bodyFetches returns the UID sets of the whole-body FETCHes (batches and
// first ranges alike) that a tap saw, as lists of UIDs.
func bodyFetches(t *testing.T, sent string) [][]imap.UID {
	t.Helper()
	var sets [][]imap.UID
	for _, line := range strings.Split(sent, "\r\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.EqualFold(f[1]+" "+f[2], "UID FETCH") || !strings.Contains(line, "BODY.PEEK[]") {
			continue
		}
		var set []imap.UID
		for _, r := range strings.Split(f[3], ",") {
			lo, hi, _ := strings.Cut(r, ":")
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if hi == "" {
				b, err2 = a, nil
			}
			if err1 != nil || err2 != nil {
				t.Fatalf("cannot read the UID set of %q", line)
			}
			for u := a; u <= b; u++ {
				set = append(set, imap.UID(u))
			}
		}
		sets = append(sets, set)
	}
	return sets
}

// Queued RETRs and a TOP, in no order the read-ahead could guess, come
// in one FETCH of exactly their messages. Only the messages Retrieved
// reports become \Seen: the batch uses BODY.PEEK[].
func TestQueuedRequestsAreFetchedTogether(t *testing.T) {
	var msgs [][]byte
	for i := range 20 {
		msgs = append(msgs, numbered(i, 200+i))
	}
	srv := startMem(t, msgs...)
	up := tapUpstream(t, srv.Addr)
	s := login(t, newBackend(t, Options{Address: up.Addr, ChunkSize: 1024}))
	reqs := []request{{7, -1}, {2, 0}, {12, -1}, {5, -1}}
	got := pipelined(t, s, reqs, 10)
	for k, r := range reqs {
		if got[k] != string(msgs[r.i]) { // a TOP's reader may give it all: the caller cuts
			t.Errorf("request %d (message %d): got %q", k, r.i, got[k])
		}
		if r.lines < 0 {
			s.Retrieved(r.i)
		}
	}
	uid := func(i int) imap.UID { return s.Messages()[i].UID }
	want := [][]imap.UID{{uid(2), uid(5), uid(7), uid(12)}}
	fetches := bodyFetches(t, up.sent.String())
	for _, f := range fetches {
		slices.Sort(f)
	}
	if fmt.Sprint(fetches) != fmt.Sprint(want) {
		t.Errorf("body FETCHes %v, want %v: one FETCH of exactly the queued messages", fetches, want)
	}
	if err := s.Noop(context.Background()); err != nil { // sends the pending STORE
		t.Fatal(err)
	}
	flags := mailboxFlags(t, srv.Addr, "INBOX")
	for i, m := range s.Messages() {
		want := i == 7 || i == 12 || i == 5
		if seen := slices.Contains(flags[m.UID], imap.FlagSeen); seen != want {
			t.Errorf("message %d: \\Seen is %v, want %v", i, seen, want)
		}
	}
}

// A client that asks for a part of its mailbox in an order of its own,
// keeping 6 commands queued: the messages come in a few FETCHes, each of
// them at most ReadAheadMessages, each message once, and none that the
// client did not ask for. While the batch is sent, the next is fetched
// into the buffer's free room.
func TestQueuedRequestsAreFetchedOnceAndNoOthers(t *testing.T) {
	var msgs [][]byte
	for i := range 60 {
		msgs = append(msgs, numbered(i, 150+7*i))
	}
	up := tapUpstream(t, startMem(t, msgs...).Addr)
	b := newBackend(t, Options{Address: up.Addr, ChunkSize: 1024, ReadAheadMessages: 8, ReadAheadBytes: 4096})
	s := login(t, b)
	var reqs []request
	asked := map[imap.UID]bool{}
	for i := 58; i >= 0; i -= 2 { // descending: no sequential run to guess
		lines := -1
		if i%3 == 0 {
			lines = 2
		}
		reqs = append(reqs, request{i, lines})
		asked[s.Messages()[i].UID] = true
	}
	got := pipelined(t, s, reqs, 6)
	for k, r := range reqs {
		if got[k] != string(msgs[r.i]) {
			t.Fatalf("request %d (message %d): got %q", k, r.i, got[k])
		}
	}
	fetched := map[imap.UID]int{}
	fetches := bodyFetches(t, up.sent.String())
	var size int64
	for _, f := range fetches {
		size = 0
		for _, u := range f {
			fetched[u]++
			if !asked[u] {
				t.Errorf("UID %d fetched, never asked for", u)
			}
			size += s.Messages()[u-1].Size
		}
		if len(f) > 8 || size > 4096 {
			t.Errorf("a batch of %d messages, %d octets: over the bounds", len(f), size)
		}
	}
	for u, n := range fetched {
		if n > 1 {
			t.Errorf("UID %d fetched %d times", u, n)
		}
	}
	t.Logf("%d requests in %d body FETCHes: %v", len(reqs), len(fetches), fetches)
	if len(fetches) > len(reqs)/3 {
		t.Errorf("%d body FETCHes for %d requests: not batched", len(fetches), len(reqs))
	}
	if n := b.ra.inUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead buffers still held after the last message", n)
	}
}

// Large messages in the queue end a batch: they are streamed in ranges,
// and no batch holds more than ReadAheadBytes.
func TestQueuedBatchesKeepTheMemoryBounds(t *testing.T) {
	const chunk = 1024
	var msgs [][]byte
	for i := range 12 {
		size := 300
		if i%4 == 2 {
			size = 3*chunk + 100
		}
		msgs = append(msgs, numbered(i, size))
	}
	up := tapUpstream(t, startMem(t, msgs...).Addr)
	b := newBackend(t, Options{Address: up.Addr, ChunkSize: chunk, ReadAheadBytes: chunk})
	s := login(t, b)
	var reqs []request
	for i := range msgs {
		reqs = append(reqs, request{i, -1})
	}
	got := pipelined(t, s, reqs, 8)
	for k, r := range reqs {
		if got[k] != string(msgs[r.i]) {
			t.Fatalf("message %d: got %d octets, want %d", r.i, len(got[k]), len(msgs[r.i]))
		}
	}
	fetches := bodyFetches(t, up.sent.String())
	t.Logf("body FETCHes: %v", fetches)
	for _, f := range fetches {
		var size int64
		for _, u := range f {
			size += s.Messages()[u-1].Size
		}
		if len(f) > 1 && size > chunk {
			t.Errorf("a batch of UIDs %v, %d octets: over ReadAheadBytes", f, size)
		}
	}
	if n := b.ra.inUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead buffers still held after the last message", n)
	}
}

// A client that leaves with commands queued: Close waits for the batch
// FETCH, gives the buffer back and marks nothing \Seen (goleak, in
// TestMain, checks that no goroutine is left).
func TestCloseWithQueuedBatchLeavesNothing(t *testing.T) {
	var msgs [][]byte
	for i := range 30 {
		msgs = append(msgs, numbered(i, 400))
	}
	srv := startMem(t, msgs...)
	b := newBackend(t, Options{Address: srv.Addr, ChunkSize: 1024})
	s, err := loginAs(b, "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	var reqs []request
	for i := 29; i >= 0; i-- {
		reqs = append(reqs, request{i, -1})
	}
	pipelined(t, s, reqs[:3], 20) // a batch of 23, two served
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b.ra.inUse.Load(); n != 0 {
		t.Errorf("%d octets of read-ahead buffers still held after Close", n)
	}
	for uid, f := range mailboxFlags(t, srv.Addr, "INBOX") {
		if slices.Contains(f, imap.FlagSeen) {
			t.Errorf("UID %d is \\Seen, but no message was reported retrieved", uid)
		}
	}
}

// An upstream cut in the middle of a queued batch: every message is
// either delivered whole or an error, never cut short.
func TestQueuedBatchCutOffUpstreamNeverGivesAShortMessage(t *testing.T) {
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, numbered(i, 600))
	}
	relay := faultrelay.New(t, startMem(t, msgs...).Addr)
	s := login(t, newBackend(t, Options{Address: relay.Addr, ChunkSize: 1024}))
	cut := relay.Arm(faultrelay.Fault{Dir: faultrelay.Down, Match: "line of message number 4", Offset: 100, Action: faultrelay.Cut})
	var reqs []request
	for i := 9; i >= 0; i-- {
		reqs = append(reqs, request{i, -1})
	}
	got := pipelined(t, s, reqs, 9)
	// The relay marks the cut fired just after it closed the link, so
	// the session may see the end first.
	select {
	case <-cut.Fired():
	case <-time.After(10 * time.Second):
		t.Fatal("the cut did not fire: the test proves nothing")
	}
	failed := 0
	for k, r := range reqs {
		switch {
		case strings.HasPrefix(got[k], "error: "):
			failed++
		case !bytes.Equal([]byte(got[k]), msgs[r.i]):
			t.Errorf("message %d: %d octets delivered as whole, want %d", r.i, len(got[k]), len(msgs[r.i]))
		}
	}
	t.Logf("%d of %d requests failed: %q", failed, len(reqs), got)
	if failed == 0 {
		// The cut message was fetched again on a new connection: fine,
		// as long as it came whole (checked above).
		t.Logf("every message arrived whole, the batch's cut messages fetched again")
	}
}
