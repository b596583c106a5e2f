//go:build !linux

// Outside Linux the harness only has to compile: Courier is run in a
// private mount namespace, which only Linux has.

package couriertest

import "errors"

type process struct {
	exited chan struct{}
	err    error
	stop   func()
}

func startProcess(outPath string, argv ...string) (*process, error) {
	return nil, errors.ErrUnsupported
}
