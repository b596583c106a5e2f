package imapback

import (
	"errors"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// What a warm login takes from the upstream's UID SEARCH is held to the
// same bounds as a snapshot's FETCH: a listing beyond the maximum
// maildrop, or past the response bounds, fails the login; a UID the
// SEARCH names and no FETCH answers is left out, as an expunged one.
func TestSnapshotCacheHostileSearch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		search func(w *hostileimap.Writer)
		want   error // nil: the login succeeds
		msgs   int
	}{
		{"as it should", func(w *hostileimap.Writer) { w.Line("* SEARCH 1") }, nil, 1},
		{"more than the maximum", func(w *hostileimap.Writer) { w.Line("* SEARCH 1 2 3 4 5 6 7") }, ErrMaildropTooLarge, 0},
		{"a flood", func(w *hostileimap.Writer) {
			w.Printf("* SEARCH")
			for i := 0; i < 200_000 && w.Err() == nil; i++ {
				w.Printf(" 1")
			}
			w.Line("")
		}, ErrResponseTooLarge, 0},
		{"a UID nobody fetches", func(w *hostileimap.Writer) { w.Line("* SEARCH 1 3") }, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warm bool
			srv := hostileimap.Start(t, hostileimap.Script{
				Fetch: func(w *hostileimap.Writer, args string) {
					if !strings.HasPrefix(args, "3 ") {
						w.Line("* 1 FETCH (UID 1 RFC822.SIZE 10)")
					}
				},
				Other: func(w *hostileimap.Writer, name, _ string) {
					if name == "SEARCH" && warm {
						tc.search(w)
					}
				},
			})
			b := newBackend(t, Options{Address: srv.Addr, MaxMessages: 5, SnapshotCache: NewSnapshotCache(1 << 20),
				ResponseLimits: ResponseLimits{Response: 64 << 10}})
			if s := login(t, b); len(s.Messages()) != 1 {
				t.Fatalf("cold login: %v", s.Messages())
			}
			warm = true
			s, err := loginAs(b, alice.User, alice.Password)
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
