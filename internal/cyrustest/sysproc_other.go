//go:build !linux

package cyrustest

import (
	"errors"
	"syscall"
)

// sysProcAttr adds nothing outside Linux, where the harness is only
// expected to compile: Cyrus is then stopped by the test's cleanup alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup is unsupported without the process group set up on Linux.
func signalGroup(pid int, sig syscall.Signal) error {
	return errors.ErrUnsupported
}
