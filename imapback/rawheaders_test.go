package imapback

// The header FETCH of a cold %m session's first UIDL, read beside
// go-imap by the tap, against an upstream that answers it in every form
// it may take: each message's UIDL is what go-imap's way gave it, and
// whatever the tap cannot follow fails the FETCH instead of making up a
// UIDL.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/hostileimap"
)

// The headers of the three messages (UIDs 3, 4 and 5, UIDVALIDITY 7).
const (
	head3 = "Subject: three\r\nFrom: a@example.org\r\n\r\n"
	head4 = "Subject: four\r\n\r\n"
	head5 = "Subject: five\r\n\r\n"
)

// headerLiteral writes the usual answer of message seq: its UID, then
// its header as a literal.
func headerLiteral(w *hostileimap.Writer, seq, uid int, h string) {
	w.Printf("* %d FETCH (UID %d BODY[HEADER] {%d}\r\n%s)\r\n", seq, uid, len(h), h)
}

// headerRun logs in to an upstream of three messages whose header FETCH
// the tap's command answers with raw and go-imap's (of what the tap
// left) with slow, and runs LoadUIDLs. It returns the UIDLs by UID, the
// UID sets go-imap's header FETCHes named, and LoadUIDLs' error.
func headerRun(t *testing.T, raw, slow func(w *hostileimap.Writer)) (uidls map[uint32]string, slowSets []string, err error) {
	t.Helper()
	var mu sync.Mutex
	fetch := func(w *hostileimap.Writer, args string) {
		switch {
		case strings.Contains(args, "RFC822.SIZE"):
			for k, uid := range []int{3, 4, 5} {
				w.Line("* %d FETCH (UID %d RFC822.SIZE %d)", k+1, uid, 100+uid)
			}
		case w.Tag == batchTag:
			raw(w)
		default:
			mu.Lock()
			slowSets = append(slowSets, strings.Fields(args)[0])
			mu.Unlock()
			if slow != nil {
				slow(w)
			}
		}
	}
	sel := func(w *hostileimap.Writer) { w.Line("* 3 EXISTS"); w.Line("* OK [UIDVALIDITY 7] x") }
	srv := hostileimap.Start(t, hostileimap.Script{Select: sel, Fetch: fetch})
	b := newBackend(t, Options{Address: srv.Addr, Auth: AuthLogin, UIDL: uidlFormat(t, "%m"), CommandTimeout: time.Second})
	s, lerr := b.Login(context.Background(), Credentials{User: "u", Password: "p"}, b.DefaultPolicy())
	if lerr != nil {
		t.Fatal(lerr)
	}
	defer s.Close()
	err = s.LoadUIDLs(context.Background())
	uidls = map[uint32]string{}
	for _, m := range s.Messages() {
		uidls[uint32(m.UID)] = m.UIDL
	}
	mu.Lock()
	defer mu.Unlock()
	return uidls, slices.Clone(slowSets), err
}

func hashOf(t *testing.T, h string) string {
	t.Helper()
	sum, err := HeaderHash(strings.NewReader(h))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// The answers a server may give, each message's UIDL what go-imap's way
// made of it: literals with the UID before or after them and flag
// changes between them; strings, fetched again through go-imap (which
// hashes them, the empty one too), and NIL, which has no hash; a header larger than the tap's buffer,
// fetched again and hashed as it streams; and sections that are no
// header, which no UIDL may be made of.
func TestHeaderFetchAnswers(t *testing.T) {
	big := "X-Big: " + strings.Repeat("y", 100<<10) + "\r\n" + head5
	def := func(uid int) string { return fmt.Sprintf("%08X00000007", uid) }
	for _, tc := range []struct {
		name       string
		raw, slow  func(w *hostileimap.Writer)
		want       map[uint32]string
		wantSlow   []string
		wantFailed bool
	}{
		{name: "literals", raw: func(w *hostileimap.Writer) {
			headerLiteral(w, 1, 3, head3)
			w.Line("* 1 FETCH (UID 3 FLAGS (\\Seen))")
			w.Printf("* 2 FETCH (FLAGS () BODY[HEADER] {%d}\r\n%s UID 4)\r\n", len(head4), head4)
			w.Printf("* 3 fetch (body[header] {%d}\r\n%s uid 5)\r\n", len(head5), head5)
		}, want: map[uint32]string{3: hashOf(t, head3), 4: hashOf(t, head4), 5: hashOf(t, head5)}},
		{name: "string and NIL", raw: func(w *hostileimap.Writer) {
			headerLiteral(w, 1, 3, head3)
			w.Line(`* 2 FETCH (UID 4 BODY[HEADER] "Subject: four")`)
			w.Line("* 3 FETCH (UID 5 BODY[HEADER] NIL)")
		}, slow: func(w *hostileimap.Writer) {
			w.Line(`* 2 FETCH (UID 4 BODY[HEADER] "Subject: four")`)
		}, want: map[uint32]string{3: hashOf(t, head3), 4: hashOf(t, "Subject: four"), 5: def(5)}, wantSlow: []string{"4"}},
		{name: "empty string", raw: func(w *hostileimap.Writer) {
			headerLiteral(w, 1, 3, head3)
			w.Line("* 2 FETCH (UID 4 BODY[HEADER] NIL)")
			w.Line(`* 3 FETCH (UID 5 body[header] "")`)
		}, slow: func(w *hostileimap.Writer) {
			w.Line(`* 3 FETCH (UID 5 BODY[HEADER] "")`)
		}, want: map[uint32]string{3: hashOf(t, head3), 4: def(4), 5: hashOf(t, "")}, wantSlow: []string{"5"}},
		{name: "larger than the buffer", raw: func(w *hostileimap.Writer) {
			headerLiteral(w, 1, 3, head3)
			headerLiteral(w, 2, 4, head4)
			headerLiteral(w, 3, 5, big)
		}, slow: func(w *hostileimap.Writer) {
			headerLiteral(w, 3, 5, big)
		}, want: map[uint32]string{3: hashOf(t, head3), 4: hashOf(t, head4), 5: hashOf(t, big)}, wantSlow: []string{"5"}},
		{name: "no header", raw: func(w *hostileimap.Writer) {
			headerLiteral(w, 1, 3, head3)
			w.Printf("* 2 FETCH (UID 4 BODY[TEXT] {%d}\r\n%s)\r\n", len(head4), head4)
			w.Printf("* 3 FETCH (UID 5 BODY[HEADER]<0> {%d}\r\n%s)\r\n", len(head5), head5)
		}, want: map[uint32]string{3: hashOf(t, head3), 4: def(4), 5: def(5)}},
		{name: "two headers in one answer", raw: func(w *hostileimap.Writer) {
			w.Printf("* 1 FETCH (UID 3 BODY[HEADER] {%d}\r\n%s BODY[HEADER] {%d}\r\n%s)\r\n", len(head3), head3, len(head4), head4)
		}, wantFailed: true},
		{name: "cut short", raw: func(w *hostileimap.Writer) {
			w.Printf("* 1 FETCH (UID 3 BODY[HEADER] {4000}\r\n%s)\r\n", head3)
		}, wantFailed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uidls, slowSets, err := headerRun(t, tc.raw, tc.slow)
			if tc.wantFailed {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("LoadUIDLs: %v, want ErrUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadUIDLs: %v", err)
			}
			for uid, want := range tc.want {
				if uidls[uid] != want {
					t.Errorf("UID %d: UIDL %q, want %q", uid, uidls[uid], want)
				}
			}
			if !slices.Equal(slowSets, tc.wantSlow) {
				t.Errorf("headers fetched through go-imap: %q, want %q", slowSets, tc.wantSlow)
			}
		})
	}
}
