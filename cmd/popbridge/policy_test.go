package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// check-config reports every mistake in the policy section at once, each
// with its key, and accepts a full multi-device policy.
func TestCheckConfigPolicySection(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		wantCode   int
		want       []string
	}{
		{"full policy", `upstream:
  address: imap.example.com:993
listen:
  - address: "0.0.0.0:110"
policy:
  delete: trash
  trash_folder: Papierkorb
  seen: quit
  max_age_days: 90
  devices:
    separator: "#"
    known: [Laptop, scanner]
    delete_when_all_deleted: true
    addresses:
      - network: 192.0.2.10
        device: scanner
  rules:
    - users: ["*@example.org"]
      devices: [scanner]
      seen: never
      max_age_days: 0
    - listen: ["0.0.0.0:110"]
      networks: [10.0.0.0/8]
      delete: keep
`, exitOK, []string{"ok"}},
		{"every policy mistake", `upstream:
  address: imap.example.com:993
policy:
  delete: shred
  trash_folder: inbox
  seen: sometimes
  max_age_days: -1
  devices:
    separator: "@"
    known: ["bad device"]
    addresses:
      - network: 300.1.1.1/8
        device: phone
  rules:
    - delete: keep
    - users: ["[a"]
      listen: ["127.0.0.1:9"]
      seen: later
`, exitConfig, []string{
			`policy.delete (line 4): "shred" is not one of expunge, trash, flag, keep`,
			`policy.trash_folder (line 5): "inbox" is the maildrop`,
			`policy.seen (line 6): "sometimes" is not one of retr, never, quit`,
			"policy.max_age_days (line 7): must not be negative",
			`policy.devices.separator (line 9): "@"`,
			`policy.devices.known[0] (line 10): "bad device" is not a device name`,
			"policy.devices.addresses[0].network (line 12): \"300.1.1.1/8\" is neither an address nor a CIDR prefix",
			`policy.devices.addresses[0].device (line 13): "phone" is not in policy.devices.known`,
			"policy.rules[0] (line 15): needs at least one of users, devices, networks, listen",
			`policy.rules[1].users[0] (line 16): bad pattern "[a"`,
			`policy.rules[1].listen[0] (line 17): "127.0.0.1:9" is not the address of any listen entry`,
			`policy.rules[1].seen (line 18): "later"`,
		}},
		{"delete when all deleted needs known devices", "upstream:\n  address: a:1\npolicy:\n  devices:\n    delete_when_all_deleted: true\n",
			exitConfig, []string{"policy.devices.delete_when_all_deleted (line 5): needs policy.devices.known"}},
		{"trash folder is another upstream's maildrop", "upstream:\n  address: a:1\nupstreams:\n  other:\n    address: b:1\n    mailbox: Archive\npolicy:\n  trash_folder: archive\n",
			exitConfig, []string{`policy.trash_folder (line 8): "archive" is the maildrop (upstreams.other.mailbox) itself`}},
		{"misspelt device key", "upstream:\n  address: a:1\npolicy:\n  devices:\n    seperator: '#'\n",
			exitConfig, []string{"policy.devices.seperator (line 5): unknown key; did you mean separator?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, []string{"check-config", path}, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
