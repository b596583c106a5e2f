package dovecottest

import "syscall"

// sysProcAttr puts Dovecot in its own process group so that stop can reach
// the session processes it leaves behind, and makes the kernel send SIGTERM
// to the master when the test binary dies without running its cleanups
// (e.g. killed by go test's -timeout), so no orphaned instance keeps
// running. Linux ties the parent-death signal to the thread that started
// the child, which Go only ends for goroutines that exit while locked to
// their thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// signalGroup signals the process group led by the master we started
// (its pgid is its pid, see Setpgid), never processes found by name.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
