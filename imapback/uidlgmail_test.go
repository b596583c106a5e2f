package imapback

import (
	"errors"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// gmailLike answers like Gmail: X-GM-EXT-1, and X-GM-MSGID in FETCH
// (before or after the UID, as a server may order items freely), with a
// flag change for another message in the middle.
func gmailLike(caps string, answer func(w *hostileimap.Writer)) hostileimap.Script {
	return hostileimap.Script{
		Caps: caps,
		Select: func(w *hostileimap.Writer) {
			w.Line("* 2 EXISTS")
			w.Line("* OK [UIDVALIDITY 9] ok")
		},
		Fetch: func(w *hostileimap.Writer, args string) {
			if strings.Contains(args, "RFC822.SIZE") {
				w.Line("* 1 FETCH (UID 11 RFC822.SIZE 100)")
				w.Line("* 2 FETCH (UID 12 RFC822.SIZE 200)")
				return
			}
			answer(w)
		},
	}
}

func TestUIDLIdentityGmail(t *testing.T) {
	srv := hostileimap.Start(t, gmailLike("IMAP4rev1 AUTH=PLAIN UIDPLUS X-GM-EXT-1", func(w *hostileimap.Writer) {
		w.Line("* 1 FETCH (X-GM-MSGID 1278455344230334865 UID 11)")
		w.Line(`* 2 FETCH (FLAGS (\Seen) UID 12)`)
		w.Line("* 2 FETCH (UID 12 X-GM-MSGID 1278455344230334866)")
	}))
	s := login(t, newBackend(t, Options{Address: srv.Addr, UIDL: uidlFormat(t, "gm%g")}))
	want := []string{"gm1278455344230334865", "gm1278455344230334866"}
	if got := uidls(s); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("UIDLs = %q, want %q", got, want)
	}
	if m := s.Messages(); m[0].Size != 100 || m[1].Size != 200 {
		t.Errorf("sizes %v", m)
	}
}

// A server that announces OBJECTID and then answers EMAILID with
// something that is no unique-id, or not at all, fails the login; one
// that skips a message gives it a default-format UIDL.
func TestUIDLIdentityBrokenAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w *hostileimap.Writer)
		want   error // nil: the login works
	}{
		{"id with a space", func(w *hostileimap.Writer) {
			w.Line(`* 1 FETCH (UID 11 EMAILID ("a b"))`)
			w.Line(`* 2 FETCH (UID 12 EMAILID (M2))`)
		}, ErrUnavailable},
		{"id too long", func(w *hostileimap.Writer) {
			w.Line(`* 1 FETCH (UID 11 EMAILID (M%s))`, strings.Repeat("1", maxIdentityLen))
		}, ErrUnavailable},
		{"unparsable", func(w *hostileimap.Writer) {
			w.Line(`* 1 FETCH (UID 11 EMAILID (M1)`)
		}, ErrUnavailable},
		{"one skipped", func(w *hostileimap.Writer) {
			w.Line(`* 2 FETCH (UID 12 EMAILID (M2))`)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := hostileimap.Start(t, gmailLike("IMAP4rev1 AUTH=PLAIN UIDPLUS OBJECTID", tc.answer))
			b := newBackend(t, Options{Address: srv.Addr, UIDL: uidlFormat(t, "%g")})
			s, err := loginAs(b, alice.User, alice.Password)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("login = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := uidls(s); len(got) != 2 || got[0] != "0000000b00000009" || got[1] != "M2" {
				t.Errorf("UIDLs = %q", got)
			}
		})
	}
}
