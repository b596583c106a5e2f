package imapback

import (
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

func TestSnapshotMaildropBound(t *testing.T) {
	b := maildropBound(DefaultMaxMessages)
	for _, exists := range []uint32{0, 1, DefaultMaxMessages} {
		if err := b.checkExists(exists); err != nil {
			t.Errorf("EXISTS %d: %v", exists, err)
		}
	}
	for _, exists := range []uint32{DefaultMaxMessages + 1, 50_000_000, 4_000_000_000, 1<<32 - 1} {
		if err := b.checkExists(exists); !errors.Is(err, ErrMaildropTooLarge) {
			t.Errorf("EXISTS %d: %v, want ErrMaildropTooLarge", exists, err)
		}
	}
	small := maildropBound(10)
	if err := small.checkUIDs(imap.UIDSet{{Start: 1, Stop: 5}, {Start: 9, Stop: 9}, {Start: 20, Stop: 23}}); err != nil {
		t.Errorf("10 UIDs: %v", err)
	}
	if err := small.checkUIDs(imap.UIDSet{{Start: 1, Stop: 5}, {Start: 10, Stop: 15}}); !errors.Is(err, ErrMaildropTooLarge) {
		t.Errorf("11 UIDs: %v", err)
	}
	if err := small.checkUIDs(imap.UIDSet{{Start: 1, Stop: 4_000_000_000}}); !errors.Is(err, ErrMaildropTooLarge) {
		t.Errorf("4e9 UIDs: %v", err)
	}
	if err := small.checkFetched(10); err != nil {
		t.Errorf("10 fetched: %v", err)
	}
	if err := small.checkFetched(11); !errors.Is(err, ErrMaildropTooLarge) {
		t.Errorf("11 fetched: %v", err)
	}
}

func TestSnapshotExpectations(t *testing.T) {
	b := maildropBound(1000)
	if e := snapshotExpectation(10); e.Responses != 2*10+responseSlack {
		t.Errorf("snapshot of 10: %+v", e)
	}
	if e := commandExpectation(4_000_000_000, b); e.Responses != 2*1000+responseSlack {
		t.Errorf("command in a mailbox past the maximum: %+v", e)
	}
	if e := listExpectation(); e.Octets == 0 || e.Responses == 0 {
		t.Errorf("LIST unbounded: %+v", e)
	}
	if e := searchExpectation(4_000_000_000, b); e.ResponseOctets != 11*1000+4096 {
		t.Errorf("SEARCH in a mailbox past the maximum: %+v", e)
	}
}

// denseSeq is the snapshot's former sequence map, a slot per sequence
// number: the model seqIndex must agree with.
type denseSeq []int

func (d *denseSeq) expunge(n uint32) int {
	if n == 0 || int(n) > len(*d) {
		return -1
	}
	i := (*d)[n-1]
	*d = slices.Delete(*d, int(n-1), int(n))
	return i
}

// seqIndex answers every EXPUNGE as the slot-per-number map did, for
// views that leave messages out and EXPUNGEs of messages in and out of
// the view, before, between and after its messages.
func TestSnapshotSeqIndexAgreesWithDenseMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		mailbox := 1 + rng.IntN(60)
		var seqs []uint32
		for n := 1; n <= mailbox; n++ {
			if rng.IntN(3) > 0 {
				seqs = append(seqs, uint32(n))
			}
		}
		var dense denseSeq
		for i, n := range seqs {
			for uint32(len(dense)) < n-1 {
				dense = append(dense, -1)
			}
			dense = append(dense, i)
		}
		x := newSeqIndex(seqs)
		for k := range 80 {
			n := uint32(rng.IntN(mailbox + 3))
			if got, want := x.expunge(n), dense.expunge(n); got != want {
				t.Fatalf("round %d, expunge %d of %d: message %d, want %d", round, k, n, got, want)
			}
		}
	}
}

// A message at sequence number 4,000,000,000 costs one entry.
func TestSnapshotSeqIndexHugeNumbers(t *testing.T) {
	x := newSeqIndex([]uint32{3, 4_000_000_000})
	if cap(x) > 2 {
		t.Fatalf("%d entries for 2 messages", cap(x))
	}
	if got := x.expunge(1); got != -1 {
		t.Fatalf("EXPUNGE 1 removed message %d", got)
	}
	if got := x.expunge(3_999_999_999); got != 1 {
		t.Fatalf("EXPUNGE 3999999999 removed message %d, want 1", got)
	}
	if got := x.expunge(2); got != 0 {
		t.Fatalf("EXPUNGE 2 removed message %d, want 0", got)
	}
}

func TestSnapshotRemapSeqIndex(t *testing.T) {
	msgs := []Message{{UID: 10}, {UID: 20}, {UID: 30}}
	got := []seqUID{{seq: 5, uid: 30}, {seq: 2, uid: 10}, {seq: 3, uid: 99}, {seq: 0, uid: 20}}
	x, present, err := remapSeqIndex(msgs, got)
	if err != nil {
		t.Fatal(err)
	}
	if want := (seqIndex{{seq: 2, i: 0}, {seq: 5, i: 2}}); !slices.Equal(x, want) {
		t.Fatalf("index %v, want %v", x, want)
	}
	if want := []bool{true, false, true}; !slices.Equal(present, want) {
		t.Fatalf("present %v, want %v", present, want)
	}
	if _, _, err := remapSeqIndex(msgs, []seqUID{{seq: 2, uid: 10}, {seq: 2, uid: 20}}); err == nil {
		t.Fatal("a sequence number given twice was taken")
	}
}

// The two lines that crashed the process: "* 4000000000 EXISTS" and one
// FETCH for that number. The whole mailbox is refused at EXISTS; a view
// that fetches anyway indexes one message.
func TestSnapshotHostileExists(t *testing.T) {
	srv := hostileimap.Start(t, hostileimap.Script{
		Select: func(w *hostileimap.Writer) {
			w.Line("* 4000000000 EXISTS")
			w.Line("* OK [UIDVALIDITY 1] ok")
		},
		Fetch: func(w *hostileimap.Writer, _ string) {
			w.Line("* 4000000000 FETCH (UID 1 RFC822.SIZE 10)")
		},
	})
	c, bc := dialBounded(t, srv, ResponseLimits{})
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	b := maildropBound(DefaultMaxMessages)
	if err := b.checkExists(sel.NumMessages); !errors.Is(err, ErrMaildropTooLarge) {
		t.Fatalf("EXISTS %d: %v", sel.NumMessages, err)
	}
	var x seqIndex
	n := heapGrowth(func() {
		bc.Expect(snapshotExpectation(min(sel.NumMessages, DefaultMaxMessages)))
		seqs, err := fetchSeqs(c, bc, b)
		if err != nil {
			t.Error(err)
		}
		x = newSeqIndex(seqs)
	})
	if n > 1<<20 || len(x) != 1 {
		t.Fatalf("the snapshot of one message took %d entries and %d octets", len(x), n)
	}
}

// A FETCH that answers for more messages than the maximum fails as it
// passes it, whatever EXISTS said.
func TestSnapshotHostileFetchBeyondMaximum(t *testing.T) {
	srv := hostileimap.Start(t, fetchFlood)
	c, bc := dialBounded(t, srv, ResponseLimits{})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var err error
	n := heapGrowth(func() { _, err = fetchSeqs(c, bc, maildropBound(1000)) })
	if !errors.Is(err, ErrMaildropTooLarge) || n > maxAttackHeap {
		t.Fatalf("FETCH of 2,000,000 answers: %v, heap growth %d", err, n)
	}
}

// fetchSeqs runs the snapshot's FETCH the way the session will, with
// b.checkFetched on each answer, and returns the sequence numbers.
func fetchSeqs(c *imapclient.Client, nc net.Conn, b maildropBound) ([]uint32, error) {
	cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true})
	var seqs []uint32
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		if _, err := m.Collect(); err != nil {
			break
		}
		seqs = append(seqs, m.SeqNum)
		if err := b.checkFetched(len(seqs)); err != nil {
			// As the session does: close the connection under the
			// client, so that nothing more is read, and let the command
			// end. Client.Close would wait for its reader, which waits
			// to hand this command the next answer.
			nc.Close()
			cmd.Close()
			return nil, err
		}
	}
	return seqs, cmd.Close()
}
