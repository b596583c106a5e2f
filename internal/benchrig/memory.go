package benchrig

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/popbench"
)

// Memory is what measureMemory found.
type Memory struct {
	IdleSessions      int     `json:"idle_sessions"`
	IdleRSSBeforeKiB  int64   `json:"idle_rss_before_kib"`
	IdleRSSAfterKiB   int64   `json:"idle_rss_after_kib"`
	IdleKiBPerSession float64 `json:"idle_kib_per_session"`
	HugeSize          int     `json:"huge_size"`
	HugeRSSBeforeKiB  int64   `json:"huge_rss_before_kib"`
	HugePeakKiB       int64   `json:"huge_peak_kib"`
	HugeSeconds       float64 `json:"huge_seconds"`
}

// measureMemory runs two fresh popbridge processes. The first serves
// IdleSessions logged-in sessions that then sit idle, against go-imap's
// in-memory server in this process (Dovecot would need a process per IMAP
// session); its RSS growth per session is the figure. The second streams
// the 100 MiB message from Dovecot; the growth of its peak RSS is the
// figure.
func measureMemory(ctx context.Context, cfg Config, imapAddr string, huge *popbench.Expected, logf func(string, ...any)) (*Memory, error) {
	m := &Memory{HugeSize: cfg.HugeSize}
	if cfg.IdleSessions > 0 {
		// Each session holds two descriptors in popbridge (client and
		// upstream) and two here (client and in-memory server side).
		// Children inherit the limit set here. Without the right to
		// raise the hard limit, the sessions are as many as it allows.
		m.IdleSessions = idleLimit(cfg.IdleSessions, logf)
		up, err := memimap.Listen(memimap.Options{})
		if err != nil {
			return nil, err
		}
		defer up.Close()
		up.AddUser("idle", password)
		for i := range 3 {
			up.Append("idle", "INBOX", message("idle", i, 2048))
		}
		pb, err := startPopbridge(ctx, cfg.Popbridge, up.Addr, filepath.Join(cfg.Dir, "popbridge-idle.log"))
		if err != nil {
			return nil, err
		}
		defer pb.Kill()
		// A few sessions first, so that the baseline includes what every
		// process has once it served anyone (pools, runtime structures).
		warm, err := openIdle(pb.addr, 20)
		closeAll(warm)
		if err != nil {
			return nil, err
		}
		time.Sleep(500 * time.Millisecond)
		if m.IdleRSSBeforeKiB, err = rss(pb.Pid(), "VmRSS"); err != nil {
			return nil, err
		}
		logf("opening %d idle sessions", m.IdleSessions)
		conns, err := openIdle(pb.addr, m.IdleSessions)
		defer closeAll(conns)
		if err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second)
		if m.IdleRSSAfterKiB, err = rss(pb.Pid(), "VmRSS"); err != nil {
			return nil, err
		}
		m.IdleKiBPerSession = float64(m.IdleRSSAfterKiB-m.IdleRSSBeforeKiB) / float64(m.IdleSessions)
		logf("idle: RSS %d KiB -> %d KiB with %d sessions: %.1f KiB each", m.IdleRSSBeforeKiB, m.IdleRSSAfterKiB, m.IdleSessions, m.IdleKiBPerSession)
		closeAll(conns)
		conns = nil
		pb.Kill()
	}

	pb, err := startPopbridge(ctx, cfg.Popbridge, imapAddr, filepath.Join(cfg.Dir, "popbridge-huge.log"))
	if err != nil {
		return nil, err
	}
	defer pb.Kill()
	opts := popbench.Options{Addr: pb.addr, Users: []popbench.Credentials{{User: "huge", Pass: password}}, Mode: popbench.ModeStat, Timeout: 5 * time.Minute}
	if _, err := popbench.Run(ctx, opts); err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond)
	if m.HugeRSSBeforeKiB, err = rss(pb.Pid(), "VmRSS"); err != nil {
		return nil, err
	}
	opts.Mode, opts.Expect = popbench.ModeRetrAll, huge
	rep, err := popbench.Run(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := rep.Err(); err != nil {
		return nil, fmt.Errorf("RETR of the huge message: %w", err)
	}
	m.HugeSeconds = rep.Seconds
	if m.HugePeakKiB, err = rss(pb.Pid(), "VmHWM"); err != nil {
		return nil, err
	}
	logf("%d MiB RETR: RSS %d KiB before, peak %d KiB", m.HugeSize>>20, m.HugeRSSBeforeKiB, m.HugePeakKiB)
	return m, nil
}

// openIdle opens n logged-in sessions (USER, PASS and STAT answered) and
// leaves them open.
func openIdle(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := openOne(addr)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("idle session %d: %w", i, err)
				}
				conns[i] = c
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return conns, firstErr
}

func openOne(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReaderSize(c, 512)
	if _, err := c.Write([]byte("USER idle\r\nPASS " + password + "\r\nSTAT\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	for range 4 { // greeting, USER, PASS, STAT
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+OK") {
			c.Close()
			return nil, fmt.Errorf("%q %v", line, err)
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// idleLimit raises the descriptor limit for n idle sessions, or returns
// how many fit under the hard limit when it cannot be raised.
func idleLimit(n int, logf func(string, ...any)) int {
	const spare = 300 // listeners, Dovecot's log pipes, popbench's own
	want := uint64(2*n + spare)
	lim := syscall.Rlimit{Cur: want, Max: want}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err == nil && cur.Max >= want {
		lim.Max = cur.Max
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		return n
	}
	cur.Cur = cur.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &cur)
	fit := int(cur.Max-spare) / 2
	logf("the descriptor limit is %d and cannot be raised here: %d idle sessions instead of %d", cur.Max, fit, n)
	return min(n, fit)
}
