package proxy

// Message sizes as LIST and STAT give them. By default they are the
// upstream's RFC822.SIZE, which for a message stored with CRLF line ends
// equals the octets RETR sends; some servers report estimates instead
// (Exchange has been seen to). Every complete RETR whose octets differ
// from the listed size is logged and counted. With upstream.exact_sizes,
// sizes are counted once per message instead: a message not counted
// before is read through (BODY.PEEK[], so no \Seen) at login, and its
// count kept in a per-process table for the next sessions. Counting runs
// in the session's goroutine, within half of what is left of the login's
// time: the messages it had no time for keep RFC822.SIZE this session
// and are counted at a later login.

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

// SizeObserver counts transfers whose octets differ from the listed
// size, for metrics. It must return quickly.
type SizeObserver interface {
	SizeMismatch()
}

// maxCountedSizes bounds the table of counted sizes; past it the table
// starts again empty (the counts are only a cache of what RETR would
// read).
const maxCountedSizes = 1_000_000

// countedSizes holds the octets of messages counted so far, by upstream,
// user and UIDL (unique and stable across sessions: RFC 1939 7).
type countedSizes struct {
	mu sync.Mutex
	m  map[string]int64
}

func sizeKey(upstream, user, uidl string) string {
	return upstream + "\x00" + strings.ToLower(user) + "\x00" + uidl
}

func (c *countedSizes) get(key string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[key]
	return n, ok
}

func (c *countedSizes) put(key string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCountedSizes {
		c.m = make(map[string]int64)
	}
	c.m[key] = n
}

// exactSizes sets infos' sizes to the counted octets of each message,
// counting those not in the table yet. key names message i in the table.
func (c *countedSizes) exactSizes(ctx context.Context, log *slog.Logger, s imapback.Maildrop, infos []pop3front.MessageInfo, key func(i int) string) {
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	left := 0
	for i := range infos {
		if n, ok := c.get(key(i)); ok {
			infos[i].Size = n
			continue
		}
		if ctx.Err() != nil {
			left++
			continue
		}
		rc, err := s.Retrieve(ctx, i, -1)
		if err != nil {
			left++
			continue
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			left++
			continue
		}
		c.put(key(i), n)
		infos[i].Size = n
	}
	if left > 0 {
		log.Info("exact sizes: some messages not counted yet, listed with the upstream's RFC822.SIZE", "messages", left)
	}
}

// sizeCheck counts the octets of one RETR and, at its end, reports a
// count that differs from the listed size.
type sizeCheck struct {
	io.ReadCloser
	listed, got int64
	report      func(listed, got int64)
}

// checkSize wraps rc in a sizeCheck, keeping rc's io.WriterTo: pop3front
// writes a message straight from the backend's buffers through it.
func checkSize(rc io.ReadCloser, listed int64, report func(listed, got int64)) io.ReadCloser {
	c := &sizeCheck{ReadCloser: rc, listed: listed, report: report}
	if _, ok := rc.(io.WriterTo); ok {
		return sizeCheckWriterTo{c}
	}
	return c
}

func (r *sizeCheck) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.got += int64(n)
	if err == io.EOF {
		r.ended()
	}
	return n, err
}

// ended reports a mismatch once, at the end of a whole transfer.
func (r *sizeCheck) ended() {
	if r.report != nil && r.got != r.listed {
		r.report(r.listed, r.got)
	}
	r.report = nil
}

type sizeCheckWriterTo struct{ *sizeCheck }

// WriteTo is the wrapped reader's; a nil error means the whole message
// went out.
func (r sizeCheckWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := r.ReadCloser.(io.WriterTo).WriteTo(w)
	r.got += n
	if err == nil {
		r.ended()
	}
	return n, err
}

// exactSizeUpstreams names the upstreams configured with exact_sizes.
func exactSizeUpstreams(cfg *config.Config) map[string]bool {
	m := map[string]bool{config.DefaultUpstreamName: cfg.Upstream.ExactSizes}
	for name, u := range cfg.Upstreams {
		m[name] = u.ExactSizes
	}
	return m
}
