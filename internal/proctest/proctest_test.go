package proctest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// Stop ends the process and what it forked into the background, as a
// Dovecot master leaves its sessions behind.
func TestStopEndsTheProcessAndItsGroup(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process groups are set up on Linux only")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	p, err := Start(filepath.Join(dir, "out"), "/bin/sh", "-c", `sleep 60 & echo $! > `+pidFile+`; wait`)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for end := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		data, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if child == 0 {
		t.Fatal("the shell did not start its child")
	}
	p.Stop()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	// The child is the shell's, so it may linger as a zombie only until
	// init reaps it; signal 0 fails once it is gone.
	for end := time.Now().Add(5 * time.Second); syscall.Kill(child, 0) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("child %d still runs after Stop", child)
		}
	}
	p.Stop() // a second call does nothing
}

func TestWaitGreetingTellsOurServerFromAnother(t *testing.T) {
	srv, err := testkit.ServeConns(10*time.Second, func(c net.Conn) {
		c.Write([]byte("* OK Waiting for authentication process to respond..\r\n* OK token-1 ready.\r\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p, err := Start(filepath.Join(t.TempDir(), "out"), "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.WaitGreeting(srv.Addr, "* OK ", "token-1", 5*time.Second); err != nil {
		t.Errorf("our greeting: %v", err)
	}
	if err := p.WaitGreeting(srv.Addr, "* OK ", "token-2", 5*time.Second); !errors.Is(err, ErrForeign) {
		t.Errorf("another instance's greeting: %v, want ErrForeign", err)
	}
	p.Kill()
	if err := p.WaitGreeting(srv.Addr, "* OK ", "token-1", 5*time.Second); err == nil {
		t.Error("a greeting was accepted after the process exited")
	}
}
