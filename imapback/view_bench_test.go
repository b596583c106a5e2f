package imapback

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/dovecottest"
)

// BenchmarkSnapshot measures login plus snapshot on Dovecot with 10,000
// messages: the whole mailbox (UID FETCH 1:*) against a device view that
// has deleted all but 100 (UID SEARCH UNKEYWORD, then UID FETCH of those).
//
//	go test -run - -bench Snapshot ./imapback
func BenchmarkSnapshot(b *testing.B) {
	const total, visible = 10000, 100
	d := dovecottest.Start(b, dovecottest.Options{})
	for i := range total {
		d.Deliver(b, "alice", []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)))
	}
	c := d.Dial(b, "alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	hidden := imap.UIDSet{{Start: 1, Stop: total - visible}}
	if err := c.Store(hidden, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{DeviceKeyword("laptop")}}, nil).Close(); err != nil {
		b.Fatal(err)
	}
	c.Close()
	be := newBackend(b, Options{Address: d.IMAPAddr, CommandTimeout: time.Minute})
	for _, tc := range []struct {
		name string
		pol  Policy
		want int
	}{
		{"whole mailbox", be.DefaultPolicy(), total},
		{"device view", Policy{Delete: DeleteExpunge, Seen: SeenRetr, Device: "laptop"}, visible},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				s, err := be.Login(context.Background(), alice, tc.pol)
				if err != nil {
					b.Fatal(err)
				}
				if n := len(s.Messages()); n != tc.want {
					b.Fatalf("%d messages, want %d", n, tc.want)
				}
				s.Close()
			}
		})
	}
}
