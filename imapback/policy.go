package imapback

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// SeenPolicy says when a message sent in full by RETR gets \Seen upstream.
type SeenPolicy string

// Seen policies.
const (
	// SeenRetr sets \Seen right after a completed RETR, as Dovecot's POP3
	// server does.
	SeenRetr SeenPolicy = "retr"
	// SeenNever leaves every message as it was: mail stays unread for the
	// other devices of the user.
	SeenNever SeenPolicy = "never"
	// SeenQuit sets \Seen on the retrieved messages at QUIT, together with
	// the deletes: a session that drops or times out leaves mail unread.
	SeenQuit SeenPolicy = "quit"
)

// DefaultTrashFolder is the folder DeleteTrash uses when none is
// configured and the upstream names no \Trash special-use mailbox, found
// and created under the personal namespace as folders.go says.
const DefaultTrashFolder = "Trash"

// MaxDeviceLen bounds device names, which become part of an IMAP keyword.
const MaxDeviceLen = 32

// DeviceKeywordPrefix starts the IMAP keyword that marks a message as
// deleted by one device.
const DeviceKeywordPrefix = "$popbridge-del-"

// Policy is what one session does upstream: when RETR sets \Seen, what
// QUIT does with deleted messages, and which messages the session sees.
type Policy struct {
	// Delete is the delete policy.
	Delete DeletePolicy
	// TrashFolder is the folder of DeleteTrash. Empty: the mailbox with
	// the \Trash special-use attribute (RFC 6154), else
	// DefaultTrashFolder. A name that does not exist as written is
	// looked for under the personal namespace (folders.go).
	TrashFolder string
	// Seen is the seen policy.
	Seen SeenPolicy

	// Device names a per-device view (see ValidDevice). The snapshot
	// leaves out the messages that carry DeviceKeyword(Device), and QUIT
	// sets that keyword on the deleted messages instead of applying
	// Delete, so that the other devices and IMAP clients still see them.
	Device string
	// AllDevices, in a device view, lists the devices whose deletes
	// count: a message that carries the keyword of every one of them
	// after this session's QUIT gets the Delete policy for real.
	// Empty: device deletes never remove anything upstream.
	AllDevices []string
	// MaxAgeDays > 0 leaves out messages whose internal date is older
	// than that many days (UID SEARCH SINCE, day granularity).
	MaxAgeDays int
	// StartDate, when set, leaves out messages whose internal date is
	// before its day (UID SEARCH SINCE, day granularity in the server's
	// time zone); with MaxAgeDays the later of the two days applies.
	StartDate time.Time

	// Mailbox, when set, is served instead of Options.Mailbox: a folder
	// named at login or by a routing hook.
	Mailbox string

	// RetentionDays > 0 removes, at a QUIT, the messages this session's
	// client retrieved at least that many days before, as if it had
	// deleted them. The caller keeps the clock and passes those messages
	// to Commit with the client's deletes; imapback only checks the value.
	RetentionDays int

	// Mailboxes, when set, are served merged instead (merged.go): by
	// Open, not Login. At most one of Mailbox and Mailboxes is set.
	Mailboxes []string
}

// MaxRetentionDays bounds RetentionDays: a hundred years, far below what
// would overflow a time.Duration.
const MaxRetentionDays = 36500

// DefaultPolicy returns the policy of the backend's Options, with no
// view: the policy to pass to Login when nothing is set per user.
func (b *Backend) DefaultPolicy() Policy {
	return Policy{Delete: b.opts.Delete, Seen: b.opts.Seen, TrashFolder: b.opts.TrashFolder}
}

func (p *Policy) check() error {
	if !p.Delete.Valid() {
		return fmt.Errorf("imapback: unknown delete policy %q", p.Delete)
	}
	if !p.Seen.Valid() {
		return fmt.Errorf("imapback: unknown seen policy %q", p.Seen)
	}
	if p.Device != "" && !ValidDevice(p.Device) {
		return fmt.Errorf("imapback: invalid device name %q", p.Device)
	}
	for _, d := range p.AllDevices {
		if !ValidDevice(d) {
			return fmt.Errorf("imapback: invalid device name %q", d)
		}
	}
	if p.MaxAgeDays < 0 {
		return errors.New("imapback: negative MaxAgeDays")
	}
	if p.Mailbox != "" && !ValidMailbox(p.Mailbox) {
		return fmt.Errorf("imapback: invalid mailbox name %q", p.Mailbox)
	}
	if p.RetentionDays < 0 || p.RetentionDays > MaxRetentionDays {
		return fmt.Errorf("imapback: RetentionDays %d not in 0-%d", p.RetentionDays, MaxRetentionDays)
	}
	if p.Mailbox != "" && len(p.Mailboxes) > 0 {
		return errors.New("imapback: both Mailbox and Mailboxes set")
	}
	if err := CheckMailboxes(p.Mailboxes); err != nil {
		return fmt.Errorf("imapback: Mailboxes: %w", err)
	}
	return nil
}

// MaxMailboxLen bounds a mailbox name chosen per session.
const MaxMailboxLen = 255

// ValidMailbox reports whether name can name the mailbox of a session:
// 1 to MaxMailboxLen bytes of UTF-8 without control characters, and no
// wildcard ('*', '%'), which LIST would read as a pattern.
func ValidMailbox(name string) bool {
	if name == "" || len(name) > MaxMailboxLen || !utf8.ValidString(name) || strings.ContainsAny(name, "*%") {
		return false
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidDevice reports whether name can name a device: 1 to MaxDeviceLen
// characters of a-z, 0-9, '.', '_' and '-'. Names are checked, not
// rewritten, so that two devices never share a keyword; callers fold case
// first if they want "Laptop" and "laptop" to be one device.
func ValidDevice(name string) bool {
	if name == "" || len(name) > MaxDeviceLen {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DeviceKeyword is the IMAP keyword that marks a message deleted by
// device. Its characters are all IMAP atom characters.
func DeviceKeyword(device string) imap.Flag {
	return imap.Flag(DeviceKeywordPrefix + device)
}

// commit runs the UPDATE state: \Seen for SeenQuit, then the delete
// policy, or in a device view the device's keyword. It counts what
// became of the messages as Commit says.
func (s *Session) commit(deleted []int) (removed, flagged int, err error) {
	if s.pol.Seen == SeenQuit && len(s.retrieved) > 0 {
		if err := s.store(s.uidSet(s.retrieved), imap.FlagSeen); err != nil {
			return 0, 0, fmt.Errorf("UID STORE \\Seen: %w", err)
		}
	}
	if len(deleted) == 0 {
		return 0, 0, nil
	}
	uids := s.uidSet(deleted)
	if s.pol.Device != "" {
		all, err := s.deleteForDevice(uids)
		if err != nil {
			return 0, 0, err
		}
		// Marked for this device; those every device deleted get the
		// delete policy below.
		flagged = len(deleted) - uidCount(all)
		if uidCount(all) == 0 {
			return 0, flagged, nil
		}
		uids = all
	}
	gone, err := s.remove(uids)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case gone:
		removed = uidCount(uids)
	case s.pol.Delete != DeleteKeep:
		flagged += uidCount(uids)
	}
	return removed, flagged, nil
}

// uidCount is the number of UIDs in a set of single UIDs and ranges.
func uidCount(uids imap.UIDSet) int {
	n := 0
	for _, r := range uids {
		n += int(r.Stop-r.Start) + 1
	}
	return n
}

func (s *Session) uidSet(idx []int) imap.UIDSet {
	var uids imap.UIDSet
	for _, i := range idx {
		uids.AddNum(s.msgs[i].UID)
	}
	return uids
}

func (s *Session) store(uids imap.UIDSet, flags ...imap.Flag) error {
	start := time.Now()
	err := s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
	s.observe("UID STORE", start, err)
	return err
}

// remove applies the delete policy to uids. gone reports that they left
// the mailbox; otherwise they were kept (DeleteKeep) or stay flagged
// \Deleted.
func (s *Session) remove(uids imap.UIDSet) (gone bool, err error) {
	switch s.pol.Delete {
	case DeleteKeep:
		return false, nil
	case DeleteTrash:
		return s.trash(uids)
	}
	if s.pol.Delete == DeleteFlag {
		if err := s.store(uids, imap.FlagDeleted); err != nil {
			return false, fmt.Errorf("UID STORE \\Deleted: %w", err)
		}
		return false, nil
	}
	return s.deleteUIDs(uids)
}

// deleteUIDs flags uids \Deleted and removes exactly them, and reports
// whether it did. Without UID EXPUNGE they stay flagged: a plain EXPUNGE
// would also remove the messages other clients flagged.
//
// The UID EXPUNGE goes out right behind the STORE, without waiting for
// it: one round trip instead of two. That is safe because UID EXPUNGE
// removes only messages of uids that are flagged \Deleted, whatever
// became of the STORE: if it failed in part or whole, the EXPUNGE removes
// those of uids that are flagged (by it, or by another client before), all
// messages the client deleted, and never another. The failed STORE still
// fails the UPDATE (the client hears "some deleted messages not
// removed"), and a connection that breaks stops both, as before.
func (s *Session) deleteUIDs(uids imap.UIDSet) (bool, error) {
	if !s.c.Caps().Has(imap.CapUIDPlus) {
		s.b.warnedNoUIDPlus.Do(func() {
			s.logger().Warn("upstream has neither UIDPLUS nor IMAP4rev2: deleted messages are only flagged \\Deleted, not expunged")
		})
		if err := s.store(uids, imap.FlagDeleted); err != nil {
			return false, fmt.Errorf("UID STORE \\Deleted: %w", err)
		}
		return false, nil
	}
	start := time.Now()
	store := s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
	expunge := s.c.UIDExpunge(uids)
	serr := store.Close()
	s.observe("UID STORE", start, serr)
	_, err := expunge.Collect()
	s.observe("UID EXPUNGE", start, err)
	if serr != nil {
		return false, fmt.Errorf("UID STORE \\Deleted: %w", serr)
	}
	if err != nil {
		return false, fmt.Errorf("UID EXPUNGE: %w", err)
	}
	return true, nil
}

// trash moves uids to the trash folder, creating it when missing; gone
// is false when, without UIDPLUS, the originals stay flagged \Deleted.
func (s *Session) trash(uids imap.UIDSet) (gone bool, err error) {
	folder, special, err := s.trashFolder()
	if err != nil {
		return false, err
	}
	if strings.EqualFold(folder, s.mailbox) {
		// Moving a message into its own mailbox gives it a new UID: the
		// client would download it again, forever.
		return false, fmt.Errorf("trash folder %q is the maildrop itself", folder)
	}
	gone, err = s.moveTo(uids, folder)
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		// Most likely [TRYCREATE]; some servers send a bare NO. CREATE
		// fails harmlessly if the folder exists and the NO had another
		// cause, which is then the error to report.
		if cerr := s.create(folder, special); cerr != nil {
			return false, fmt.Errorf("moving to %q: %w (and CREATE: %v)", folder, err, cerr)
		}
		gone, err = s.moveTo(uids, folder)
	}
	if err != nil {
		return false, fmt.Errorf("moving to %q: %w", folder, err)
	}
	return gone, nil
}

// moveTo moves uids with UID MOVE (RFC 6851) where the upstream offers it,
// else with UID COPY, UID STORE \Deleted and UID EXPUNGE. go-imap's own
// Move falls back to a plain EXPUNGE without UIDPLUS, which would remove
// other clients' \Deleted mail, so the fallback is spelt out here.
func (s *Session) moveTo(uids imap.UIDSet, folder string) (gone bool, err error) {
	if s.c.Caps().Has(imap.CapMove) {
		start := time.Now()
		_, err := s.c.Move(uids, folder).Wait()
		s.observe("UID MOVE", start, err)
		return err == nil, err
	}
	start := time.Now()
	_, err = s.c.Copy(uids, folder).Wait()
	s.observe("UID COPY", start, err)
	if err != nil {
		return false, err
	}
	// From here on the messages are safe in the trash: a failure leaves a
	// copy in both places, never none.
	return s.deleteUIDs(uids)
}

// create creates folder, as the \Trash special-use mailbox where the
// upstream offers CREATE-SPECIAL-USE (RFC 6154).
func (s *Session) create(folder string, special bool) error {
	if special && s.c.Caps().Has(imap.CapCreateSpecialUse) {
		err := s.c.Create(folder, &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrTrash}}).Wait()
		if err == nil {
			s.logger().Info("created the trash folder", "folder", folder, "special_use", `\Trash`)
		}
		if err == nil || alreadyExists(err) {
			return nil
		}
		// A server may refuse the attribute ([USEATTR]); the folder
		// itself is what matters.
		s.logger().Info("CREATE with USE (\\Trash) refused, creating a plain folder", "folder", folder, "err", err)
	}
	err := s.c.Create(folder, nil).Wait()
	if err == nil {
		s.logger().Info("created the trash folder", "folder", folder)
	}
	if alreadyExists(err) {
		return nil
	}
	return err
}

func alreadyExists(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists
}
