package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// command sends one inline command on a fresh connection and returns the
// first line of the reply.
func command(t *testing.T, s *Server, cmds ...string) string {
	t.Helper()
	c, err := s.Dial()
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	var line string
	for _, cmd := range cmds {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if line, err = r.ReadString('\n'); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	return strings.TrimSpace(line)
}

func TestStopRestart(t *testing.T) {
	s := Start(t, Options{})
	if got := command(t, s, "SET k v", "GET k"); got != "$1" {
		t.Fatalf("GET after SET: %q, want a bulk reply of one byte", got)
	}
	s.mu.Lock()
	pid := s.proc.Pid
	s.mu.Unlock()

	s.Stop()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d after Stop: %v, want it gone", pid, err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts connections after Stop")
	}
	s.Stop() // a second Stop does nothing

	s.Restart()
	if got := command(t, s, "GET k"); got != "$-1" {
		t.Fatalf("GET after restart: %q, want nil: nothing may be persisted", got)
	}
	if _, err := os.Stat(s.Dir + "/dump.rdb"); !os.IsNotExist(err) {
		t.Fatalf("dump.rdb: %v, want no file", err)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t, Options{})
	c, err := s.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Pause()
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	fmt.Fprintf(c, "PING\r\n")
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("a paused server answered %q", line)
	}
	s.Resume()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("after Resume: %q %v, want the PING answered", line, err)
	}
	s.Pause()
	s.Stop() // must not hang on a paused server
}

func TestPassword(t *testing.T) {
	s := Start(t, Options{Password: "sesame"})
	if got := command(t, s, "GET k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("GET without AUTH: %q, want -NOAUTH", got)
	}
	if got := command(t, s, "AUTH sesame", "PING"); got != "+PONG" {
		t.Fatalf("PING after AUTH: %q", got)
	}
}

func TestTLS(t *testing.T) {
	s := Start(t, Options{TLS: true})
	if s.CAFile == "" {
		t.Fatal("no CAFile")
	}
	if got := command(t, s, "PING"); got != "+PONG" {
		t.Fatalf("PING over TLS: %q", got)
	}
	// The port speaks TLS only: a plaintext PING gets no PONG.
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "PING\r\n")
	if line, _ := bufio.NewReader(c).ReadString('\n'); line == "+PONG\r\n" {
		t.Fatal("the TLS port answered a plaintext PING")
	}
}
