package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// The report, replayed: the mailbox Test is re-created with the
// same three messages (new UIDVALIDITY and UIDs, as after a restore or a
// move to another server). With uidl_format "%m", mpop, fetchmail and
// getmail6, leaving mail on the server and remembering UIDLs, download
// nothing again; with the default format they download all three again,
// which shows that the re-creation is felt at all. Either way a message
// that is really new is downloaded, once.
func TestClientsDownloadNothingAfterRecreateWithHeaderHash(t *testing.T) {
	for _, tool := range []string{"mpop", "fetchmail", "getmail"} {
		testkit.Program(t, tool)
	}
	d := startDovecot(t)
	c := d.Dial(t, "alice")
	msgs := [][]byte{lifecycleMessage(1, "one\r\n"), lifecycleMessage(2, "two\r\n"), lifecycleMessage(3, "three\r\n")}
	recreateTest := func() { testkit.RecreateMailbox(t, c, "Test", msgs...) }
	clients := map[string]func(t *testing.T, addr, state string) int{
		"mpop": runMpopKeep, "fetchmail": runFetchmailKeep, "getmail6": runGetmailKeep}
	for _, tc := range []struct {
		format string
		again  int // messages downloaded again after the re-creation
	}{{"%m", 0}, {"%08Xu%08Xv", 3}} {
		pop3, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
		startBridge(t, fmt.Sprintf(`listen:
  - address: %q
upstream:
  address: %q
  tls: none
  mailbox: Test
policy:
  uidl_format: %q
limits:
  auth_failure_delay: 0s
metrics:
  listen: %q
`, pop3, d.IMAPAddr, tc.format, metrics), metrics)
		for _, name := range []string{"mpop", "fetchmail", "getmail6"} {
			run, state := clients[name], t.TempDir()
			recreateTest()
			if n := run(t, pop3, state); n != len(msgs) {
				t.Fatalf("%s, %s: the first run downloaded %d messages, want %d", name, tc.format, n, len(msgs))
			}
			if n := run(t, pop3, state); n != 0 {
				t.Fatalf("%s, %s: a second run downloaded %d messages, want none", name, tc.format, n)
			}
			recreateTest()
			if n := run(t, pop3, state); n != tc.again {
				t.Errorf("%s, %s: after the re-creation a run downloaded %d messages, want %d", name, tc.format, n, tc.again)
			}
			testkit.AppendAll(t, c, "Test", lifecycleMessage(4, "really new\r\n"))
			if n := run(t, pop3, state); n != 1 {
				t.Errorf("%s, %s: after a new message arrived a run downloaded %d messages, want 1", name, tc.format, n)
			}
		}
	}
}

// runMpopKeep runs mpop once, leaving mail on the server and fetching
// only messages whose UIDL is not in its list, and returns how many it
// delivered.
func runMpopKeep(t *testing.T, addr, state string) int {
	host, port, _ := net.SplitHostPort(addr)
	out := newMaildir(t, state)
	rc := filepath.Join(state, "mpoprc")
	writeFile(t, rc, fmt.Sprintf("account default\nhost %s\nport %s\nuser alice\npassword secret\nauth user\ntls off\n"+
		"timeout 30\ndelivery maildir %s\nkeep on\nuidls_file %s/uidls\nreceived_header off\n", host, port, out, state))
	if b, err := exec.Command("mpop", "-C", rc, "--half-quiet", "default").CombinedOutput(); err != nil {
		t.Fatalf("mpop: %v\n%s", err, b)
	}
	ents, _ := os.ReadDir(filepath.Join(out, "new"))
	return len(ents)
}

// runFetchmailKeep runs fetchmail once with "keep" and "uidl" and returns
// how many messages it delivered.
func runFetchmailKeep(t *testing.T, addr, state string) int {
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(state, fmt.Sprintf("run%d", countRuns(state)))
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(state, "fetchmailrc")
	writeFile(t, rc, fmt.Sprintf("set no syslog\nset invisible\npoll %s service %s protocol pop3 uidl auth password timeout 30\n"+
		"  user \"alice\" there with password \"secret\" is \"root\" here\n  keep no rewrite sslproto \"\"\n  mda \"cat > %s/msg.$$\"\n",
		host, port, out))
	cmd := exec.Command("fetchmail", "-f", rc, "--nodetach", "--nosyslog",
		"--idfile", filepath.Join(state, "fetchids"), "--pidfile", filepath.Join(state, "fetchmail.pid"))
	cmd.Env = append(os.Environ(), "HOME="+state)
	// Exit code 1 means "no new mail".
	if b, err := cmd.CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("fetchmail: %v\n%s", err, b)
		}
	}
	ents, _ := os.ReadDir(out)
	return len(ents)
}

// runGetmailKeep runs getmail6 once, leaving mail on the server
// (delete = false) and fetching only messages whose UIDL is not in its
// "oldmail" file in state (read_all = false), and returns how many it
// delivered. getmail refuses to deliver as root, so under root it runs as
// "nobody".
func runGetmailKeep(t *testing.T, addr, state string) int {
	host, port, _ := net.SplitHostPort(addr)
	out := newMaildir(t, state)
	rc := filepath.Join(state, "getmailrc")
	writeFile(t, rc, fmt.Sprintf("[retriever]\ntype = SimplePOP3Retriever\nserver = %s\nport = %s\nusername = alice\npassword = secret\ntimeout = 30\n\n"+
		"[destination]\ntype = Maildir\npath = %s/\n\n[options]\nverbose = 0\nread_all = false\ndelete = false\ndelivered_to = false\nreceived = false\n",
		host, port, out))
	getmail, _ := exec.LookPath("getmail")
	prog, args := testkit.GetmailCommand(t, getmail, "--getmaildir", state, "--rcfile", rc)
	cmd := exec.Command(prog, args...)
	if cred := testkit.NobodyOwns(t, state); cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Env = append(os.Environ(), "HOME="+state)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("getmail: %v\n%s", err, b)
	}
	ents, _ := os.ReadDir(filepath.Join(out, "new"))
	return len(ents)
}

// newMaildir makes a fresh maildir in state for one run's mail.
func newMaildir(t *testing.T, state string) string {
	t.Helper()
	out := filepath.Join(state, fmt.Sprintf("run%d", countRuns(state)))
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(out, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func countRuns(state string) int {
	ents, _ := os.ReadDir(state)
	return len(ents)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
