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

// A %m snapshot that makes the UIDLs at login hashes the headers as
// they stream in with the sizes: a header of 100 MB costs no memory,
// and one answered NIL no crash (the message's UIDL then takes the
// default format).
func TestSessionHostileHeaders(t *testing.T) {
	one := func(w *hostileimap.Writer) { w.Line("* 1 EXISTS"); w.Line("* OK [UIDVALIDITY 7] x") }
	cases := []struct {
		name  string
		fetch func(w *hostileimap.Writer, args string)
		want  string
	}{
		{"100 MB header", func(w *hostileimap.Writer, _ string) {
			w.Printf("* 1 FETCH (UID 3 RFC822.SIZE 10 BODY[HEADER] ")
			w.Literal(100 << 20)
			w.Line(")")
		}, ""},
		{"NIL header", func(w *hostileimap.Writer, _ string) {
			w.Line("* 1 FETCH (UID 3 RFC822.SIZE 10 BODY[HEADER] NIL)")
		}, "0000000300000007"},
	}
	for _, tc := range cases {
		srv := hostileimap.Start(t, hostileimap.Script{Select: one, Fetch: tc.fetch})
		b, err := New(Options{Address: srv.Addr, TLS: TLSNone, Auth: AuthLogin, UIDL: uidlFormat(t, "%m"), UIDLsAtLogin: true})
		if err != nil {
			t.Fatal(err)
		}
		var uidl string
		var lerr error
		n := heapGrowth(func() {
			var s *Session
			if s, lerr = b.Login(context.Background(), Credentials{User: "u", Password: "p"}, b.DefaultPolicy()); s != nil {
				if msgs := s.Messages(); len(msgs) == 1 {
					uidl = msgs[0].UIDL
				}
				s.Close()
			}
		})
		if lerr != nil || n > maxAttackHeap || uidl == "" || tc.want != "" && uidl != tc.want {
			t.Errorf("%s: login %v, UIDL %q, heap growth %d; want a UIDL %q and little memory", tc.name, lerr, uidl, n, tc.want)
		}
	}
}
