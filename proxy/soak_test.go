package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/proxy/config"
)

// The soak test: many concurrent POP3 sessions doing mixed commands
// through popbridge against Dovecot for a fixed time. Afterwards: no
// protocol error, every retrieved message checksum-correct, goroutines and
// open files back at their starting level, and the heap flat.
//
// By default it runs briefly (CI); POPBRIDGE_SOAK=10m runs it for that
// long and POPBRIDGE_SOAK_SESSIONS sets the number of concurrent sessions.
// docs/reliability.md reports a long run.
const (
	defaultSoakDuration = 4 * time.Second
	defaultSoakSessions = 200
	// Sessions per user: several sessions of one user run at once and
	// delete mail under each other, as devices do.
	soakSessionsPerUser = 10
	// Each user's mailbox is topped up to this many messages.
	soakMailbox = 20
	// soakAnswerTimeout bounds each answer: above the upstream login
	// window (dial plus two commands).
	soakAnswerTimeout = 4 * time.Minute
)

func soakSettings(t *testing.T) (time.Duration, int) {
	d, n := defaultSoakDuration, defaultSoakSessions
	if v := os.Getenv("POPBRIDGE_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("POPBRIDGE_SOAK=%q: want a duration such as 10m", v)
		}
	}
	if v := os.Getenv("POPBRIDGE_SOAK_SESSIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("POPBRIDGE_SOAK_SESSIONS=%q: want a positive number", v)
		}
	}
	return d, n
}

// soakStats counts what the workers did; errors lists the first few
// protocol errors.
type soakStats struct {
	sessions, quits, drops, commands atomic.Int64
	retrs, tops, deles, octets       atomic.Int64
	gone                             atomic.Int64 // -ERR for mail another session expunged: expected
	cut                              atomic.Int64 // RETR closed without "." for the same reason: expected
	failures                         atomic.Int64
	mu                               sync.Mutex
	errors                           []string
	logins                           []time.Duration // USER to the answer to PASS
}

func (s *soakStats) login(d time.Duration) {
	s.mu.Lock()
	s.logins = append(s.logins, d)
	s.mu.Unlock()
}

// loginLatency returns the median, 99th percentile and maximum login time.
func (s *soakStats) loginLatency() (p50, p99, top time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.logins) == 0 {
		return 0, 0, 0
	}
	l := slices.Clone(s.logins)
	slices.Sort(l)
	return l[len(l)/2], l[len(l)*99/100], l[len(l)-1]
}

func (s *soakStats) fail(format string, args ...any) {
	s.failures.Add(1)
	s.mu.Lock()
	if len(s.errors) < 20 {
		s.errors = append(s.errors, fmt.Sprintf(format, args...))
	}
	s.mu.Unlock()
}

func TestSoak(t *testing.T) {
	duration, sessions := soakSettings(t)
	users := make(map[string]string)
	nUsers := max(1, sessions/soakSessionsPerUser)
	for i := range nUsers {
		users[fmt.Sprintf("soak%04d", i)] = "pw" + strconv.Itoa(i)
	}
	// Dovecot in its high-performance login mode (a few imap-login
	// processes serve every connection): with one login process per
	// connection, a burst of hundreds of logins on a loaded machine waits
	// seconds for its greeting. One imap process per session, as usual.
	limit := max(1000, sessions+100)
	d := dovecottest.Start(t, dovecottest.Options{Users: users, ExtraConfig: fmt.Sprintf(`
mail_max_userip_connections = %[1]d
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = %[1]d
}
service imap {
  process_limit = %[1]d
  client_limit = 20
}
`, limit)})
	rng := rand.New(rand.NewPCG(1, 2))
	for name := range users {
		for range soakMailbox {
			d.Deliver(t, name, soakMessage(rng))
		}
	}
	// Generous upstream timeouts: the soak checks correctness under load,
	// and on a shared 2-core machine Dovecot alone may take tens of
	// seconds to work through a burst of logins (the login latency is
	// reported below).
	addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
		c.Log.Level = "warn"
		c.Upstream.DialTimeout = time.Minute
		c.Upstream.CommandTimeout = time.Minute
		// Every client comes from 127.0.0.1: the per-address limits
		// (50 connections, 30 logins in flight or failed) would refuse
		// most of the load.
		c.Limits.MaxConnectionsPerIP = config.NoLimit
		c.Limits.AuthFailuresPerIP = intp(0)
	}, logs: discardWarnings{t}}).addr

	// The baseline, once the server's own goroutines run.
	probeSoakSession(t, addr, users)
	runtime.GC()
	runtime.GC()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	fdsBefore := openFDs(t)
	goroutinesBefore := runtime.NumGoroutine()
	ignore := goleak.IgnoreCurrent()

	stats := &soakStats{}
	deadline := time.Now().Add(duration)
	stop := make(chan struct{})
	var topUp sync.WaitGroup
	topUp.Add(1)
	go func() {
		defer topUp.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for name := range users {
				for n := maildirCount(d, name); n < soakMailbox; n++ {
					d.Deliver(t, name, soakMessage(rng))
				}
			}
		}
	}()
	var peakHeap atomic.Uint64
	var workers sync.WaitGroup
	// The sessions start over a ramp, as devices do, not in one burst.
	ramp := min(duration/4, 10*time.Second)
	for i := range sessions {
		workers.Add(1)
		go func() {
			defer workers.Done()
			time.Sleep(ramp * time.Duration(i) / time.Duration(sessions))
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			user := fmt.Sprintf("soak%04d", i%nUsers)
			for time.Now().Before(deadline) {
				soakSession(addr, user, users[user], rng, stats)
			}
		}()
	}
	// Progress, and the heap while under load.
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		tick := time.NewTicker(min(30*time.Second, duration/2+time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peakHeap.Load() {
					peakHeap.Store(ms.HeapAlloc)
				}
				t.Logf("soak: %d sessions, %d commands, %d RETR, heap %.1f MiB, %d goroutines",
					stats.sessions.Load(), stats.commands.Load(), stats.retrs.Load(),
					float64(ms.HeapAlloc)/(1<<20), runtime.NumGoroutine())
			}
		}
	}()
	workers.Wait()
	close(stop)
	topUp.Wait()
	<-progressDone

	// Every session has ended on the client side; popbridge's side
	// follows within moments.
	for end := time.Now().Add(30 * time.Second); runtime.NumGoroutine() > goroutinesBefore && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
	waitFDs(t, fdsBefore)
	runtime.GC()
	runtime.GC()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)

	t.Logf("soak: %v, %d concurrent sessions (%d users): %d sessions (%d QUIT, %d dropped), %d commands, %d RETR, %d TOP, %d DELE, %.1f MiB retrieved, %d answers for mail another session had removed, %d RETR cut (no final \".\") for the same reason, %d failures",
		duration, sessions, nUsers, stats.sessions.Load(), stats.quits.Load(), stats.drops.Load(), stats.commands.Load(),
		stats.retrs.Load(), stats.tops.Load(), stats.deles.Load(), float64(stats.octets.Load())/(1<<20), stats.gone.Load(), stats.cut.Load(), stats.failures.Load())
	t.Logf("soak: heap after GC %.1f MiB at start, %.1f MiB at the end (peak seen under load %.1f MiB); goroutines %d at start, %d at the end; open files %d at start, %d at the end",
		float64(start.HeapAlloc)/(1<<20), float64(end.HeapAlloc)/(1<<20), float64(peakHeap.Load())/(1<<20),
		goroutinesBefore, runtime.NumGoroutine(), fdsBefore, openFDs(t))
	p50, p99, top := stats.loginLatency()
	t.Logf("soak: login (USER to +OK after PASS) p50 %v, p99 %v, max %v", p50.Round(time.Millisecond), p99.Round(time.Millisecond), top.Round(time.Millisecond))
	for _, e := range stats.errors {
		t.Error(e)
	}
	if stats.retrs.Load() == 0 || stats.quits.Load() == 0 {
		t.Error("the soak did no work")
	}
	if cut := stats.cut.Load(); cut*10 > stats.retrs.Load() {
		t.Errorf("%d of %d RETRs were cut: more than concurrent expunges explain", cut, stats.retrs.Load())
	}
	if grown := int64(end.HeapAlloc) - int64(start.HeapAlloc); grown > 8<<20 {
		t.Errorf("heap grew by %.1f MiB over the soak", float64(grown)/(1<<20))
	}
}

// discardWarnings keeps the soak's logs out of the test output unless the
// test fails: with hundreds of sessions, dropped ones log at info level.
type discardWarnings struct{ t *testing.T }

func (w discardWarnings) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("level=ERROR")) || bytes.Contains(p, []byte("level=WARN")) {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// soakMessage is a message of 1 KiB to 600 KiB (some span several
// fetch chunks) with dot lines, whose X-Soak-Sum header is the SHA-256 of
// its body.
func soakMessage(rng *rand.Rand) []byte {
	size := 1<<10 + rng.IntN(20<<10)
	if rng.IntN(10) == 0 {
		size = 256<<10 + rng.IntN(350<<10)
	}
	var body bytes.Buffer
	for body.Len() < size {
		switch rng.IntN(8) {
		case 0:
			body.WriteString(".\r\n")
		case 1:
			body.WriteString("..leading dots " + strconv.Itoa(rng.IntN(1000)) + "\r\n")
		default:
			n := rng.IntN(90)
			for range n {
				body.WriteByte(byte('!' + rng.IntN(94)))
			}
			body.WriteString("\r\n")
		}
	}
	sum := sha256.Sum256(body.Bytes())
	return append([]byte(fmt.Sprintf("From: soak@example.org\r\nSubject: soak %d\r\nX-Soak-Sum: %s\r\n\r\n",
		rng.Int64(), hex.EncodeToString(sum[:]))), body.Bytes()...)
}

// checkSoakMessage verifies a retrieved message against its checksum.
func checkSoakMessage(msg []byte) error {
	head, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		return fmt.Errorf("no header end in %d octets", len(msg))
	}
	_, rest, ok := bytes.Cut(head, []byte("X-Soak-Sum: "))
	if !ok {
		return fmt.Errorf("no X-Soak-Sum header")
	}
	want, _, _ := bytes.Cut(rest, []byte("\r\n"))
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != string(want) {
		return fmt.Errorf("checksum mismatch in a %d-octet message", len(msg))
	}
	return nil
}

func maildirCount(d *dovecottest.Server, user string) int {
	n := 0
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(d.Dir, "home", user, "Maildir", sub))
		n += len(ents)
	}
	return n
}

func probeSoakSession(t *testing.T, addr string, users map[string]string) {
	for user, pass := range users {
		stats := &soakStats{}
		soakSession(addr, user, pass, rand.New(rand.NewPCG(0, 0)), stats)
		if len(stats.errors) > 0 {
			t.Fatalf("probe session: %v", stats.errors)
		}
		return
	}
}

// soakConn is a POP3 client that reports protocol errors to the stats.
type soakConn struct {
	nc    net.Conn
	br    *bufio.Reader
	stats *soakStats
	user  string
}

// cmd sends a command and returns its status line; ok is false when the
// session cannot go on.
func (c *soakConn) cmd(line string) (string, bool) {
	c.stats.commands.Add(1)
	c.nc.SetDeadline(time.Now().Add(soakAnswerTimeout))
	if _, err := c.nc.Write([]byte(line + "\r\n")); err != nil {
		c.stats.fail("%s: %s: write: %v", c.user, line, err)
		return "", false
	}
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.stats.fail("%s: %s: read: %v", c.user, line, err)
		return "", false
	}
	return strings.TrimSuffix(l, "\r\n"), true
}

// data reads multi-line data and undoes the dot-stuffing.
func (c *soakConn) data(what string) ([]byte, bool) {
	var b bytes.Buffer
	for {
		l, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			b.Write(l)
			continue
		}
		if errors.Is(err, io.EOF) && strings.HasPrefix(what, "RETR ") {
			// popbridge closes the connection without the terminating
			// line when the upstream cannot deliver the whole message:
			// here, when another session of the user expunged it in the
			// middle of the transfer. That is the promised behaviour;
			// what must never happen is a cut message that ends with
			// "." (the checksum catches that).
			c.stats.cut.Add(1)
			return nil, false
		}
		if err != nil {
			c.stats.fail("%s: %s: data: %v", c.user, what, err)
			return nil, false
		}
		if string(l) == ".\r\n" {
			return b.Bytes(), true
		}
		if l[0] == '.' && (b.Len() == 0 || bytes.HasSuffix(b.Bytes(), []byte("\n"))) {
			l = l[1:]
		}
		b.Write(l)
	}
}

// expectOK checks a status line; an -ERR for a message that another
// session of the same user removed is expected, any other is a failure.
func (c *soakConn) expectOK(line, resp string) (ok, gone bool) {
	if strings.HasPrefix(resp, "+OK") {
		return true, false
	}
	if strings.Contains(resp, "removed by another client") {
		c.stats.gone.Add(1)
		return false, true
	}
	c.stats.fail("%s: %s: %q", c.user, line, resp)
	return false, false
}

// multi sends a command and reads its multi-line answer. gone: the
// message was removed by another session; !ok: this session is over.
func (c *soakConn) multi(line string) (data []byte, gone, ok bool) {
	resp, ok := c.cmd(line)
	if !ok {
		return nil, false, false
	}
	if ok, gone := c.expectOK(line, resp); !ok {
		return nil, gone, false
	}
	data, ok = c.data(line)
	return data, false, ok
}

// soakSession runs one session of mixed commands.
func soakSession(addr, user, pass string, rng *rand.Rand, stats *soakStats) {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		stats.fail("%s: dial: %v", user, err)
		return
	}
	defer nc.Close()
	stats.sessions.Add(1)
	c := &soakConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), stats: stats, user: user}
	nc.SetDeadline(time.Now().Add(soakAnswerTimeout))
	if g, err := c.br.ReadString('\n'); err != nil || !strings.HasPrefix(g, "+OK") {
		stats.fail("%s: greeting %q %v", user, g, err)
		return
	}
	loginStart := time.Now()
	for _, line := range []string{"USER " + user, "PASS " + pass} {
		resp, ok := c.cmd(line)
		if !ok {
			return
		}
		if ok, _ := c.expectOK(strings.Fields(line)[0], resp); !ok {
			return
		}
	}
	stats.login(time.Since(loginStart))
	resp, ok := c.cmd("LIST")
	if !ok {
		return
	}
	if ok, _ := c.expectOK("LIST", resp); !ok {
		return
	}
	list, ok := c.data("LIST")
	if !ok {
		return
	}
	sizes := map[int]int{}
	var nums []int
	for _, l := range strings.Split(strings.TrimSpace(string(list)), "\r\n") {
		var n, size int
		if _, err := fmt.Sscanf(l, "%d %d", &n, &size); err == nil {
			sizes[n] = size
			nums = append(nums, n)
		}
	}
	pause := func() { time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond) }
	steps := 3 + rng.IntN(6)
	for range steps {
		pause()
		if len(nums) == 0 {
			break
		}
		n := nums[rng.IntN(len(nums))]
		switch k := rng.IntN(10); {
		case k < 6: // RETR (k < 4) or TOP: both answer multi-line
			retr := k < 4
			line := "RETR " + strconv.Itoa(n)
			if !retr {
				line = "TOP " + strconv.Itoa(n) + " " + strconv.Itoa(rng.IntN(5))
			}
			data, gone, ok := c.multi(line)
			if gone {
				continue
			}
			if !ok {
				return
			}
			if !retr {
				stats.tops.Add(1)
				if !bytes.Contains(data, []byte("X-Soak-Sum: ")) {
					stats.fail("%s: %s: no header in %q", user, line, data)
				}
				continue
			}
			stats.retrs.Add(1)
			stats.octets.Add(int64(len(data)))
			if err := checkSoakMessage(data); err != nil {
				stats.fail("%s: %s: %v", user, line, err)
			}
			if len(data) != sizes[n] {
				stats.fail("%s: %s: %d octets, LIST said %d", user, line, len(data), sizes[n])
			}
		case k < 8: // DELE
			line := "DELE " + strconv.Itoa(n)
			resp, ok := c.cmd(line)
			if !ok {
				return
			}
			if ok, gone := c.expectOK(line, resp); ok {
				stats.deles.Add(1)
			} else if !gone {
				return
			}
			for i, m := range nums {
				if m == n {
					nums = append(nums[:i], nums[i+1:]...)
					break
				}
			}
		case k < 9:
			for _, line := range []string{"STAT", "NOOP"} {
				resp, ok := c.cmd(line)
				if !ok {
					return
				}
				if ok, _ := c.expectOK(line, resp); !ok {
					return
				}
			}
		default:
			resp, ok := c.cmd("UIDL")
			if !ok {
				return
			}
			if ok, _ := c.expectOK("UIDL", resp); !ok {
				return
			}
			if _, ok := c.data("UIDL"); !ok {
				return
			}
		}
	}
	if rng.IntN(8) == 0 {
		stats.drops.Add(1)
		return // dropped without QUIT: deletes nothing
	}
	resp, ok = c.cmd("QUIT")
	if !ok {
		return
	}
	if ok, _ := c.expectOK("QUIT", resp); ok {
		stats.quits.Add(1)
	}
}
