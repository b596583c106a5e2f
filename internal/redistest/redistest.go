// Package redistest starts a private, throw-away redis-server on 127.0.0.1
// for Go tests, and can stop, pause and restart it mid-test so that code
// using a shared store can be tested with the store going away and coming
// back.
//
// Each instance runs Debian's redis-server with no persistence (--save ""
// --appendonly no), its working dir and log in a fresh temp dir, and is
// stopped by its PID in the test's cleanup. A start and a stop together
// take about 0.1 s. Without a redis-server binary, Start skips the
// test, or fails it when CI=true. Any user may run it (root too).
//
// Goroutines: each running process has one goroutine that waits for it
// to exit and then closes the instance's exited channel; everything else
// runs on the test's goroutine.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/proctest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// Options configures Start.
type Options struct {
	// Password, when set, is required from clients (requirepass).
	Password string
	// TLS serves TLS only (tls-port, no plain port) with a self-signed
	// certificate for 127.0.0.1 that Server.CAFile holds; clients are
	// not asked for certificates.
	TLS bool
}

// Server is a running redis-server. It is stopped automatically by
// t.Cleanup of the test that started it.
type Server struct {
	// Addr is "127.0.0.1:PORT"; it stays the same across Restart.
	Addr string
	// Dir is the temp dir holding the log (redis.log) and TLS files.
	Dir string
	// CAFile is a PEM file with the certificate the server presents, or
	// "" unless Options.TLS.
	CAFile string

	t         testing.TB
	bin       string
	opts      Options
	certFile  string
	keyFile   string
	clientTLS *tls.Config // trusts CAFile only

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed when proc has been reaped
}

// Tunables: start-up normally takes well under 100 ms; the bounds are
// generous for loaded CI machines.
const (
	readyTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	startTries   = 3
)

// Available reports whether a redis-server binary is installed.
func Available() bool {
	_, err := serverPath()
	return err == nil
}

// serverPath also looks in the sbin and bin dirs that a non-root PATH
// may miss.
func serverPath() (string, error) {
	return proctest.Executable("redis-server", "/usr/bin", "/usr/sbin", "/usr/local/bin")
}

// Start starts redis-server on a free port of 127.0.0.1 and waits until it
// answers PING. When redis-server is missing: t.Fatal if the environment
// variable CI is "true", otherwise t.Skip with a clear message.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := serverPath()
	if err != nil {
		testkit.Unavailable(t, "redistest: "+err.Error()+" (on Debian/Ubuntu: apt-get install redis-server)")
	}
	s := &Server{Dir: t.TempDir(), t: t, bin: bin, opts: opts}
	if opts.TLS {
		s.writeTLSFiles()
	}
	t.Cleanup(s.Stop)
	// A port found free may be taken before redis-server binds it; then
	// the start fails and is retried on another port.
	for try := 1; ; try++ {
		ports, err := proctest.FreePorts(1)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		err = s.start()
		if err == nil {
			return s
		}
		if try == startTries {
			t.Fatalf("redistest: %v", err)
		}
	}
}

// Restart starts the server again on the same address after Stop, with
// an empty data set (nothing is persisted). It fails the test if the
// server is running or cannot start.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		s.t.Fatal("redistest: Restart of a server that is running; call Stop first")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// start runs redis-server on s.Addr and waits for PING to answer.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	plainPort := port
	if s.opts.TLS {
		plainPort = "0"
	}
	args := []string{
		"--bind", "127.0.0.1",
		"--port", plainPort,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.Dir,
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.opts.TLS {
		args = append(args, "--tls-port", port,
			"--tls-cert-file", s.certFile, "--tls-key-file", s.keyFile,
			"--tls-auth-clients", "no")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()

	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			return fmt.Errorf("redis-server on %s exited during start-up: %s", s.Addr, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server on %s did not answer PING within %v (%v): %s", s.Addr, readyTimeout, err, s.logTail())
		}
	}
}

// ping sends one inline PING (after AUTH when a password is set) and
// expects +PONG.
func (s *Server) ping() error {
	c, err := s.Dial()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if s.opts.Password != "" {
		fmt.Fprintf(c, "AUTH %s\r\n", s.opts.Password)
		if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Dial opens a raw connection to the server (over TLS when Options.TLS),
// e.g. for a test to send commands by hand.
func (s *Server) Dial() (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	if s.opts.TLS {
		return tls.DialWithDialer(&d, "tcp", s.Addr, s.clientTLS)
	}
	return d.Dial("tcp", s.Addr)
}

// Stop ends the server (SIGTERM, SIGKILL after stopTimeout) and waits for
// it to exit, so that its port is free and clients see it gone. A paused
// server is resumed first so that it can take the signal. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	proc.Signal(syscall.SIGCONT)
	proc.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		proc.Kill()
		<-exited
	}
}

// Pause stops the process with SIGSTOP: connections stay open and
// commands go unanswered, as with a hung or partitioned store. Resume
// undoes it; Stop also works on a paused server.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	if proc == nil {
		s.t.Fatalf("redistest: %v to a server that is not running", sig)
	}
	if err := proc.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// logTail returns the last lines of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
