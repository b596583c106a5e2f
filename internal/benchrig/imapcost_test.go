package benchrig

// What each kind of IMAP command popbridge sends in the mixed profile
// costs Dovecot's imap processes, next to what a POP3 command costs its
// pop3 processes: sessions of 100 commands of one kind on random messages
// of the mixed mailbox, 8 at a time, processor time of the whole Dovecot
// instance (login and auth included) read from /proc, minus that of the
// same sessions without the commands. Every run starts on unread mail, so
// that \Seen changes something (POP3 sets it at QUIT, popbridge with a
// STORE). The machine is shared, so several -count runs say more than one.
//
//	go test -run XXX -bench DovecotCommand -count 3 ./internal/benchrig/

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

const (
	costMessages = 1000
	costCommands = 100 // per session
	costSessions = 32
	costParallel = 8
)

// costCommand writes the commands of one step of a session: the message
// is uid, prev the one of the step before (0 for none).
type costCommand func(uid, prev int) []string

func BenchmarkDovecotCommand(b *testing.B) {
	if !dovecottest.Available() || os.Geteuid() != 0 {
		testkit.Unavailable(b, "the benchmark needs Dovecot and root")
	}
	// Not b.TempDir(): Dovecot's unprivileged processes must reach the
	// users file and the homes, and its parent is private.
	dir, err := os.MkdirTemp("", "dovecot-cost-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	d, err := startDovecot(filepath.Join(dir, "store"), map[string]string{"mixed": password}, "")
	if err != nil {
		b.Fatal(err)
	}
	defer d.proc.Stop()
	for i := range costMessages {
		if err := d.deliver("mixed", message("mixed", i, MixedSize(i))); err != nil {
			b.Fatal(err)
		}
	}
	fetch := func(items string) costCommand {
		return func(uid, _ int) []string { return []string{fmt.Sprintf("UID FETCH %d %s", uid, items)} }
	}
	imap := []struct {
		name string
		cmd  costCommand
	}{
		{"imap/none", nil},
		{"imap/NOOP", func(int, int) []string { return []string{"NOOP"} }},
		{"imap/RETR-FETCH", fetch("(UID BODY.PEEK[]<0.1048576>)")},
		{"imap/TOP-FETCH-small", fetch("(UID BODY.PEEK[]<0.65536>)")},
		{"imap/TOP-FETCH-large", fetch("(UID RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.800>)")},
		// A FETCH with the STORE of the message before it, in one write,
		// as popbridge sends a \Seen after a RETR.
		{"imap/RETR-FETCH+STORE", func(uid, prev int) []string {
			cmds := fetch("(UID BODY.PEEK[]<0.1048576>)")(uid, prev)
			if prev == 0 {
				return cmds
			}
			return append([]string{fmt.Sprintf(`UID STORE %d +FLAGS.SILENT (\Seen)`, prev)}, cmds...)
		}},
	}
	base := 0.0
	for _, c := range imap {
		b.Run(c.name, func(b *testing.B) {
			ms := costRun(b, d, func(rng *rand.Rand) error { return imapCostSession(d.imapAddr, c.cmd, rng) })
			if c.cmd == nil {
				base = ms
				b.ReportMetric(ms, "cpu-ms/session")
				return
			}
			b.ReportMetric((ms-base)/costCommands, "cpu-ms/cmd")
		})
	}
	pop3 := []struct{ name, cmd string }{{"pop3/none", ""}, {"pop3/NOOP", "NOOP"}, {"pop3/RETR", "RETR"}, {"pop3/TOP", "TOP"}}
	for _, c := range pop3 {
		b.Run(c.name, func(b *testing.B) {
			ms := costRun(b, d, func(rng *rand.Rand) error { return pop3CostSession(d.pop3Addr, c.cmd, rng) })
			if c.cmd == "" {
				base = ms
				b.ReportMetric(ms, "cpu-ms/session")
				return
			}
			b.ReportMetric((ms-base)/costCommands, "cpu-ms/cmd")
		})
	}
}

// costRun runs b.N times costSessions sessions and returns the Dovecot
// instance's processor time per session, in ms.
func costRun(b *testing.B, d *dovecot, session func(*rand.Rand) error) float64 {
	var ticks int64
	for n := range b.N {
		// Unread mail, as a client that checks for new mail finds it:
		// then setting \Seen changes something, in IMAP and in POP3.
		if err := imapCostSession(d.imapAddr, func(int, int) []string { return []string{`UID STORE 1:* -FLAGS.SILENT (\Seen)`} }, nil); err != nil {
			b.Fatal(err)
		}
		before := treeTicks(d.proc.Pid())
		jobs := make(chan int)
		errs := make(chan error, costSessions)
		var wg sync.WaitGroup
		for range costParallel {
			wg.Go(func() {
				for s := range jobs {
					errs <- session(rand.New(rand.NewPCG(uint64(n), uint64(s))))
				}
			})
		}
		for s := range costSessions {
			jobs <- s
		}
		close(jobs)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		ticks += treeTicks(d.proc.Pid()) - before
	}
	return float64(ticks) * 1000 / clockTicks / float64(b.N*costSessions)
}

func imapCostSession(addr string, cmd costCommand, rng *rand.Rand) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return err
	}
	tag := 0
	do := func(cmds ...string) error {
		var w strings.Builder
		for _, c := range cmds {
			tag++
			fmt.Fprintf(&w, "T%d %s\r\n", tag, c)
		}
		if _, err := io.WriteString(c, w.String()); err != nil {
			return err
		}
		return readTagged(r, "T"+strconv.Itoa(tag))
	}
	if err := do("LOGIN mixed " + password); err != nil {
		return err
	}
	if err := do("SELECT INBOX", "UID FETCH 1:* (UID RFC822.SIZE)"); err != nil {
		return err
	}
	prev := 0
	for range costCommands {
		if cmd == nil {
			break
		}
		if rng == nil { // once, on no message in particular
			if err := do(cmd(0, 0)...); err != nil {
				return err
			}
			break
		}
		uid := 1 + rng.IntN(costMessages)
		if err := do(cmd(uid, prev)...); err != nil {
			return err
		}
		prev = uid
	}
	return do("LOGOUT")
}

// readTagged reads responses, literals included, up to the tagged
// answer of tag, which must be OK. Earlier tags' answers pass.
func readTagged(r *bufio.Reader, tag string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		for strings.HasSuffix(line, "}\r\n") {
			i := strings.LastIndexByte(line, '{')
			n, err := strconv.Atoi(line[i+1 : len(line)-3])
			if i < 0 || err != nil {
				return fmt.Errorf("bad literal in %q", line)
			}
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return err
			}
			if line, err = r.ReadString('\n'); err != nil {
				return err
			}
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return fmt.Errorf("%s %s", tag, rest)
			}
			return nil
		}
	}
}

func pop3CostSession(addr, cmd string, rng *rand.Rand) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	// one sends a command and reads its answer: multi-line ones up to
	// the terminating ".".
	one := func(line string, multi bool) error {
		if line != "" {
			if _, err := io.WriteString(c, line+"\r\n"); err != nil {
				return err
			}
		}
		first := true
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if first && !strings.HasPrefix(l, "+OK") {
				return fmt.Errorf("%s: %s", line, l)
			}
			if first = false; !multi || l == ".\r\n" {
				return nil
			}
		}
	}
	steps := []struct {
		line  string
		multi bool
	}{{"", false}, {"USER mixed", false}, {"PASS " + password, false}, {"LIST", true}}
	for _, s := range steps {
		if err := one(s.line, s.multi); err != nil {
			return err
		}
	}
	for range costCommands {
		if cmd == "" {
			break
		}
		n := 1 + rng.IntN(costMessages)
		var err error
		switch cmd {
		case "RETR":
			err = one(fmt.Sprintf("RETR %d", n), true)
		case "TOP":
			err = one(fmt.Sprintf("TOP %d 10", n), true)
		default:
			err = one(cmd, false)
		}
		if err != nil {
			return err
		}
	}
	return one("QUIT", false)
}
