package imapback

// Finding a configured folder upstream, as a careful client does: the
// trash folder of DeleteTrash and the maildrop mailbox.
//
// The rule (RFC 6154, RFC 2342):
//
//  1. The trash folder, when none is configured, is the mailbox with the
//     \Trash special-use attribute, where the upstream names one.
//  2. A folder name (the configured one, or DefaultTrashFolder) is used
//     as written when a mailbox of that name exists.
//  3. Otherwise it is taken to be relative to the personal namespace: the
//     namespace's prefix (NAMESPACE, the first personal namespace) and
//     the name, joined by the namespace's delimiter. Courier keeps every
//     folder under "INBOX." and refuses "Trash" but has "INBOX.Trash";
//     a Cyrus without altnamespace has the same prefix. Dovecot's
//     default personal prefix, and Cyrus's with altnamespace, is empty:
//     there the name is used as written.
//  4. A trash folder found nowhere is created under that name.
//
// A name that already starts with the prefix, or an upstream without
// NAMESPACE, leaves the name as written. The maildrop mailbox follows
// steps 2 and 3 only when SELECT of the name as written is refused, so
// INBOX costs nothing.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// trashFolder returns the trash folder of the rule above. special says
// that a folder created for it should carry the \Trash attribute.
func (s *Session) trashFolder() (name string, special bool, err error) {
	if s.pol.TrashFolder != "" {
		name, err = s.findFolder(s.pol.TrashFolder)
		return name, false, err
	}
	if name, err = s.specialUse(imap.MailboxAttrTrash); err != nil || name != "" {
		return name, false, err
	}
	name, err = s.findFolder(DefaultTrashFolder)
	return name, true, err
}

// specialUse returns the mailbox with attribute attr, or "" when the
// upstream names none.
func (s *Session) specialUse(attr imap.MailboxAttr) (string, error) {
	caps := s.c.Caps()
	var opts *imap.ListOptions
	if caps.Has(imap.CapSpecialUse) && caps.Has(imap.CapListExtended) {
		// LIST (SPECIAL-USE) "" "*" returns only the special-use
		// mailboxes, not every folder of the user.
		opts = &imap.ListOptions{SelectSpecialUse: true}
	}
	// Without LIST-EXTENDED the attributes appear in the plain LIST
	// response, if the server knows them at all (RFC 6154 section 2).
	start := time.Now()
	s.bc.Expect(listExpectation())
	boxes, err := s.c.List("", "*", opts).Collect()
	err = s.upstreamErr(err)
	s.expectCommand() // what follows is bounded by the mailbox again
	s.observe("LIST", start, err)
	if err != nil {
		return "", fmt.Errorf("LIST for the %s mailbox: %w", attr, err)
	}
	for _, box := range boxes {
		for _, a := range box.Attrs {
			if strings.EqualFold(string(a), string(attr)) {
				return box.Mailbox, nil
			}
		}
	}
	return "", nil
}

// findFolder applies steps 2 and 3 of the rule to name: name itself if
// it exists, else name under the personal namespace, whether that exists
// or not.
func (s *Session) findFolder(name string) (string, error) {
	exists, err := s.mailboxExists(name)
	if err != nil || exists {
		return name, err
	}
	prefix, err := s.personalPrefix()
	if err != nil || prefix == "" || hasPrefixFold(name, prefix) {
		return name, err
	}
	return prefix + name, nil
}

// mailboxExists reports whether a mailbox named exactly name exists.
func (s *Session) mailboxExists(name string) (bool, error) {
	start := time.Now()
	boxes, err := s.c.List("", name, nil).Collect()
	s.observe("LIST", start, err)
	if err != nil {
		return false, fmt.Errorf("LIST %q: %w", name, err)
	}
	for _, box := range boxes {
		// INBOX is case-insensitive (RFC 3501 section 5.1).
		if box.Mailbox == name || strings.EqualFold(box.Mailbox, "INBOX") && strings.EqualFold(name, "INBOX") {
			return !hasAttr(box.Attrs, imap.MailboxAttrNonExistent) && !hasAttr(box.Attrs, imap.MailboxAttrNoSelect), nil
		}
	}
	return false, nil
}

// personalPrefix returns the prefix of the first personal namespace,
// ending in its delimiter; "" when the upstream has no NAMESPACE or no
// personal namespace.
func (s *Session) personalPrefix() (string, error) {
	if !s.c.Caps().Has(imap.CapNamespace) {
		return "", nil
	}
	start := time.Now()
	ns, err := s.c.Namespace().Wait()
	s.observe("NAMESPACE", start, err)
	var ie *imap.Error
	if errors.As(err, &ie) {
		return "", nil // refused: names stay as written
	}
	if err != nil {
		return "", fmt.Errorf("NAMESPACE: %w", err)
	}
	if len(ns.Personal) == 0 {
		return "", nil
	}
	p := ns.Personal[0]
	if p.Prefix != "" && p.Delim != 0 && !strings.HasSuffix(p.Prefix, string(p.Delim)) {
		return p.Prefix + string(p.Delim), nil
	}
	return p.Prefix, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func hasAttr(attrs []imap.MailboxAttr, attr imap.MailboxAttr) bool {
	for _, a := range attrs {
		if strings.EqualFold(string(a), string(attr)) {
			return true
		}
	}
	return false
}
