package imapback

// A maildrop of several folders merged (Merged): one Session per folder,
// each on its own upstream connection, behind one numbering; Open, which
// returns it or a single folder's Session; and the folder list's checks.
// Every Merged method runs on the caller's goroutine, except that Open,
// Noop, Commit and Close run the folders' Sessions in goroutines of their
// own (one each, joined before they return): a Session is used by one
// goroutine at a time, and the folders' Sessions share nothing.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Maildrop is what a login opens: one folder's *Session, or a *Merged of
// several. Message indices are those of Messages.
type Maildrop interface {
	Messages() []Message
	Retrieve(ctx context.Context, i int, lines int) (io.ReadCloser, error)
	Retrieved(i int)
	Expunged(i int) bool
	Noop(ctx context.Context) error
	Commit(ctx context.Context, deleted []int) (removed, flagged int, err error)
	Close() error
	// LoadUIDLs makes the UIDLs that the snapshot left empty, to read
	// the headers they are made of only when needed (lazyuidl.go).
	LoadUIDLs(ctx context.Context) error
}

// MaxMailboxes bounds the folders of a merged maildrop: each costs the
// session one upstream connection, and servers limit those per user and
// client address (Dovecot's mail_max_userip_connections is 10 by default).
const MaxMailboxes = 4

// CheckMailboxes reports what is wrong with a list of folders to merge:
// each a valid mailbox name (ValidMailbox), no two the same (compared
// without case: servers that fold case would serve one folder twice), at
// most MaxMailboxes of them.
func CheckMailboxes(names []string) error {
	if len(names) > MaxMailboxes {
		return fmt.Errorf("%d folders, at most %d can be merged", len(names), MaxMailboxes)
	}
	for i, n := range names {
		if !ValidMailbox(n) {
			return fmt.Errorf("%q is not a mailbox name", n)
		}
		for _, m := range names[:i] {
			if strings.EqualFold(n, m) {
				return fmt.Errorf("%q is listed twice", n)
			}
		}
	}
	return nil
}

// SetFolders makes p serve mailbox, or the folders of mailboxes merged,
// whichever is set; the other is cleared, so that the last setting wins
// whichever kind it is. Neither set leaves p as it was.
func (p *Policy) SetFolders(mailbox string, mailboxes []string) {
	switch {
	case mailbox != "":
		p.Mailbox, p.Mailboxes = mailbox, nil
	case len(mailboxes) > 0:
		p.Mailbox, p.Mailboxes = "", mailboxes
	}
}

// Open logs in and takes the snapshot of the maildrop pol names: one
// folder's Session (as Login), or a Merged when pol.Mailboxes (or, with
// neither Mailbox nor Mailboxes in pol, Options.Mailboxes) lists more
// than one folder.
func (b *Backend) Open(ctx context.Context, cr Credentials, pol Policy) (Maildrop, error) {
	folders := pol.Mailboxes
	if len(folders) == 0 && pol.Mailbox == "" {
		folders = b.opts.Mailboxes
	}
	if err := CheckMailboxes(folders); err != nil {
		return nil, fmt.Errorf("imapback: mailboxes: %w", err)
	}
	pol.Mailboxes = nil
	if len(folders) <= 1 {
		if len(folders) == 1 {
			pol.Mailbox = folders[0]
		}
		s, err := b.Login(ctx, cr, pol)
		if err != nil {
			return nil, err // not a nil *Session in a non-nil Maildrop
		}
		return s, nil
	}
	return b.openMerged(ctx, cr, pol, folders)
}

// Merged is a maildrop of several folders: the messages of the first
// folder in UID order, then those of the second, and so on. The numbers
// are fixed for the session like a Session's. Each folder has its own
// Session with the same policy (device views included), so RETR, \Seen
// and the UPDATE state of a message go to its own folder.
type Merged struct {
	parts []*Session
	names []string  // the folders, parallel to parts
	msgs  []Message // the merged snapshot; UIDs are the folders' own
	at    []place   // where each message of msgs lives
	// lazy: some folder's UIDLs wait for LoadUIDLs, and msgs' are empty.
	lazy bool
}

// place is a message's folder (index into parts) and index there.
type place struct{ part, i int }

// openMerged logs in to the first folder, then to the others at once.
// Not all at once: with a wrong password each login would fail upstream,
// and servers that lock an account after a few failures (or penalise
// the client's address for each, as Dovecot does) would count one POP3
// login as several. Once the first folder is open the password is known
// to be good, and the others cost one more login's time however many
// they are.
func (b *Backend) openMerged(ctx context.Context, cr Credentials, pol Policy, folders []string) (*Merged, error) {
	m := &Merged{parts: make([]*Session, len(folders)), names: folders}
	errs := make([]error, len(folders))
	login := func(k int) {
		p := pol
		p.Mailbox = folders[k]
		m.parts[k], errs[k] = b.Login(ctx, cr, p)
	}
	login(0)
	if errs[0] == nil {
		var wg sync.WaitGroup
		for k := 1; k < len(folders); k++ {
			wg.Add(1)
			go func() { defer wg.Done(); login(k) }()
		}
		wg.Wait()
	}
	// The first error in folder order is the answer: the others are
	// likely the same one, and the order is the config's.
	for k, err := range errs {
		if err != nil {
			m.close()
			return nil, fmt.Errorf("folder %q: %w", folders[k], err)
		}
	}
	total := 0
	for _, s := range m.parts {
		total += len(s.Messages())
	}
	if total > b.opts.MaxMessages {
		m.close()
		return nil, fmt.Errorf("%w: %d messages in %d folders, at most %d", ErrMaildropTooLarge, total, len(folders), b.opts.MaxMessages)
	}
	m.msgs = make([]Message, 0, total)
	m.at = make([]place, 0, total)
	for k, s := range m.parts {
		for i, msg := range s.Messages() {
			m.msgs = append(m.msgs, msg)
			m.at = append(m.at, place{k, i})
		}
	}
	m.lazy = slices.ContainsFunc(m.parts, func(s *Session) bool { return s.lazy != nil })
	if !m.lazy {
		m.mergeUIDLs()
	}
	return m, nil
}

// mergeUIDLs sets the merged snapshot's UIDLs from its folders'.
func (m *Merged) mergeUIDLs() {
	ids := make([][]string, len(m.parts))
	for k, s := range m.parts {
		for _, msg := range s.Messages() {
			ids[k] = append(ids[k], msg.UIDL)
		}
	}
	for i, id := range mergeUIDLs(m.names, ids) {
		m.msgs[i].UIDL = id
	}
}

// LoadUIDLs makes the UIDLs that the folders left for their first need
// (lazyuidl.go), all at once, then the merged ones from them: the
// uniqueness pass needs every folder's.
func (m *Merged) LoadUIDLs(ctx context.Context) error {
	if !m.lazy {
		return nil
	}
	if err := m.each(func(k int, s *Session) error { return s.LoadUIDLs(ctx) }); err != nil {
		return err
	}
	m.mergeUIDLs()
	m.lazy = false
	return nil
}

// mergeUIDLs returns the unique-ids of a merged maildrop, in its order,
// from each folder's own ids (ids[k] for folders[k]). The first folder's
// stay as they are, so that adding a folder to a maildrop makes no
// device download the first one again. Every other folder's get
// folderTag(its name) appended: different folders' ids then differ even
// when their formats give the same string (a message copied into both,
// under %m or %g, or two folders with the same UIDVALIDITY). The tag
// comes from the name, not the position, so reordering the later folders
// changes no id; only the first folder is special. An id too long for
// the tag loses its end to it (RFC 1939 allows 70 characters). Last,
// dedupeUIDLs makes the whole list distinct, in this order, which keeps
// the first folder's ids (already distinct) and covers the ids a tag
// cannot tell apart: imported ones that happen to end like a tag, or two
// names whose tags are equal.
func mergeUIDLs(folders []string, ids [][]string) []string {
	var out []string
	for k, folder := range ids {
		tag := ""
		if k > 0 {
			tag = folderTag(folders[k])
		}
		for _, id := range folder {
			if len(id)+len(tag) > maxUIDLLen {
				id = id[:maxUIDLLen-len(tag)]
			}
			out = append(out, id+tag)
		}
	}
	dedupeUIDLs(out)
	return out
}

// maxUIDLLen is RFC 1939's bound on a unique-id.
const maxUIDLLen = 70

// folderTag names a folder in the unique-ids of its messages: "." and the
// first 8 hex digits of the SHA-256 of its name, INBOX in upper case
// (IMAP compares INBOX without case). A hash, not the name, so that the
// tag is short and printable ASCII whatever the name holds.
func folderTag(name string) string {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	sum := sha256.Sum256([]byte(name))
	return "." + hex.EncodeToString(sum[:4])
}

// Messages returns the merged snapshot: folder by folder, each in UID
// order.
func (m *Merged) Messages() []Message { return m.msgs }

// Retrieve opens message i from its folder.
func (m *Merged) Retrieve(ctx context.Context, i, lines int) (io.ReadCloser, error) {
	p := m.at[i]
	return m.parts[p.part].Retrieve(ctx, p.i, lines)
}

// Retrieved applies the seen policy to message i in its folder.
func (m *Merged) Retrieved(i int) {
	p := m.at[i]
	m.parts[p.part].Retrieved(p.i)
}

// Expunged reports whether message i's folder said it was expunged.
func (m *Merged) Expunged(i int) bool {
	p := m.at[i]
	return m.parts[p.part].Expunged(p.i)
}

// Noop sends NOOP in every folder, at once.
func (m *Merged) Noop(ctx context.Context) error {
	return m.each(func(k int, s *Session) error { return s.Noop(ctx) })
}

// Commit runs the UPDATE state in every folder at once, each with its own
// messages of deleted and nothing else (a folder with none still applies
// the seen policy of SeenQuit). The counts add up what the folders that
// succeeded did; the error names each folder that failed, whose messages
// stay as they were or as far as its policy got, as for a single folder.
func (m *Merged) Commit(ctx context.Context, deleted []int) (removed, flagged int, err error) {
	per := make([][]int, len(m.parts))
	for _, i := range deleted {
		p := m.at[i]
		per[p.part] = append(per[p.part], p.i)
	}
	var mu sync.Mutex
	err = m.each(func(k int, s *Session) error {
		r, f, err := s.Commit(ctx, per[k])
		if err != nil {
			return err
		}
		mu.Lock()
		removed, flagged = removed+r, flagged+f
		mu.Unlock()
		return nil
	})
	return removed, flagged, err
}

// Close logs out of every folder without changing any.
func (m *Merged) Close() error {
	return m.each(func(k int, s *Session) error { return s.Close() })
}

// close closes the folders that are open, after a failed Open.
func (m *Merged) close() {
	for _, s := range m.parts {
		if s != nil {
			s.Close()
		}
	}
}

// each runs f on every folder's Session in a goroutine of its own and
// returns their errors joined, each naming its folder.
func (m *Merged) each(f func(k int, s *Session) error) error {
	errs := make([]error, len(m.parts))
	var wg sync.WaitGroup
	for k, s := range m.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(k, s); err != nil {
				errs[k] = fmt.Errorf("folder %q: %w", m.names[k], err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
