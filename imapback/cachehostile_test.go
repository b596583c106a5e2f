package imapback

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// What a warm login takes from the upstream's UID SEARCH is held to the
// same bounds as a snapshot's FETCH: a listing beyond the maximum
// maildrop, or past the response bounds, fails the login, and so does
// one whose MIN, MAX or COUNT disagree with its list; a UID the SEARCH
// names and no FETCH answers is left out, as an expunged one.
func TestSnapshotCacheHostileSearch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		search func(w *hostileimap.Writer)
		want   error // nil: the login succeeds
		msgs   int
		device string // a device view, whose own SEARCH (for NOT KEYWORD) answers "1"
	}{
		{"as it should", func(w *hostileimap.Writer) { w.Line("* SEARCH 1") }, nil, 1, ""},
		{"more than the maximum", func(w *hostileimap.Writer) { w.Line("* SEARCH 1 2 3 4 5 6 7") }, ErrMaildropTooLarge, 0, ""},
		{"a flood", func(w *hostileimap.Writer) {
			w.Printf("* SEARCH")
			for i := 0; i < 200_000 && w.Err() == nil; i++ {
				w.Printf(" 1")
			}
			w.Line("")
		}, ErrResponseTooLarge, 0, ""},
		{"a UID nobody fetches", func(w *hostileimap.Writer) { w.Line("* SEARCH 1 3") }, nil, 1, ""},
		{"every UID there is", func(w *hostileimap.Writer) { w.Line(`* ESEARCH (TAG "%s") UID ALL 1:4294967295`, w.Tag) }, ErrMaildropTooLarge, 0, ""},
		// Found by FuzzUpstreamSession: answers that go-imap reads as no
		// UID at all, for a mailbox of one message.
		{"COUNT instead of ALL", func(w *hostileimap.Writer) { w.Line(`* ESEARCH (TAG "%s") UID MIN 1 MAX 1 COUNT 1`, w.Tag) }, ErrUnavailable, 0, ""},
		{"sequence numbers", func(w *hostileimap.Writer) { w.Line(`* ESEARCH (TAG "%s") ALL 1`, w.Tag) }, ErrUnavailable, 0, ""},
		{"a COUNT that disagrees", func(w *hostileimap.Writer) { w.Line(`* ESEARCH (TAG "%s") UID ALL 1 COUNT 2`, w.Tag) }, ErrUnavailable, 0, ""},
		{"every UID there is, in a view", func(w *hostileimap.Writer) { w.Line(`* ESEARCH (TAG "%s") UID ALL 1`, w.Tag) }, ErrMaildropTooLarge, 0, "phone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warm bool
			srv := hostileimap.Start(t, hostileimap.Script{
				Caps: "IMAP4rev1 AUTH=PLAIN UIDPLUS ESEARCH",
				Fetch: func(w *hostileimap.Writer, args string) {
					if !strings.HasPrefix(args, "3 ") {
						w.Line("* 1 FETCH (UID 1 RFC822.SIZE 10)")
					}
				},
				Other: func(w *hostileimap.Writer, name, args string) {
					switch {
					case name != "SEARCH":
					case strings.Contains(args, "KEYWORD") && !warm:
						w.Line(`* ESEARCH (TAG "%s") UID ALL 1`, w.Tag)
					case strings.Contains(args, "KEYWORD"):
						w.Line(`* ESEARCH (TAG "%s") UID ALL 1:4294967295`, w.Tag)
					case warm:
						tc.search(w)
					}
				},
			})
			b := newBackend(t, Options{Address: srv.Addr, MaxMessages: 5, SnapshotCache: NewSnapshotCache(1 << 20),
				ResponseLimits: ResponseLimits{Response: 64 << 10}})
			pol := b.DefaultPolicy()
			pol.Device = tc.device
			if s := loginPolicy(t, b, pol); len(s.Messages()) != 1 {
				t.Fatalf("cold login: %v", s.Messages())
			}
			warm = true
			s, err := b.Login(context.Background(), alice, pol)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("warm login: %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := len(s.Messages()); got != tc.msgs {
				t.Errorf("%d messages, want %d", got, tc.msgs)
			}
		})
	}
}
