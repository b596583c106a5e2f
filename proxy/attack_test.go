package proxy

// The attacks of docs/security.md's "Attacks and their tests", from the
// client side and from a hostile upstream, each against the bound or
// default that stops it. The shared-store variants (several replicas on
// one Redis) are in attack_shared_test.go.

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/hostileimap"
	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// upstreamLogins counts the logins that reach an upstream through a
// relay: LOGIN and AUTHENTICATE commands, whichever imapback uses.
type upstreamLogins struct {
	Addr                string // the relay's address, for upstream.address
	login, authenticate *faultrelay.Counter
}

func countLogins(t *testing.T, upstreamAddr string) *upstreamLogins {
	r := faultrelay.New(t, upstreamAddr)
	return &upstreamLogins{Addr: r.Addr, login: r.Count(faultrelay.Up, " LOGIN "),
		authenticate: r.Count(faultrelay.Up, " AUTHENTICATE ")}
}

func (u *upstreamLogins) n() int64 { return u.login.Load() + u.authenticate.Load() }

// guessBurst opens n connections, spread over the proxies at addrs, from
// the local address src; each sends USER users(i), and once all have
// been answered, every PASS guess goes out at once. It returns the
// answers to PASS.
func guessBurst(t *testing.T, addrs []string, src string, n int, users func(i int) string) []string {
	t.Helper()
	clients := make([]*pop3test.Client, n)
	for i := range clients {
		clients[i] = pop3test.DialFrom(t, src, addrs[i%len(addrs)])
		clients[i].OK("USER " + users(i))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c.Conn.Write([]byte(fmt.Sprintf("PASS guess%d\r\n", i)))
		}()
	}
	close(start)
	wg.Wait()
	answers := make([]string, n)
	for i, c := range clients {
		answers[i] = c.Line()
		c.Conn.Close()
	}
	return answers
}

// tally counts the answers by kind: wrong password, over a limit, other.
func tally(t *testing.T, answers []string) (auth, limited int) {
	t.Helper()
	for _, a := range answers {
		switch {
		case strings.HasPrefix(a, "-ERR [AUTH]"):
			auth++
		case a == rateLimitedAnswer:
			limited++
		default:
			t.Errorf("unexpected answer to a guess: %q", a)
		}
	}
	return auth, limited
}

// limitedConfig sets the limits (10 failures per user, 30 per
// address) and lets one address open as many connections as the attack
// needs.
func limitedConfig(window time.Duration) func(*config.Config) {
	return func(c *config.Config) {
		c.Limits.AuthFailuresPerUser = intp(10)
		c.Limits.AuthFailuresPerIP = intp(30)
		c.Limits.AuthFailureWindow = window
		c.Limits.MaxConnectionsPerIP = config.NoLimit
	}
}

// Issue 15, 1: 100 logins that all send their password at once get at
// most the user's 10 guesses upstream; before the fix, all 100 did.
func TestParallelGuessesStayWithinTheUserLimit(t *testing.T) {
	up := memUpstream(t)
	up.AddUser("victim", "right")
	logins := countLogins(t, up.Addr)
	addr := startProxy(t, logins.Addr, proxyOptions{configure: limitedConfig(time.Hour)}).addr

	auth, limited := tally(t, guessBurst(t, []string{addr}, "127.0.0.2", 100, func(int) string { return "victim" }))
	t.Logf("%d guesses reached the upstream, %d answered [AUTH], %d rate-limited", logins.n(), auth, limited)
	if got := logins.n(); got > 10 || auth > 10 {
		t.Errorf("%d guesses reached the upstream (%d answered [AUTH]), want at most 10", got, auth)
	}
	if auth+limited != 100 || auth == 0 {
		t.Errorf("%d wrong, %d rate-limited of 100", auth, limited)
	}
}

// Issue 15, 1: three bursts of 200 guesses, a window apart: each window
// gets its 10 guesses, no more.
func TestGuessBurstsGetTheLimitPerWindow(t *testing.T) {
	const window = 3 * time.Second
	up := memUpstream(t)
	up.AddUser("victim", "right")
	logins := countLogins(t, up.Addr)
	addr := startProxy(t, logins.Addr, proxyOptions{configure: limitedConfig(window)}).addr

	var before int64
	for burst := range 3 {
		if burst > 0 {
			time.Sleep(window + 2*time.Second) // the 5 s apart
		}
		// A fresh source address each time: the per-address limit (30)
		// is not what this test is about.
		src := fmt.Sprintf("127.0.0.%d", 10+burst)
		tally(t, guessBurst(t, []string{addr}, src, 200, func(int) string { return "victim" }))
		n := logins.n()
		if n-before > 10 {
			t.Errorf("burst %d: %d guesses reached the upstream, want at most 10", burst, n-before)
		}
		before = n
	}
	if before == 0 {
		t.Error("no guess reached the upstream at all")
	}
}

// Issue 15, 3: with a device separator and no list of known devices,
// victim#a, victim#b, ... and VICTIM share victim's budget: the limit is
// keyed on the upstream user.
func TestDeviceSuffixesShareTheUserLimit(t *testing.T) {
	up := memUpstream(t)
	up.AddUser("victim3", "right")
	logins := countLogins(t, up.Addr)
	addr := startProxy(t, logins.Addr, proxyOptions{configure: func(c *config.Config) {
		limitedConfig(time.Hour)(c)
		c.Policy.Devices.Separator = "#"
	}}).addr

	names := func(i int) string {
		if i%10 == 0 {
			return "VICTIM3"
		}
		return fmt.Sprintf("victim3#d%d", i)
	}
	auth, _ := tally(t, guessBurst(t, []string{addr}, "127.0.0.2", 60, names))
	if got := logins.n(); got > 10 || auth > 10 {
		t.Errorf("%d guesses over device names reached the upstream, want at most 10", got)
	}
}

// Issue 15, 4: one address holding connections past the per-address
// default is refused, and another address still gets in.
func TestOneAddressCannotTakeEveryConnection(t *testing.T) {
	up := memUpstream(t)
	addr := startProxy(t, up.Addr, proxyOptions{}).addr // the defaults
	for i := range config.DefaultMaxConnectionsPerIP {
		if g := greetingFrom(t, "127.0.0.2", addr); !strings.HasPrefix(g, "+OK") {
			t.Fatalf("connection %d from 127.0.0.2: %q", i+1, g)
		}
	}
	if g := greetingFrom(t, "127.0.0.2", addr); g != "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n" {
		t.Errorf("connection past the default from 127.0.0.2: %q", g)
	}
	c := pop3test.DialFrom(t, "127.0.0.3", addr)
	c.Login("alice", "secret")
	c.Quit()
}

// Issue 15, 7: an upstream that announces 50,000,000 messages gets that
// user -ERR [SYS/PERM], without the process reserving memory for them;
// the next login is served as before.
func TestHugeExistsIsRefusedForThatUserOnly(t *testing.T) {
	var huge atomic.Bool
	huge.Store(true)
	count := func() int {
		if huge.Load() {
			return 50_000_000
		}
		return 1
	}
	srv := hostileimap.Start(t, hostileimap.Script{
		Select: func(w *hostileimap.Writer) {
			w.Line("* %d EXISTS", count())
			w.Line("* OK [UIDVALIDITY 1] ok")
		},
		Fetch: func(w *hostileimap.Writer, _ string) { w.Line("* %d FETCH (UID 1 RFC822.SIZE 10)", count()) },
	})
	addr := startProxy(t, srv.Addr, proxyOptions{}).addr
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c := pop3test.Dial(t, addr)
	c.OK("USER alice")
	if got := c.Cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [SYS/PERM]") {
		t.Errorf("login to a maildrop of 50,000,000: %q, want -ERR [SYS/PERM]", got)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("the heap grew by %d MiB for one login", grew>>20)
	}
	huge.Store(false)
	c = pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	if n, _ := c.Stat(); n != 1 {
		t.Errorf("STAT after the refusal = %d, want 1", n)
	}
	c.Quit()
}

// Issue 15, 1 for an OAuth2 account, whose local password popbridge
// checks itself: of 200 parallel guesses, at most the user's 10 are
// checked (each checked wrong password answers [AUTH]); before the fix,
// 170 were.
func TestParallelGuessesAtAnOAuth2LocalPassword(t *testing.T) {
	r := startOAuthRig(t, oauthtest.Options{}, config.GrantCode, limitedConfig(time.Hour))
	r.seed(t)
	auth, limited := tally(t, guessBurst(t, []string{r.addr}, "127.0.0.2", 200, func(int) string { return "scanner" }))
	if auth > 10 || auth == 0 || auth+limited != 200 {
		t.Errorf("%d local passwords checked, %d rate-limited of 200; want 1 to 10 checked", auth, limited)
	}
	if n := r.relay.Accepted(); n != 0 {
		t.Errorf("%d connections to the upstream for wrong local passwords", n)
	}
}

// Issue 15, 5: with the client address forwarded (the default) and
// popbridge in Dovecot's login_trusted_networks, Dovecot's auth penalty
// after one device's wrong passwords falls on that device's address,
// not on popbridge's: another device logs in without waiting. Without
// forwarding, it waits out the penalty too.
func TestDovecotAuthPenaltyFallsOnTheGuessingDevice(t *testing.T) {
	for _, forward := range []bool{true, false} {
		t.Run(fmt.Sprintf("forward=%v", forward), func(t *testing.T) {
			t.Parallel()
			d := dovecottest.Start(t, dovecottest.Options{
				Users:       map[string]string{"alice": "secret"},
				ExtraConfig: "login_trusted_networks = 127.0.0.1/32\n",
			})
			addr := startProxy(t, d.IMAPAddr, proxyOptions{configure: func(c *config.Config) {
				c.Limits.AuthFailuresPerIP, c.Limits.AuthFailuresPerUser = intp(0), intp(0)
				if !forward {
					c.Upstream.ForwardClientAddress = new(bool)
				}
			}}).addr
			for range 2 {
				c := pop3test.DialFrom(t, "127.0.0.2", addr)
				c.OK("USER alice")
				if got := c.Cmd("PASS typo"); !strings.HasPrefix(got, "-ERR [AUTH]") {
					t.Fatalf("wrong password: %q", got)
				}
			}
			start := time.Now()
			c := pop3test.DialFrom(t, "127.0.0.3", addr)
			c.Login("alice", "secret")
			took := time.Since(start)
			c.Quit()
			const penalty = 1500 * time.Millisecond // Dovecot's is 2 s and more here
			if forward && took > penalty {
				t.Errorf("another device's login took %v: the penalty fell on popbridge's address", took)
			}
			if !forward && took < penalty {
				t.Errorf("without forwarding, another device's login took only %v: no penalty to compare with", took)
			}
			hasRIP := func(log string) bool { return strings.Contains(log, "rip=127.0.0.2") }
			if forward && !hasRIP(d.WaitLog(hasRIP)) {
				t.Errorf("Dovecot's log names no rip=127.0.0.2 for the wrong passwords:\n%s", d.Log())
			}
		})
	}
}
