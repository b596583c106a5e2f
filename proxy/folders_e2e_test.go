package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// Folders named at login and by rules, and policy.start_date, against
// Dovecot.

// curlPOP3 runs curl against the POP3 server at addr as user and returns
// what it printed for path ("" lists the maildrop, "1" retrieves message 1).
func curlPOP3(t *testing.T, addr, user, pass, path string) string {
	t.Helper()
	out, err := runTool(t, nil, t.TempDir(), "curl", "-sS", "--max-time", "30", "-u", user+":"+pass, "pop3://"+addr+"/"+path)
	if err != nil {
		t.Fatalf("curl as %s, %q: %v\n%s", user, path, err, out)
	}
	return out
}

// A scanner reads Scans and a ticket system Support/Inbound with alice's
// own password, by naming the folder after the user name; a rule serves
// a folder to a device; a folder that does not exist is refused.
func TestLoginNamesItsFolder(t *testing.T) {
	t.Parallel()
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}, ExtraConfig: dovecotSlashNamespace})
	imc := d.Dial(t, "alice")
	appendMail(t, imc, "INBOX", time.Now(), testMessage(1, "inbox mail\r\n"))
	appendMail(t, imc, "INBOX", time.Now(), testMessage(2, "inbox mail\r\n"))
	appendMail(t, imc, "Scans", time.Now(), testMessage(3, "a scan\r\n"))
	appendMail(t, imc, "Support/Inbound", time.Now(), testMessage(4, "a ticket\r\n"))
	addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Policy.Folders.Separator = "+"
		c.Policy.Devices.Separator = "#"
		c.Policy.Rules = []config.PolicyRule{{Devices: []string{"copier"}, Mailbox: "Scans"}}
	}}).addr

	for _, tc := range []struct{ user, want string }{
		{"alice+Scans", "a scan"},
		{"alice+Support/Inbound", "a ticket"},
		{"alice#copier", "a scan"},                   // the rule's mailbox
		{"alice+Support/Inbound#copier", "a ticket"}, // the login's folder beats the rule's
	} {
		if list := curlPOP3(t, addr, tc.user, "secret", ""); strings.Count(list, "\n") != 1 {
			t.Errorf("%s: LIST %q, want one message", tc.user, list)
		}
		if got := curlPOP3(t, addr, tc.user, "secret", "1"); !strings.Contains(got, tc.want) {
			t.Errorf("%s: message 1 is %q, want %q", tc.user, got, tc.want)
		}
	}
	if list := curlPOP3(t, addr, "alice", "secret", ""); strings.Count(list, "\n") != 2 {
		t.Errorf("alice: LIST %q, want INBOX's two messages", list)
	}

	c := pop3test.Dial(t, addr)
	c.OK("USER alice+Nowhere")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [SYS/PERM]") {
		t.Errorf("a folder that does not exist: %q", got)
	}
	c.OK("USER +Scans")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [AUTH]") {
		t.Errorf("a folder without a user: %q", got)
	}
	c.Quit()
}

// policy.start_date keeps out mail whose internal date is before its day
// (the last second of the day before is out, the first second of the day
// is in), and a rule for a device moves the day.
func TestStartDateLeavesOutOlderMail(t *testing.T) {
	t.Parallel()
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
	imc := d.Dial(t, "alice")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	start := today.AddDate(0, 0, -10)
	for i, date := range []time.Time{start.Add(-time.Second), start, today.Add(time.Minute)} {
		appendMail(t, imc, "INBOX", date, testMessage(i+1, fmt.Sprintf("dated %s\r\n", date.Format(time.RFC3339))))
	}
	addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Policy.StartDate = start.Format(config.StartDateLayout)
		c.Policy.Devices.Separator = "#"
		c.Policy.Rules = []config.PolicyRule{{Devices: []string{"phone"}, StartDate: today.Format(config.StartDateLayout)}}
	}}).addr

	for _, tc := range []struct {
		user string
		want []time.Time
	}{
		{"alice", []time.Time{start, today.Add(time.Minute)}},
		{"alice#phone", []time.Time{today.Add(time.Minute)}},
	} {
		c := pop3test.Dial(t, addr)
		c.Login(tc.user, "secret")
		n, _ := c.Stat()
		if n != len(tc.want) {
			t.Errorf("%s: %d messages, want %d", tc.user, n, len(tc.want))
		}
		for i := 1; i <= min(n, len(tc.want)); i++ {
			if got, want := string(c.Multi(fmt.Sprintf("RETR %d", i))), "dated "+tc.want[i-1].Format(time.RFC3339); !strings.Contains(got, want) {
				t.Errorf("%s: message %d is %q, want the one %s", tc.user, i, got, want)
			}
		}
		c.Quit()
	}
}
