package imapback

import (
	"context"
	"errors"
	"testing"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// A hostile upstream fails the login with the bound's error, at little
// cost in memory: the two lines that crashed the process, a 200 MB
// literal during SELECT, 2,000,000 FETCH answers for one message.
func TestSessionHostileUpstream(t *testing.T) {
	cases := []struct {
		name string
		sc   hostileimap.Script
		want error
	}{
		{"huge EXISTS", hostileimap.Script{
			Select: func(w *hostileimap.Writer) { w.Line("* 4000000000 EXISTS"); w.Line("* OK [UIDVALIDITY 1] x") },
			Fetch:  func(w *hostileimap.Writer, _ string) { w.Line("* 4000000000 FETCH (UID 1 RFC822.SIZE 10)") },
		}, ErrMaildropTooLarge},
		{"LIST literal during SELECT", hostileimap.Script{
			Select: func(w *hostileimap.Writer) {
				w.Line("* 1 EXISTS")
				w.Printf(`* LIST () "/" `)
				w.Literal(200_000_000)
				w.Printf("\r\n")
			},
		}, ErrResponseTooLarge},
		{"FETCH flood", hostileimap.Script{
			Select: func(w *hostileimap.Writer) { w.Line("* 1 EXISTS"); w.Line("* OK [UIDVALIDITY 1] x") },
			Fetch: func(w *hostileimap.Writer, _ string) {
				for i := 1; i <= 2_000_000 && w.Err() == nil; i++ {
					w.Line("* 1 FETCH (UID %d RFC822.SIZE 10)", i)
				}
			},
		}, ErrResponseTooLarge},
	}
	for _, tc := range cases {
		srv := hostileimap.Start(t, tc.sc)
		b, err := New(Options{Address: srv.Addr, TLS: TLSNone, Auth: AuthLogin})
		if err != nil {
			t.Fatal(err)
		}
		var lerr error
		n := heapGrowth(func() {
			var s *Session
			if s, lerr = b.Login(context.Background(), Credentials{User: "u", Password: "p"}, b.DefaultPolicy()); s != nil {
				s.Close()
			}
		})
		if !errors.Is(lerr, tc.want) || n > maxAttackHeap {
			t.Errorf("%s: login %v, heap growth %d; want %v", tc.name, lerr, n, tc.want)
		}
	}
}
