// Package proctest starts and stops the server processes that test and
// benchmark harnesses run (Dovecot, Cyrus, the popbridge binary), so that
// none of them, nor anything they fork, outlives its harness.
//
// A process runs in its own process group (on Linux), which is how Stop
// reaches the session processes a master forks and leaves behind; it is
// only ever signalled by the PID it was started with, never by name.
package proctest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopTimeout bounds each wait of Stop: for the process, then for the rest
// of its group; SIGKILL follows.
const StopTimeout = 10 * time.Second

// Process is one started server process.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	err    error         // from cmd.Wait; valid after exited is closed
	once   sync.Once
}

// Start runs bin with args and sends its stdout and stderr to a new file
// at outPath. A file, not a pipe: the processes a master forks inherit
// them, and with a pipe cmd.Wait would also wait for every one of them.
func Start(outPath, bin string, args ...string) (*Process, error) {
	return StartEnv(outPath, nil, bin, args...)
}

// StartEnv is Start with the environment env (nil: this process's), for
// a server that must not see the test's environment.
func StartEnv(outPath string, env []string, bin string, args ...string) (*Process, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	p := &Process{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Output is what a process started by Start wrote to outPath, or why it
// cannot be read.
func Output(outPath string) string {
	data, err := os.ReadFile(outPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", outPath, err)
	}
	return string(data)
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what waiting for the process returned; valid once Exited is
// closed.
func (p *Process) Err() error { return p.err }

// Stop sends SIGTERM to the process and waits for it, then to the rest of
// its process group (the sessions a master forked, which may not notice
// their master is gone for a while) and waits for them too, so that a
// harness can remove their files afterwards. Each wait is bounded by
// StopTimeout, then SIGKILL is the last resort. Stop on nil does nothing;
// only the first call acts.
func (p *Process) Stop() { p.end(syscall.SIGTERM) }

// Kill is Stop without the grace: SIGKILL at once, for a process whose
// clean shutdown would only take time (a popbridge draining sessions).
func (p *Process) Kill() { p.end(syscall.SIGKILL) }

func (p *Process) end(sig syscall.Signal) {
	if p == nil {
		return
	}
	p.once.Do(func() {
		pid := p.cmd.Process.Pid
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(sig)
			select {
			case <-p.exited:
			case <-time.After(StopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if signalGroup(pid, sig) != nil {
			return // group already empty, or no groups on this platform
		}
		for end := time.Now().Add(StopTimeout); time.Now().Before(end); {
			if signalGroup(pid, 0) != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = signalGroup(pid, syscall.SIGKILL)
	})
}

// ErrForeign means another server answered on the port: it was taken
// between FreePorts and the process's bind, and fresh ports fix that.
var ErrForeign = errors.New("port taken by another server")

// WaitGreeting polls addr until a greeting starting with okPrefix and
// holding token ("" for any) arrives, the process exits, another server
// answers (ErrForeign), or timeout passes.
func (p *Process) WaitGreeting(addr, okPrefix, token string, timeout time.Duration) error {
	return p.WaitReady(timeout, func() error { return Greeting(addr, okPrefix, token, p.exited) })
}

// WaitReady calls ready, a check that the server serves, until it
// returns nil, the process exits, ready's error wraps ErrForeign (another
// server answered), or timeout passes.
func (p *Process) WaitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready: %v", p.err)
		default:
		}
		err := ready()
		if err == nil || errors.Is(err, ErrForeign) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Greeting reads one server greeting from addr. Dovecot's login processes
// may first send "Waiting for authentication process", which is skipped.
// It gives up as soon as exited is closed, which is how a lost port race
// shows when a silent process holds the port.
func Greeting(addr, okPrefix, token string, exited <-chan struct{}) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-exited:
		case <-done:
		}
		c.Close()
	}()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading greeting from %s: %w", addr, err)
		}
		switch {
		case strings.HasPrefix(line, okPrefix) && strings.Contains(line, token):
			return nil
		case strings.Contains(line, "Waiting for authentication"):
			continue
		default:
			return fmt.Errorf("%w: %s greeted with %q", ErrForeign, addr, line)
		}
	}
}

// FreePorts asks the kernel for n distinct free loopback ports. They are
// released before the server binds them, so a race is possible: harnesses
// retry on ErrForeign or on a bind error.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Kept open until all are picked so the kernel cannot hand out
		// the same port twice.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Executable finds a program: name in PATH, else the first executable of
// dirs/name. sbin directories are often missing from a non-root PATH even
// where the program is installed.
func Executable(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := d + "/" + name
		if IsExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %s", name, strings.Join(dirs, ", "))
}

// IsExecutable reports whether path is an executable file.
func IsExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
