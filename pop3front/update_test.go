package pop3front

import "testing"

func TestQuitAnswerSaysWhatHappenedUpstream(t *testing.T) {
	for _, tc := range []struct {
		marked int
		res    UpdateResult
		want   string
	}{
		{0, UpdateResult{}, "Logging out"},
		{2, UpdateResult{Removed: 2}, "Logging out, 2 messages deleted"},
		{2, UpdateResult{Flagged: 2}, "Logging out, 2 messages marked deleted on the server"},
		{2, UpdateResult{}, "Logging out, 2 messages kept on the server"},
		{3, UpdateResult{Removed: 1, Flagged: 1},
			"Logging out, 1 messages deleted, 1 messages marked deleted on the server, 1 messages kept on the server"},
		// A backend that counts more than it was given is not believed
		// about the rest.
		{1, UpdateResult{Removed: 2}, "Logging out, 2 messages deleted"},
		// Expired messages are among the marked ones (QUIT adds them).
		{3, UpdateResult{Removed: 3, Expired: 2}, "Logging out, 3 messages deleted (2 of them expired)"},
		{1, UpdateResult{Flagged: 1, Expired: 1}, "Logging out, 1 messages marked deleted on the server (1 of them expired)"},
	} {
		if got := quitAnswer(tc.marked, tc.res); got != tc.want {
			t.Errorf("quitAnswer(%d, %+v) = %q, want %q", tc.marked, tc.res, got, tc.want)
		}
	}
}
