package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/pop3test"
)

// requireClient returns the path of a real POP3 client. In CI a missing
// one is a missing install step in .ci/run: fail, not skip.
func requireClient(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed: .ci/run must install it", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

// popClient is one device: a real POP3 client with its own state files.
type popClient struct {
	name  string
	mbox  string // where it delivers
	run   func(t *testing.T)
	keeps bool // leaves mail (keep + UIDL state) instead of DELE
}

func runClient(t *testing.T, name string, okCodes []int, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "HOME="+filepath.Dir(args[len(args)-1]))
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	for _, ok := range okCodes {
		if code == ok {
			return
		}
	}
	t.Fatalf("%s exited %d (%v):\n%s", name, code, err, out)
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mpopDevice deletes what it downloaded (keep off): in its view the
// deletes become its keyword. It also keeps UIDL state (uidls_file).
func mpopDevice(t *testing.T, dir, addr, login, pass string) popClient {
	bin := requireClient(t, "mpop")
	host, port, _ := strings.Cut(addr, ":")
	mbox := writeFile(t, filepath.Join(dir, "mpop.mbox"), "")
	conf := writeFile(t, filepath.Join(dir, "mpoprc"), fmt.Sprintf(`defaults
tls off
auth user
account device
host %s
port %s
user %s
password %s
delivery mbox %s
uidls_file %s
keep off
`, host, port, login, pass, mbox, filepath.Join(dir, "mpop.uidls")))
	return popClient{name: "mpop", mbox: mbox, run: func(t *testing.T) {
		runClient(t, "mpop", []int{0}, bin, "-q", "-C", conf, "device")
	}}
}

// fetchmailDevice leaves mail on the server (keep) and remembers what it
// fetched by UIDL (uidl, its id file).
func fetchmailDevice(t *testing.T, dir, addr, login, pass string) popClient {
	bin := requireClient(t, "fetchmail")
	host, port, _ := strings.Cut(addr, ":")
	mbox := writeFile(t, filepath.Join(dir, "fetchmail.mbox"), "")
	rc := writeFile(t, filepath.Join(dir, "fetchmailrc"), fmt.Sprintf(`set no syslog
set no bouncemail
poll %s service %s protocol pop3 uidl auth password
  user "%s" there with password "%s" is "root" here
  keep
  sslproto ""
  mda "/bin/sh -c 'cat >> %s'"
`, host, port, login, pass, mbox))
	ids := filepath.Join(dir, "fetchids")
	return popClient{name: "fetchmail", mbox: mbox, keeps: true, run: func(t *testing.T) {
		// Exit 1 is "no new mail".
		runClient(t, "fetchmail", []int{0, 1}, bin, "-s", "-f", rc, "-i", ids, "--pidfile", filepath.Join(dir, "fetchmail.pid"))
	}}
}

// getmailDevice deletes what it downloaded and keeps its own UIDL state
// (oldmail file, read_all = false).
func getmailDevice(t *testing.T, dir, addr, login, pass string) popClient {
	bin := requireClient(t, "getmail")
	host, port, _ := strings.Cut(addr, ":")
	mbox := writeFile(t, filepath.Join(dir, "getmail.mbox"), "")
	rc := writeFile(t, filepath.Join(dir, "getmailrc"), fmt.Sprintf(`[retriever]
type = SimplePOP3Retriever
server = %s
port = %s
username = %s
password = %s

[destination]
# Tests run as root, where Mboxrd refuses to deliver.
type = MDA_external
path = /bin/sh
arguments = ("-c", "cat >> %s")
allow_root_commands = true

[options]
delete = true
read_all = false
verbose = 0
`, host, port, login, pass, mbox))
	return popClient{name: "getmail", mbox: mbox, run: func(t *testing.T) {
		runClient(t, "getmail", []int{0}, bin, "--getmaildir", dir, "--rcfile", rc)
	}}
}

var messageIDRe = regexp.MustCompile(`(?m)^Message-ID: <(m\d+)@example\.org>`)

// Three real POP3 clients, each a device of one user, each download every
// message exactly once over several runs with new mail in between, while
// an IMAP client still sees all mail, undeleted.
func TestRealClientsAsDevicesDownloadEveryMessageOnce(t *testing.T) {
	t.Parallel()
	u := startDovecotUpstream(t)
	addr := startProxy(t, u, func(c *Config) {
		c.Policy.Devices.Separator = "#"
		c.Policy.Devices.Known = []string{"laptop", "scanner", "erp"}
	})
	devices := map[string]popClient{}
	for device, mk := range map[string]func(*testing.T, string, string, string, string) popClient{
		"laptop": mpopDevice, "scanner": fetchmailDevice, "erp": getmailDevice,
	} {
		dir := t.TempDir()
		devices[device] = mk(t, dir, addr, u.user+"#"+device, u.pass)
	}

	deliverN(t, u, 3)
	for _, d := range devices {
		d.run(t)
	}
	for i := 4; i <= 5; i++ {
		u.deliver(t, testMessage(i, fmt.Sprintf("Body of message %d.\r\n", i)))
	}
	for round := 0; round < 2; round++ { // the second round finds nothing new
		for _, d := range devices {
			d.run(t)
		}
	}

	for device, d := range devices {
		data, err := os.ReadFile(d.mbox)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, m := range messageIDRe.FindAllStringSubmatch(string(data), -1) {
			count[m[1]]++
		}
		for i := 1; i <= 5; i++ {
			if n := count[fmt.Sprintf("m%d", i)]; n != 1 {
				t.Errorf("%s (%s) got message %d %d times, want once", device, d.name, i, n)
			}
		}
		if len(count) != 5 {
			t.Errorf("%s (%s) got messages %v, want m1..m5", device, d.name, count)
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
		for device, d := range devices {
			if got := hasFlag(m.Flags, imapback.DeviceKeyword(device)); got == d.keeps {
				t.Errorf("UID %d: %s keyword %v, want %v (%v)", m.UID, device, got, !d.keeps, m.Flags)
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
