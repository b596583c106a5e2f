// The life cycle of the one process tree an instance runs: started in its
// own process group, stopped by signalling that group.

package couriertest

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is a started process group; exited is closed once its leader
// has exited, with err holding what Wait returned.
type process struct {
	exited chan struct{}
	err    error
	stop   func()
}

// startProcess runs argv with a minimal environment and its output in
// outPath (a file, not a pipe, so Wait does not wait for the children
// that inherit it). The leader gets its own process group, so that stop
// reaches every daemon and session it forks, and SIGTERM when the test
// binary dies without running its cleanups. stop sends SIGTERM to the
// group, waits for the leader and then for the group to empty, both
// bounded, and ends with SIGKILL; it never looks processes up by name.
func startProcess(outPath string, argv ...string) (*process, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	pgid := cmd.Process.Pid // see Setpgid
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(stopTimeout):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-p.exited
			}
			for end := time.Now().Add(stopTimeout); time.Now().Before(end); {
				if syscall.Kill(-pgid, 0) != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		})
	}
	return p, nil
}
