package config

import (
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// The checks of merged folders name the setting at fault, wherever the
// list is: on the upstream, on an upstream of the map, on a rule.
func TestMailboxesChecks(t *testing.T) {
	const base = "upstream:\n  address: 127.0.0.1:143\n"
	for _, tc := range []struct{ yaml, want string }{
		{"  mailboxes: [INBOX, Junk]\n", ""},
		{"  mailboxes: [INBOX, Junk, '[Gmail]/Spam', Work]\n", ""},
		{"  mailboxes: [INBOX, Junk]\n  mailbox: INBOX\n", "upstream.mailboxes (line 3): mailbox and mailboxes exclude each other"},
		{"  mailboxes: [INBOX]\n", "upstream.mailboxes (line 3): list at least two folders"},
		{"  mailboxes: []\n", "upstream.mailboxes (line 3): list at least two folders"},
		{"  mailboxes: [INBOX, inbox]\n", "upstream.mailboxes (line 3): \"inbox\" is listed twice"},
		{"  mailboxes: [INBOX, 'Junk*']\n", "upstream.mailboxes (line 3): \"Junk*\" is not a mailbox name"},
		{"  mailboxes: [a, b, c, d, e]\n", "upstream.mailboxes (line 3): 5 folders, at most 4"},
		{"  mailboxes: [INBOX, Junk]\npolicy:\n  delete: trash\n  trash_folder: junk\n", "policy.trash_folder (line 6): \"junk\" is one of the maildrop's folders (upstream.mailboxes)"},
		{"upstreams:\n  other:\n    address: 127.0.0.1:993\n    mailboxes: [INBOX, Spam]\npolicy:\n  trash_folder: Spam\n",
			"policy.trash_folder (line 8): \"Spam\" is one of the maildrop's folders (upstreams.other.mailboxes)"},
		{"upstreams:\n  other:\n    address: 127.0.0.1:993\n    mailboxes: [INBOX]\n", "upstreams.other.mailboxes"},
		{"policy:\n  rules:\n    - users: [a]\n      mailboxes: [INBOX, Junk]\n", ""},
		{"policy:\n  rules:\n    - users: [a]\n      mailboxes: [INBOX, Junk]\n      mailbox: Scans\n", "policy.rules[0].mailboxes (line 6): mailbox and mailboxes exclude each other"},
		{"policy:\n  rules:\n    - users: [a]\n      mailboxes: [Junk, JUNK]\n", "policy.rules[0].mailboxes"},
		{"policy:\n  rules:\n    - users: [a]\n      mailboxes: [INBOX, Junk]\n      trash_folder: Junk\n", "policy.rules[0].trash_folder"},
	} {
		_, err := parsed(t, base+tc.yaml)
		testkit.WantError(t, tc.yaml, err, tc.want)
	}
}

// An upstream with mailboxes gets no default mailbox: the two exclude
// each other, and the default would make the list look overridden.
func TestMailboxesNoDefaultMailbox(t *testing.T) {
	cfg := checked(t, "upstream:\n  address: 127.0.0.1:143\n  mailboxes: [INBOX, Junk]\n")
	if cfg.Upstream.Mailbox != "" || !slices.Equal(cfg.Upstream.Mailboxes, []string{"INBOX", "Junk"}) {
		t.Errorf("mailbox %q, mailboxes %q", cfg.Upstream.Mailbox, cfg.Upstream.Mailboxes)
	}
}

// A merged maildrop logs in twice one after the other (its first folder
// alone): LoginRounds says so wherever folders may be merged.
func TestLoginRoundsCountMergedFolders(t *testing.T) {
	const base = "upstream:\n  address: 127.0.0.1:143\n"
	for yaml, want := range map[string]int{
		"":                             1,
		"  mailbox: Scans\n":           1,
		"  mailboxes: [INBOX, Junk]\n": 2,
		"policy:\n  rules:\n    - users: [a]\n      mailbox: Junk\n":                       1,
		"policy:\n  rules:\n    - users: [a]\n      mailboxes: [INBOX, Junk]\n":            2,
		"upstreams:\n  other:\n    address: 127.0.0.1:993\n":                               1,
		"upstreams:\n  other:\n    address: 127.0.0.1:993\n    mailboxes: [INBOX, Spam]\n": 2,
		"auth_http:\n  url: http://127.0.0.1:9000/auth\n":                                  2,
	} {
		if got := checked(t, base+yaml).LoginRounds(); got != want {
			t.Errorf("%q: LoginRounds() = %d, want %d", yaml, got, want)
		}
	}
}

// A login's round may go to any configured upstream, so its time is the
// slowest upstream's: a dial and three commands.
func TestLoginRoundTimeTakesTheSlowestUpstream(t *testing.T) {
	const base = "upstream:\n  address: 127.0.0.1:143\n  dial_timeout: 2s\n  command_timeout: 5s\n"
	for yaml, want := range map[string]time.Duration{
		"": 17 * time.Second,
		"upstreams:\n  far:\n    address: 127.0.0.1:993\n    command_timeout: 40s\n":                       (15 + 120) * time.Second,
		"upstreams:\n  near:\n    address: 127.0.0.1:993\n    dial_timeout: 1s\n    command_timeout: 1s\n": 17 * time.Second,
	} {
		if got := checked(t, base+yaml).LoginRoundTime(); got != want {
			t.Errorf("%q: LoginRoundTime() = %v, want %v", yaml, got, want)
		}
	}
}
