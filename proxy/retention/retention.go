// Package retention removes, at a QUIT, the messages a device retrieved
// at least N days before ("leave on server for N days"), by adding them to
// the client's own deletes.
//
// When a device retrieved a message is kept as a stamp in the shared
// store (state.Stamper: in process, or Redis for replicas), under the
// maildrop (upstream, user, device, folder) and the message's UIDL, which
// is stable across sessions and views. A stamp is written at QUIT for the
// messages the session sent in full by RETR: a session that ends without
// QUIT may not have reached the client's disk, so its retrievals start no
// clock, just as its deletes change nothing. The first stamp stays.
//
// At the same QUIT the messages of the snapshot stamped at least N days
// before go to Commit with the client's deletes, so the session's policy
// applies to them as to a DELE: the delete policy without a device, the
// device's delete mark in a view (and with delete_when_all_deleted the
// delete policy once every known device has deleted the message, by DELE
// or by its own retention). A store that cannot be asked removes nothing.
package retention

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/state"
)

// Keeper keeps the stamps of every maildrop in one store.
type Keeper struct {
	st state.Stamper
	// failed reports a store error that the session survives, for the
	// log and the store's error metric.
	failed func(feature string, err error)
}

// feature names retention in store error reports.
const feature = "retention"

// New returns a Keeper over st; failed is told of every store error.
func New(st state.Stamper, failed func(feature string, err error)) *Keeper {
	return &Keeper{st: st, failed: failed}
}

// maildrop names the mail a device retrieves: a user's folder on one
// upstream, as one device sees it.
type maildrop struct {
	Upstream, User, Device, Mailbox string
}

// key is the stamps' key. The user is case-folded as IMAP servers
// commonly fold it; the mailbox is "" for the upstream's own, and a
// merged maildrop's folders in their order, joined by NULs.
func (m maildrop) key() string {
	return "retention:" + m.Upstream + "\x00" + strings.ToLower(m.User) + "\x00" + m.Device + "\x00" + m.Mailbox
}

// Wrap returns s, a session of user on upstream with policy pol, with
// pol's retention (Days), or s itself when it has none.
func (k *Keeper) Wrap(s pop3front.Session, upstream, user string, pol imapback.Policy, log *slog.Logger) pop3front.Session {
	days := Days(pol)
	if days <= 0 {
		return s
	}
	m := maildrop{Upstream: upstream, User: user, Device: pol.Device, Mailbox: cmp.Or(pol.Mailbox, strings.Join(pol.Mailboxes, "\x00"))}
	return &Session{Session: s, k: k, key: m.key(), days: days, log: cmp.Or(log, slog.Default())}
}

// Session is a session with retention. Its methods run on the session's
// goroutine, as pop3front calls them.
type Session struct {
	pop3front.Session
	k         *Keeper
	key       string
	days      int
	log       *slog.Logger
	retrieved []int // sent in full by RETR, in order, maybe repeated
}

// Retrieved notes message i for the stamps written at QUIT.
func (s *Session) Retrieved(i int) {
	s.Session.Retrieved(i)
	s.retrieved = append(s.retrieved, i)
}

// Expire states the retention in CAPA (pop3front.ExpireSession).
func (s *Session) Expire() (int, bool) { return s.days, true }

// Device passes on the wrapped session's device, if it has one.
func (s *Session) Device() string {
	if d, ok := s.Session.(pop3front.DeviceSession); ok {
		return d.Device()
	}
	return ""
}

// Commit stamps this session's retrievals, adds the expired messages to
// the client's deletes, commits both, and forgets the stamps of what left
// the maildrop.
func (s *Session) Commit(ctx context.Context, deleted []int) (pop3front.UpdateResult, error) {
	msgs := s.Messages()
	stamps, now, err := s.k.st.Stamp(ctx, s.key, uidls(msgs, s.retrieved), stampTTL(s.days))
	if err != nil {
		s.k.failed(feature, err)
		return s.Session.Commit(ctx, deleted)
	}
	exp := expired(msgs, deleted, s.Expunged, stamps, now, s.days)
	all := append(slices.Clone(deleted), exp...)
	res, err := s.Session.Commit(ctx, all)
	if len(exp) > 0 && err == nil {
		res.Expired = len(exp)
		s.log.Info("messages retrieved at least retention_days ago deleted with the client's", "expired", len(exp),
			"retention_days", s.days, "removed", res.Removed, "flagged", res.Flagged)
	}
	forget := orphans(msgs, stamps, now, s.days)
	if err == nil {
		// Gone from this maildrop: an expunged, moved or device-deleted
		// message is not in the next snapshot.
		forget = append(forget, uidls(msgs, all)...)
	}
	if len(forget) > 0 {
		if err := s.k.st.Unstamp(ctx, s.key, forget); err != nil {
			s.k.failed(feature, err)
		}
	}
	return res, err
}

// uidls returns the UIDLs of the messages idx, each once.
func uidls(msgs []pop3front.MessageInfo, idx []int) []string {
	out := make([]string, 0, len(idx))
	for _, i := range idx {
		out = append(out, msgs[i].UID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
