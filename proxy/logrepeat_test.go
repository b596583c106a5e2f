package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRepeatedLoginErrorsAreWarnedOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	h := newRepeatLimiter(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), time.Minute)
	now := time.Unix(1e9, 0)
	h.state.now = func() time.Time { return now }
	log := slog.New(h).With("session", "s1") // a derived logger shares the state
	perm := "[SYS/PERM] Upstream authorisation missing or revoked"
	log.Warn("login error", "user", "scanner", "err", perm)
	log.Warn("login error", "user", "scanner", "err", perm)
	log.Warn("login error", "user", "printer", "err", perm)           // another user
	log.Warn("login error", "user", "scanner", "err", "[SYS/TEMP] x") // another error
	log.Warn("something else", "user", "scanner", "err", perm)        // other lines pass
	log.Warn("something else", "user", "scanner", "err", perm)
	now = now.Add(time.Minute)
	log.Warn("login error", "user", "scanner", "err", perm)

	var got []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		lvl, _, _ := strings.Cut(strings.TrimPrefix(l[strings.Index(l, "level="):], "level="), " ")
		msg := l[strings.Index(l, "msg="):strings.Index(l, " session=")]
		got = append(got, lvl+" "+msg)
	}
	want := []string{`WARN msg="login error"`, `DEBUG msg="login error"`, `WARN msg="login error"`, `WARN msg="login error"`,
		`WARN msg="something else"`, `WARN msg="something else"`, `WARN msg="login error"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("levels:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Above WARN only, the repeats vanish instead of being written.
	buf.Reset()
	quiet := newRepeatLimiter(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}), time.Minute)
	for range 3 {
		slog.New(quiet).Warn("login error", "user", "scanner", "err", perm)
	}
	if n := strings.Count(buf.String(), "login error"); n != 1 {
		t.Errorf("at level warn: %d lines, want 1:\n%s", n, buf.String())
	}
}
