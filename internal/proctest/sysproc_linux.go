package proctest

import "syscall"

// sysProcAttr puts the process in its own process group so that Stop can
// reach what it forks, and makes the kernel send SIGTERM to it when the
// harness dies without running its cleanups (e.g. killed by go test's
// -timeout), so that no orphaned server keeps running. Linux ties this
// parent-death signal to the thread that started the child, and clears it
// when the child changes its user (Cyrus's master does): a best effort.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// signalGroup signals the process group led by the process we started
// (its pgid is its pid, see Setpgid), never processes found by name.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
