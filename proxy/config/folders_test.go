package config

import (
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// The checks of folders at login, start dates and the auth_http hook's
// place in the config each name the setting at fault.
func TestFolderStartDateAndHookChecks(t *testing.T) {
	const base = "upstream:\n  address: 127.0.0.1:143\n"
	for _, tc := range []struct{ yaml, want string }{
		{"policy:\n  folders:\n    separator: '+'\n", ""},
		{"policy:\n  folders:\n    separator: '+'\n  devices:\n    separator: '#'\n", ""},
		{"policy:\n  folders:\n    separator: '+'\n  devices:\n    separator: '+'\n", "policy.folders.separator (line 5): \"+\" is policy.devices.separator too"},
		{"policy:\n  folders:\n    separator: '@'\n", "policy.folders.separator (line 5): \"@\" is not one character of"},
		{"policy:\n  folders:\n    separator: '++'\n", "policy.folders.separator"},
		{"policy:\n  start_date: 2026-01-15\n", ""},
		{"policy:\n  start_date: 15.01.2026\n", "policy.start_date (line 4): \"15.01.2026\" is not a date written 2006-01-02"},
		{"policy:\n  rules:\n    - users: [a]\n      start_date: 2026-02-30\n", "policy.rules[0].start_date"},
		{"policy:\n  rules:\n    - users: [a]\n      mailbox: 'Scans/*'\n", "policy.rules[0].mailbox (line 6): \"Scans/*\" is not a mailbox name"},
		{"policy:\n  rules:\n    - users: [a]\n      mailbox: Support/Inbound\n", ""},
		{"auth_http:\n  url: http://127.0.0.1:9000/auth\n", ""},
		{"auth_http:\n  timeout: 1s\n", "auth_http.url (line 3): required"},
		{"auth_http:\n  url: http://127.0.0.1:9000/auth\nroutes:\n  - domain: example.com\n", "auth_http.url (line 4): routes are not used"},
	} {
		_, err := parsed(t, base+tc.yaml)
		testkit.WantError(t, tc.yaml, err, tc.want)
	}
}
