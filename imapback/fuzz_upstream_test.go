package imapback

// The upstream fuzzer: FuzzUpstreamSession, what it does with a Session
// and the checks it makes of the outcome and of what the scripted
// upstream (fuzz_fake_test.go) received; fuzz_delivered_test.go checks
// what it sent against what the session delivered, fuzz_snaphead_test.go
// the headers it sent against a %m snapshot's UIDLs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzUpstreamSession drives a real Session against a scripted upstream
// (fuzz_fake_test.go) whose replies come from the fuzz input: login,
// SELECT, the snapshot's UID FETCH 1:* (UID RFC822.SIZE, and the header
// for %m), the identity or header fetch of the UIDL format, RETRs in
// ranges or from a batch, an optional NOOP, QUIT's UID STORE and UID
// EXPUNGE, and LOGOUT. mode chooses the options and what the POP3 side
// does, sizes the model mailbox (one message per octet), script the
// upstream's replies.
//
// Beyond not panicking, every iteration checks that:
//   - a login that succeeds holds at most MaxMessages messages, after a
//     SELECT whose EXISTS was at most that; one whose well-formed answers
//     name more fails with ErrMaildropTooLarge;
//   - a RETR read to its end without error delivered octets the upstream
//     sent as that UID's BODY[] at those offsets, and exactly the model
//     message when the upstream sent nothing else for it;
//   - \Deleted and UID EXPUNGE are sent only by Commit, and only for the
//     UIDs of the deleted messages; never a plain EXPUNGE;
//   - with no scripted reply at all, everything succeeds;
//   - a cold %m snapshot's UIDLs are hashes of headers the upstream sent
//     for their UIDs, or the default format where it sent none;
//   - no goroutine outlives the iteration, and no login allocates more
//     than loginAllocBound;
//   - in the cache mode (fuzz_cache_test.go), a warm snapshot lists
//     ascending UIDs, each named by a SEARCH answer, with a size from
//     the cache or a FETCH answer; with no scripted reply, all of it
//     from the cache.
func FuzzUpstreamSession(f *testing.F) {
	for _, s := range upstreamSeeds {
		f.Add(s.mode, []byte(s.sizes), []byte(s.script))
	}
	f.Fuzz(func(t *testing.T, mode uint32, sizes []byte, script []byte) {
		if len(script) > 16<<10 {
			return
		}
		before := runtime.NumGoroutine()
		// A hang is a finding too: the fuzzing engine keeps the input of
		// a process that died, not of one that stopped.
		watchdog := time.AfterFunc(upstreamIterationBound, func() {
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("iteration still running after %v:\n%s", upstreamIterationBound, buf[:runtime.Stack(buf, true)]))
		})
		runUpstreamSession(t, mode, sizes, script)
		watchdog.Stop()
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left over:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

// upstreamIterationBound is far beyond what the timeouts allow one
// iteration (a login, six transfers, a commit and a close, with five
// reconnects, each bounded by the dial and command timeouts).
const upstreamIterationBound = 12 * time.Second

// Bits of the fuzz target's mode.
const (
	modeUIDL       = 3 << 0 // 0: default, 1: %g, 2: %m, 3: %u.%g
	modeReconnect  = 1 << 2
	modeReverse    = 1 << 3 // RETR from the last message (no batches)
	modeNoAhead    = 1 << 4
	modeTop        = 1 << 5 // TOP (lines 0) for odd message numbers
	modeEarlyClose = 1 << 6 // the first RETR is abandoned after a few octets
	modeFlagOnly   = 1 << 7 // delete policy flag
	modeSeenNever  = 1 << 8
	modeLowExists  = 1 << 9 // SELECT's default EXISTS stops at MaxMessages
	modeNoop       = 1 << 10
	modeHeadFirst  = 1 << 25 // %m: the snapshot's answers name the header first
	modeMaxShift   = 12      // 4 bits: MaxMessages - 1
	modeDeleteMask = 16      // 8 bits: the messages DELE marks
)

const fuzzChunk = 64

var fuzzUIDLFormats = []string{DefaultUIDLFormat, "%g", "%m", "%u.%g"}

// fuzzModel makes one message per octet of sizes (at most 6): distinct
// octets at every offset, UIDs that are not sequence numbers.
func fuzzModel(sizes []byte) []fakeMsg {
	var model []fakeMsg
	for k, b := range sizes[:min(len(sizes), 6)] {
		size := 1 + 2*int(b)
		body := fmt.Appendf(nil, "Subject: m%d\r\nX: y\r\n\r\n", k)
		for j := 0; len(body) < size; j++ {
			body = fmt.Appendf(body, "m%d line %d\r\n", k, j)
		}
		model = append(model, fakeMsg{uid: uint64(3*k + 4), body: body[:size]})
	}
	return model
}

func runUpstreamSession(t *testing.T, mode uint32, sizes []byte, script []byte) {
	model := fuzzModel(sizes)
	maxMsgs := 1 + int(mode>>modeMaxShift&15)
	fake, err := startFake(model, script)
	if err != nil {
		t.Fatal(err)
	}
	defer fake.close()
	if mode&modeLowExists != 0 {
		fake.lowExists = uint64(maxMsgs)
	}
	if mode&modeESearch != 0 {
		fake.caps += " ESEARCH"
	}
	fake.headFirst = mode&modeHeadFirst != 0
	uidl, err := ParseUIDLFormat(fuzzUIDLFormats[mode&modeUIDL])
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		// The scripted answers are those of a snapshot that takes the
		// header hashes at login.
		Address: fake.conn.Addr, TLS: TLSNone, Auth: AuthLogin, UIDL: uidl, UIDLsAtLogin: true,
		DialTimeout: time.Second, CommandTimeout: 300 * time.Millisecond,
		NoReconnect: mode&modeReconnect == 0, MaxMessages: maxMsgs,
		ResponseLimits: ResponseLimits{Literal: 512, Response: 4096},
		ChunkSize:      fuzzChunk, ReadAheadBytes: 4 * fuzzChunk, ReadAheadMessages: 4,
		Logger: slog.New(slog.DiscardHandler),
	}
	if mode&modeNoAhead != 0 {
		opts.ReadAheadBytes = -1
	}
	obs := &outcomes{}
	if mode&modeCache != 0 {
		opts.SnapshotCache, opts.Observer = NewSnapshotCache(1<<20), obs
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	pol := b.DefaultPolicy()
	if mode&modeFlagOnly != 0 {
		pol.Delete = DeleteFlag
	}
	if mode&modeSeenNever != 0 {
		pol.Seen = SeenNever
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Well-formed: every answer a default one, and as many messages
	// announced as there are.
	wellFormed := func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return !fake.custom && (fake.lowExists == 0 || len(model) <= maxMsgs)
	}

	from := 0 // the first connection of the login below
	if mode&modeCache != 0 {
		from = fillCache(ctx, fake, b, pol)
	}
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	alloc := mem.TotalAlloc
	s, err := b.Login(ctx, alice, pol)
	runtime.ReadMemStats(&mem)
	if n := mem.TotalAlloc - alloc; n > loginAllocBound {
		t.Fatalf("the login allocated %d MB", n>>20)
	}
	checkLogin(t, fake, from, s, err, maxMsgs, len(model) > maxMsgs && wellFormed())
	if err == nil && mode&modeCache == 0 && uidl.Needs().HeaderHash {
		fake.mu.Lock()
		sent := append([][]byte(nil), fake.sent[from:]...)
		fake.mu.Unlock()
		checkHeaderHashes(t, s, sent)
	}
	if err == nil && mode&modeCache != 0 {
		checkWarmSnapshot(t, fake, from, obs.last(), s, model)
		if wellFormed() && obs.last() != CacheHit {
			t.Fatalf("well-formed warm login: cache %s, want %s", obs.last(), CacheHit)
		}
	}
	if err != nil {
		if wellFormed() && len(model) <= maxMsgs {
			t.Fatalf("well-formed login failed: %v", err)
		}
		return
	}
	msgs := s.Messages()
	order := make([]int, len(msgs))
	for k := range order {
		order[k] = k
		if mode&modeReverse != 0 {
			order[k] = len(msgs) - 1 - k
		}
	}
	cut := false // a RETR failed mid-message: the POP3 side hangs up
	for n, i := range order {
		lines := -1
		if mode&modeTop != 0 && i%2 == 1 {
			lines = 0
		}
		rc, err := s.Retrieve(ctx, i, lines)
		if err != nil {
			if wellFormed() {
				t.Fatalf("well-formed Retrieve(%d): %v", i, err)
			}
			continue
		}
		if n == 0 && mode&modeEarlyClose != 0 {
			io.CopyN(io.Discard, rc, 10)
			rc.Close()
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			if wellFormed() {
				t.Fatalf("well-formed read of message %d: %v", i, err)
			}
			cut = true
			break
		}
		checkDelivered(t, fake, msgs[i], got, model, lines >= 0)
		if lines < 0 {
			s.Retrieved(i)
		}
	}
	var deleted []int
	for i := range msgs {
		if i < 8 && mode>>(modeDeleteMask+i)&1 != 0 {
			deleted = append(deleted, i)
		}
	}
	beforeCommit := len(fake.commands())
	if !cut {
		if mode&modeNoop != 0 {
			s.Noop(ctx)
		}
		beforeCommit = len(fake.commands())
		removed, _, err := s.Commit(ctx, deleted)
		if wellFormed() && (err != nil || pol.Delete == DeleteExpunge && removed != len(deleted)) {
			t.Fatalf("well-formed Commit(%v): removed %d, %v", deleted, removed, err)
		}
	}
	s.Close()
	checkCommands(t, fake.commands(), beforeCommit, msgs, deleted, cut)
}

var reExists = regexp.MustCompile(`^\* (\d{1,10}) EXISTS\r?$`)

// checkLogin checks a login's outcome against what the fake answered to
// SELECT on the login's first connection, the from-th.
func checkLogin(t *testing.T, fake *fakeUpstream, from int, s *Session, err error, maxMsgs int, tooLarge bool) {
	if tooLarge && !errors.Is(err, ErrMaildropTooLarge) {
		t.Fatalf("login of a maildrop larger than %d: %v, want ErrMaildropTooLarge", maxMsgs, err)
	}
	if err != nil {
		return
	}
	if n := len(s.Messages()); n > maxMsgs {
		t.Fatalf("login served %d messages, MaxMessages %d", n, maxMsgs)
	}
	// The EXISTS lines of SELECT's answer, up to its tagged response.
	fake.mu.Lock()
	out := string(fake.sent[from])
	fake.mu.Unlock()
	tag := ""
	for _, c := range fake.commandsFrom(from) {
		if t, rest, _ := strings.Cut(c, " "); commandKind(t, rest) == "SELECT" {
			tag = t
			break
		}
	}
	var exists uint64
	for _, line := range strings.Split(out, "\n") {
		if tag != "" && strings.HasPrefix(line, tag+" ") {
			break
		}
		if m := reExists.FindStringSubmatch(line); m != nil {
			exists, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	if exists > uint64(maxMsgs) && exists < 1<<32 {
		t.Fatalf("login succeeded after SELECT named %d messages, MaxMessages %d", exists, maxMsgs)
	}
}

// checkCommands checks what the session sent upstream: \Deleted and
// UID EXPUNGE only from Commit (the commands from index commit on) and
// only for deleted messages' UIDs, nothing at all of that kind after a
// transfer was cut off, and never EXPUNGE without UID.
func checkCommands(t *testing.T, cmds []string, commit int, msgs []Message, deleted []int, cut bool) {
	allowed := map[uint64]bool{}
	for _, i := range deleted {
		allowed[uint64(msgs[i].UID)] = true
	}
	for k, c := range cmds {
		_, rest, _ := strings.Cut(c, " ")
		up := strings.ToUpper(rest)
		var set string
		switch {
		case strings.HasPrefix(up, "EXPUNGE") || strings.HasPrefix(up, "CLOSE"):
			t.Fatalf("sent %q", c)
		case strings.HasPrefix(up, "UID EXPUNGE "):
			set = strings.Fields(rest)[2]
		case strings.HasPrefix(up, "UID STORE ") && strings.Contains(up, `\DELETED`):
			set = strings.Fields(rest)[2]
		default:
			continue
		}
		if k < commit || cut {
			t.Fatalf("sent %q outside Commit", c)
		}
		for _, r := range parseUIDRanges(set) {
			if r[1]-r[0] > uint64(len(allowed)) {
				t.Fatalf("sent %q, deleted UIDs %v", c, allowed)
			}
			for u := r[0]; u <= r[1]; u++ {
				if !allowed[u] {
					t.Fatalf("sent %q, deleted UIDs %v", c, allowed)
				}
			}
		}
	}
}
