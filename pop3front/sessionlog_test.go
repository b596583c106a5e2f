package pop3front

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A session's lines read as those of a logger made with With: the
// session id and the client's address first, then the line's own
// attributes, also under a later With or WithGroup.
func TestSessionLoggerLines(t *testing.T) {
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var got, want bytes.Buffer
	base := slog.New(slog.NewTextHandler(&got, opts))
	ref := slog.New(slog.NewTextHandler(&want, opts)).With("session", "s-1", "remote", "192.0.2.1:110")
	log := sessionLogger(base, "s-1", "192.0.2.1:110")
	for _, l := range []*slog.Logger{log, ref} {
		l.Info("login", "user", "alice")
		l.With("user", "bob").Warn("login error", "err", "down")
		l.WithGroup("g").Info("x", "k", 1)
		l.Debug("not logged")
	}
	if got.String() != want.String() {
		t.Errorf("session logger wrote\n%s\nwant\n%s", got.String(), want.String())
	}
	if !strings.Contains(got.String(), `level=INFO msg=login session=s-1 remote=192.0.2.1:110 user=alice`) {
		t.Errorf("unexpected line order:\n%s", got.String())
	}
}
