package proxy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
	"github.com/popbridge/popbridge/proxy/config"
)

var messageIDRe = regexp.MustCompile(`(?m)^Message-ID: <(m\d+)@example\.org>`)

// Three real POP3 clients, each a device of one user, each download every
// message exactly once over several runs with new mail in between, while
// an IMAP client still sees all mail, undeleted. mpop and getmail delete
// what they took, so their views hide it; fetchmail keeps mail on the
// server and relies on its UIDL list. The clients are driven as in the
// interop tests (clients_run_test.go).
func TestRealClientsAsDevicesDownloadEveryMessageOnce(t *testing.T) {
	t.Parallel()
	u := startDovecotUpstream(t)
	addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
		c.Policy.Devices.Separator = "#"
		c.Policy.Devices.Known = []string{"laptop", "scanner", "erp"}
	}}).addr
	host, port, _ := strings.Cut(addr, ":")
	type device struct {
		name   string
		run    func(*testing.T, *clientRun) [][]byte
		r      *clientRun
		counts map[string]int // Message-ID → times downloaded
	}
	var devices []*device
	for _, d := range []struct {
		device, tool string
		run          func(*testing.T, *clientRun) [][]byte
		delete       bool
	}{
		{"laptop", "mpop", runMpop, true},
		{"scanner", "fetchmail", runFetchmail, false},
		{"erp", "getmail", runGetmail, true},
	} {
		r := &clientRun{tool: testkit.Program(t, d.tool), host: host, port: port,
			user: u.user + "#" + d.device, pass: u.pass, state: t.TempDir(), delete: d.delete}
		devices = append(devices, &device{name: d.device, run: d.run, r: r, counts: map[string]int{}})
	}
	runAll := func() {
		for _, d := range devices {
			d.r.out = t.TempDir()
			for _, m := range d.run(t, d.r) {
				for _, id := range messageIDRe.FindAllStringSubmatch(string(m), -1) {
					d.counts[id[1]]++
				}
			}
		}
	}

	deliverN(t, u, 3)
	runAll()
	for i := 4; i <= 5; i++ {
		u.deliver(t, testMessage(i, fmt.Sprintf("Body of message %d.\r\n", i)))
	}
	runAll()
	runAll() // finds nothing new

	for _, d := range devices {
		for i := 1; i <= 5; i++ {
			if n := d.counts[fmt.Sprintf("m%d", i)]; n != 1 {
				t.Errorf("%s (%s) got message %d %d times, want once", d.name, d.r.tool, i, n)
			}
		}
		if len(d.counts) != 5 {
			t.Errorf("%s got messages %v, want m1..m5", d.name, d.counts)
		}
	}

	state := upstreamState(t, u)
	if len(state) != 5 {
		t.Fatalf("IMAP sees %d messages, want all 5", len(state))
	}
	for _, m := range state {
		if hasFlag(m.Flags, imap.FlagDeleted) {
			t.Errorf("UID %d flagged \\Deleted: %v", m.UID, m.Flags)
		}
		for _, d := range devices {
			if got := hasFlag(m.Flags, imapback.DeviceKeyword(d.name)); got != d.r.delete {
				t.Errorf("UID %d: %s keyword %v, want %v (%v)", m.UID, d.name, got, d.r.delete, m.Flags)
			}
		}
	}
	// The deleting devices' views are empty; a plain login sees all.
	for login, want := range map[string]int{u.user + "#laptop": 0, u.user + "#erp": 0, u.user + "#scanner": 5, u.user: 5} {
		c := pop3test.Dial(t, addr)
		c.Login(login, u.pass)
		if n, _ := c.Stat(); n != want {
			t.Errorf("STAT as %s: %d messages, want %d", login, n, want)
		}
		c.Quit()
	}
}
