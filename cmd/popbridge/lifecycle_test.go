package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/internal/testkit"
)

// bridge is the popbridge binary running with a config file.
type bridge struct {
	cmd     *exec.Cmd
	config  string
	metrics string // the HTTP address
	stderr  *testkit.LockedBuffer
	exited  chan struct{}
	err     error // of Wait, once exited is closed
}

// bridgeConfig is a config for the upstream at imapAddr listening on pop3.
func bridgeConfig(imapAddr, pop3, metrics, extra string) string {
	return fmt.Sprintf(`listen:
  - address: %q
upstream:
  address: %q
  tls: none
limits:
  auth_failure_delay: 0s
  drain_timeout: 20s
metrics:
  listen: %q
  probe_interval: 100ms
log:
  level: debug
%s`, pop3, imapAddr, metrics, extra)
}

// startBridge runs the binary with config and waits until /readyz
// answers 200.
func startBridge(t *testing.T, config, metrics string) *bridge {
	t.Helper()
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &bridge{config: path, metrics: metrics, stderr: &testkit.LockedBuffer{}, exited: make(chan struct{})}
	b.cmd = exec.Command(binary, "-config", path)
	b.cmd.Stderr = b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.exited
		if t.Failed() {
			t.Logf("popbridge stderr:\n%s", b.stderr.String())
		}
	})
	b.waitHTTP(t, "/readyz", 200)
	return b
}

// get fetches a path of the metrics listener; code 0 means no answer.
func (b *bridge) get(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + b.metrics + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *bridge) waitHTTP(t *testing.T, path string, code int) {
	t.Helper()
	var got int
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, body = b.get(path); got == code {
			return
		}
		select {
		case <-b.exited:
			t.Fatalf("popbridge exited (%v) while waiting for %s %d", b.err, path, code)
		default:
		}
	}
	t.Fatalf("%s = %d %q, want %d", path, got, body, code)
}

func (b *bridge) waitLog(t *testing.T, re string) {
	t.Helper()
	r := regexp.MustCompile(re)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r.MatchString(b.stderr.String()) {
			return
		}
	}
	t.Fatalf("no log line matches %s", re)
}

func (b *bridge) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the process to exit and returns its exit code.
func (b *bridge) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-b.exited:
		return b.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("popbridge did not exit within %v", within)
		return -1
	}
}

func refused(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	nc.Close()
	return false
}

func startDovecot(t *testing.T) *dovecottest.Server {
	t.Helper()
	if !dovecottest.Available() {
		testkit.Unavailable(t, "dovecot is not installed")
	}
	return dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}})
}

func lifecycleMessage(n int, body string) []byte {
	return []byte(fmt.Sprintf("From: a@example.org\r\nTo: alice@example.org\r\nSubject: %d\r\nMessage-ID: <lc%d@example.org>\r\n\r\n%s", n, n, body))
}

// SIGTERM in the middle of a RETR: the process turns not ready and stops
// accepting at once, the transfer completes within the drain window, the
// session quits normally, and then the process exits 0.
func TestSIGTERMLetsARetrInProgressFinish(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	big := lifecycleMessage(1, strings.Repeat("a line of a large message, sent while draining\r\n", 60000))
	d.Deliver(t, "alice", big)
	pop3, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
	b := startBridge(t, bridgeConfig(d.IMAPAddr, pop3, metrics, ""), metrics)

	c := pop3test.Dial(t, pop3)
	c.Login("alice", "secret")
	c.Send("RETR 1")
	status := c.Line()
	if !strings.HasPrefix(status, "+OK") {
		t.Fatalf("RETR 1: %q", status)
	}
	// Read a little, then stop reading: popbridge is now blocked in the
	// middle of the transfer.
	head := make([]byte, 4096)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGTERM)
	b.waitHTTP(t, "/readyz", 503)
	if code, body := b.get("/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d %q, want 200", code, body)
	}
	b.waitLog(t, `msg="shutting down`)
	if !refused(pop3) {
		t.Error("a new connection was accepted while draining")
	}

	// The rest of the message arrives, with the terminating line.
	c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest := bufio.NewReader(io.MultiReader(bytes.NewReader(head), c))
	var got bytes.Buffer
	for {
		line, err := rest.ReadString('\n')
		if err != nil {
			t.Fatalf("transfer cut after %d octets: %v", got.Len(), err)
		}
		if line == ".\r\n" {
			break
		}
		got.WriteString(strings.TrimPrefix(line, "."))
	}
	if !bytes.Equal(got.Bytes(), big) {
		t.Fatalf("got %d octets, want the %d octet message", got.Len(), len(big))
	}
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp := c.Cmd("QUIT"); !strings.HasPrefix(resp, "+OK") {
		t.Errorf("QUIT while draining: %q", resp)
	}
	if code := b.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after a clean drain, want 0", code)
	}
	if !strings.Contains(b.stderr.String(), "drained: all sessions ended") {
		t.Errorf("no clean-drain log line")
	}
}

// A session that DELE'd messages and is still open when the drain
// deadline passes is closed without its UPDATE state: nothing is deleted
// or even flagged upstream, as an independent IMAP client sees.
func TestDrainDeadlineDeletesNothing(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	for i := 1; i <= 3; i++ {
		d.Deliver(t, "alice", lifecycleMessage(i, "body\r\n"))
	}
	pop3, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
	cfg := strings.Replace(bridgeConfig(d.IMAPAddr, pop3, metrics, ""), "drain_timeout: 20s", "drain_timeout: 1s", 1)
	b := startBridge(t, cfg, metrics)

	c := pop3test.Dial(t, pop3)
	c.Login("alice", "secret")
	c.OK("DELE 1")
	c.OK("DELE 3")
	start := time.Now()
	b.signal(t, syscall.SIGTERM)
	c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d octets from a session that should be cut, want EOF", n)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("session closed %v after SIGTERM, before the 1s drain timeout", took)
	}
	if code := b.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after a drain timeout, want 0", code)
	}
	b.waitLog(t, "drain timeout: closed the remaining sessions without their UPDATE state")

	imapc := d.Dial(t, "alice")
	if _, err := imapc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := imapc.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true, UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages upstream after the cut session, want 3", len(msgs))
	}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if f == imap.FlagDeleted {
				t.Errorf("message UID %d is flagged \\Deleted", m.UID)
			}
		}
	}
}

// SIGHUP with a moved listener rebinds it while an open session goes on;
// SIGHUP with a broken config is logged and changes nothing; both are
// counted in the metrics.
func TestSIGHUPReloadsListenersAndRejectsABrokenConfig(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	d.Deliver(t, "alice", lifecycleMessage(1, "body\r\n"))
	oldAddr, newAddr, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	b := startBridge(t, bridgeConfig(d.IMAPAddr, oldAddr, metrics, ""), metrics)

	old := pop3test.Dial(t, oldAddr)
	old.Login("alice", "secret")

	if err := os.WriteFile(b.config, []byte(bridgeConfig(d.IMAPAddr, newAddr, metrics, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	b.waitLog(t, `msg="configuration reloaded"`)
	if !refused(oldAddr) {
		t.Error("the old listen address still accepts after the reload")
	}
	c := pop3test.Dial(t, newAddr)
	c.Login("alice", "secret")
	c.Quit()
	// The session from before the reload goes on.
	if n, _ := old.Stat(); n != 1 {
		t.Errorf("old session: STAT = %d messages, want 1", n)
	}
	old.Multi("RETR 1")
	if resp := old.Quit(); !strings.HasPrefix(resp, "+OK") {
		t.Errorf("old session QUIT: %q", resp)
	}

	if err := os.WriteFile(b.config, []byte("upstream:\n  adress: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	b.waitLog(t, `level=ERROR msg="configuration reload failed, keeping the running configuration" err=.*upstream\.adress \(line 2\): unknown key; did you mean address\?`)
	pop3test.Dial(t, newAddr).Quit()
	b.waitHTTP(t, "/readyz", 200)
	_, body := b.get("/metrics")
	for _, want := range []string{`popbridge_config_reloads_total{result="ok"} 1`, `popbridge_config_reloads_total{result="error"} 1`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	b.signal(t, syscall.SIGTERM)
	if code := b.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// servedSerial connects with implicit TLS and returns the serial number of
// the certificate popbridge presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tc, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "pop.example.org"})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if greeting, err := bufio.NewReader(tc).ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "+OK") {
		t.Fatalf("greeting over TLS: %q, %v", greeting, err)
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// SIGHUP re-reads the certificates; a key that does not load is rejected
// with the rest of the reload and the running certificate stays.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	dir := t.TempDir()
	testkit.WriteSelfSigned(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), 1)
	pop3s, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
	cfg := strings.Replace(bridgeConfig(d.IMAPAddr, pop3s, metrics, ""), fmt.Sprintf("  - address: %q\n", pop3s),
		fmt.Sprintf("  - address: %q\n    tls: implicit\n    cert_file: %s/tls.crt\n    key_file: %s/tls.key\n", pop3s, dir, dir), 1)
	b := startBridge(t, cfg, metrics)
	if got := servedSerial(t, pop3s); got != 1 {
		t.Fatalf("serving certificate %d, want 1", got)
	}

	testkit.WriteSelfSigned(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), 2)
	b.signal(t, syscall.SIGHUP)
	b.waitLog(t, `msg="configuration reloaded"`)
	if got := servedSerial(t, pop3s); got != 2 {
		t.Errorf("after SIGHUP serving certificate %d, want 2", got)
	}

	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	b.waitLog(t, `msg="configuration reload failed, keeping the running configuration" err="listen\[0\]\.cert_file/key_file \(line \d+\): tls: failed to find any PEM data`)
	if got := servedSerial(t, pop3s); got != 2 {
		t.Errorf("after a reload with a broken key serving certificate %d, want 2", got)
	}
}
