package imapback

import (
	"context"
	"testing"
)

// TestCommitSaysWhatBecameOfTheMessages: Commit's counts follow what the
// upstream did, so that QUIT's answer and the metrics never call kept mail
// deleted.
func TestCommitSaysWhatBecameOfTheMessages(t *testing.T) {
	for _, tc := range []struct {
		name             string
		pol              Policy
		removed, flagged int
		left             int // messages still in INBOX
	}{
		{"expunge", Policy{Delete: DeleteExpunge}, 2, 0, 1},
		{"trash", Policy{Delete: DeleteTrash}, 2, 0, 1},
		{"flag", Policy{Delete: DeleteFlag}, 0, 2, 3},
		{"keep", Policy{Delete: DeleteKeep}, 0, 0, 3},
		{"device view", Policy{Device: "laptop"}, 0, 2, 3},
		{"the last device of all", Policy{Device: "laptop", AllDevices: []string{"laptop"}}, 2, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMem(t, message(100), message(200), message(300))
			s := loginPolicy(t, newBackend(t, Options{Address: srv.Addr}), tc.pol)
			removed, flagged, err := s.Commit(context.Background(), []int{0, 2})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if removed != tc.removed || flagged != tc.flagged {
				t.Errorf("Commit = %d removed, %d flagged; want %d, %d", removed, flagged, tc.removed, tc.flagged)
			}
			if n := len(mailboxFlags(t, srv.Addr, "INBOX")); n != tc.left {
				t.Errorf("INBOX holds %d messages, want %d", n, tc.left)
			}
		})
	}
}
