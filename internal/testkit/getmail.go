// getmail.go holds what running getmail6 under a test takes: the
// interpreter of its script, a fix for a lost wake-up that makes it hang
// on a loaded machine, and the unprivileged user it must deliver as.

package testkit

import (
	"bufio"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// GetmailCommand returns the program and arguments that run the getmail
// script tool with args, through getmailLostWakeupFix.
func GetmailCommand(t testing.TB, tool string, args ...string) (string, []string) {
	t.Helper()
	return Interpreter(t, tool), append([]string{"-c", getmailLostWakeupFix, tool}, args...)
}

// getmailLostWakeupFix runs getmail (argv[1]) with one bug worked around:
// getmail forks a child for each delivery and only then installs the
// SIGCHLD handler that reaps it and wakes the waiting parent. A child that
// exits before that (or a wake-up sent before the wait begins) goes
// unnoticed, and getmail gives up after 60 s ("waiting child pid N timed
// out"), which happens on a loaded machine. The patched wait also polls
// waitpid itself. A child that exits just after the handler is installed
// but before getmail has stored the handler it replaced makes the handler
// fail with AttributeError ('_ForkingBase__orig_handler'), so the patched
// preparation stores the current handler first. Nothing else of getmail
// changes.
const getmailLostWakeupFix = `
import os, runpy, signal, sys, threading, time
sys.path.insert(0, "/usr/lib/python3/dist-packages")
import getmailcore.baseclasses as base

class ChildExited(threading.Condition):
    def __init__(self, forking):
        super().__init__()
        self.f = forking
    def wait(self, timeout=None):
        end = time.monotonic() + (timeout or 60)
        while self.f._ForkingBase__child_status is None:
            try:
                pid, status = os.waitpid(self.f.child.childpid, os.WNOHANG)
            except ChildProcessError:
                pid = 0  # the handler reaped it; it sets the status
            if pid:
                signal.signal(signal.SIGCHLD, self.f._ForkingBase__orig_handler)
                self.f._ForkingBase__child_pid = pid
                self.f._ForkingBase__child_status = status
                return True
            if time.monotonic() > end:
                return False
            super().wait(0.05)
        return True

prepare = base.ForkingBase._prepare_child
def prepare_child(self):
    self._ForkingBase__orig_handler = signal.getsignal(signal.SIGCHLD)
    prepare(self)
    self._ForkingBase__child_exited = ChildExited(self)
base.ForkingBase._prepare_child = prepare_child

sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
`

// Interpreter returns the program named on a script's #! line.
func Interpreter(t testing.TB, script string) string {
	t.Helper()
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, _ := bufio.NewReader(f).ReadString('\n')
	prog, ok := strings.CutPrefix(first, "#!")
	if !ok {
		t.Fatalf("%s does not start with #!", script)
	}
	return strings.Fields(prog)[0]
}

// NobodyOwns gives the directories (and everything in them) to the user
// "nobody", makes the directories above them traversable, and returns the
// credential to run a program as nobody; or nil when the tests do not run
// as root, and the program can run as we do.
func NobodyOwns(t testing.TB, dirs ...string) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	for _, dir := range dirs {
		// t.TempDir's directories are 0700.
		for d := filepath.Dir(dir); d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}
