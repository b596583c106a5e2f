package cyrustest

import "syscall"

// sysProcAttr puts the Cyrus master in its own process group so that stop
// can reach the imapd processes it forks, and asks the kernel to send
// SIGTERM to the master when the test binary dies without running its
// cleanups. The master drops root for the cyrus user, which clears that
// request in Linux, so it is a best effort only.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// signalGroup signals the process group led by the master we started
// (its pgid is its pid, see Setpgid), never processes found by name.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
