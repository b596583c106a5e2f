//go:build unix

package proxy

import "syscall"

// descriptorLimit is the process's soft limit on open files, or 0 when
// it cannot be read or is unlimited.
func descriptorLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
