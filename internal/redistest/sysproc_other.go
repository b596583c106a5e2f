//go:build !linux

package redistest

import "syscall"

// sysProcAttr adds nothing outside Linux, where the harness is only
// expected to compile: redis-server is then stopped by the test's cleanup
// alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }
