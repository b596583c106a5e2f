package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the test binary dies
// without running its cleanups (e.g. killed by go test's -timeout), so no
// orphaned instance keeps its port. Linux ties the parent-death signal to
// the thread that started the child, which Go only ends for goroutines
// that exit while locked to their thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
