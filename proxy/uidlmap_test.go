package proxy

// policy.uidl_map end to end: a user's imported map is read at each login
// and overrides the configured format for the messages it names.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/uidlmap"
)

func TestUIDLMapServesImportedIDs(t *testing.T) {
	u := startMemUpstream(t)
	for i := 1; i <= 3; i++ {
		u.deliver(t, testMessage(i, "body\r\n"))
	}
	dir := t.TempDir()
	addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
		c.Policy.UIDLMap = dir
	}}).addr

	uidls := func() []string {
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(string(c.Multi("UIDL"))), "\r\n") {
			if f := strings.Fields(line); len(f) == 2 {
				ids = append(ids, f[1])
			}
		}
		c.Quit()
		return ids
	}
	// Without a file for the user: the configured format (%08Xu%08Xv).
	before := uidls()
	if len(before) != 3 {
		t.Fatalf("UIDL before the import: %q", before)
	}
	validity, err := strconv.ParseUint(before[0][8:], 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	uid2, _ := strconv.ParseUint(before[1][:8], 16, 32)

	// The import maps the second message to its old id; the others keep
	// the format. A new file is read at the next login, no reload needed.
	tab := &uidlmap.Table{UIDValidity: uint32(validity), Mailbox: "INBOX",
		UIDLs: map[imap.UID]string{imap.UID(uid2): "old-server-id-2"}}
	if err := uidlmap.WriteFile(dir, u.user, tab); err != nil {
		t.Fatal(err)
	}
	after := uidls()
	want := []string{before[0], "old-server-id-2", before[2]}
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Errorf("UIDL after the import = %q, want %q", after, want)
	}

	// A map made for another UIDVALIDITY (the mailbox was re-created
	// since) names other messages: it is ignored.
	tab.UIDValidity++
	if err := uidlmap.WriteFile(dir, u.user, tab); err != nil {
		t.Fatal(err)
	}
	if got := uidls(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("UIDL with a stale map = %q, want %q", got, before)
	}
}

func TestUIDLMapMissingDirectoryFailsCheck(t *testing.T) {
	cfg := testConfig("127.0.0.1:143")
	cfg.Policy.UIDLMap = t.TempDir() + "/missing"
	err := cfg.Check()
	if err == nil || !strings.Contains(err.Error(), "policy.uidl_map:") {
		t.Fatalf("Check = %v, want a policy.uidl_map error", err)
	}
}
