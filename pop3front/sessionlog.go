// sessionlog.go holds the handler of a session's logger, which adds the
// session id and the client's address to each record it handles.

package pop3front

import (
	"context"
	"log/slog"
)

// sessionHandler adds "session" and "remote" to every record before
// next handles it: the lines read as those of next.WithAttrs with the
// two, whose attributes come first too. WithAttrs makes a copy of the
// handler with the attributes' text, some 200 octets that every idle
// session would hold for the few lines it logs; this holds two strings.
type sessionHandler struct {
	next   slog.Handler
	id     string
	remote string
}

// sessionLogger returns base's logger for the session id, from the
// client at remote.
func sessionLogger(base *slog.Logger, id, remote string) *slog.Logger {
	return slog.New(&sessionHandler{next: base.Handler(), id: id, remote: remote})
}

func (h *sessionHandler) attrs() []slog.Attr {
	return []slog.Attr{slog.String("session", h.id), slog.String("remote", h.remote)}
}

func (h *sessionHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *sessionHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.attrs()...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs and WithGroup give up the saving: the session's attributes
// go to next as WithAttrs would have.
func (h *sessionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.next.WithAttrs(h.attrs()).WithAttrs(as)
}

func (h *sessionHandler) WithGroup(name string) slog.Handler {
	return h.next.WithAttrs(h.attrs()).WithGroup(name)
}
