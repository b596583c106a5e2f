//go:build !linux

package proctest

import (
	"errors"
	"syscall"
)

// sysProcAttr adds nothing outside Linux, where the harnesses are only
// expected to compile: a process is then stopped by Stop alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup is unsupported without the process group set up on Linux.
func signalGroup(pid int, sig syscall.Signal) error {
	return errors.ErrUnsupported
}
