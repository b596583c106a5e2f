// Package uidlmap matches the unique-ids an old POP3 server gave users'
// messages to the messages of their new IMAP mailboxes and keeps them in
// a map that popbridge serves, so that no client downloads migrated mail
// again.
package uidlmap

// The map on disk and its lookup: one read-only file per user in a
// directory, read at each login (so replicas share nothing written at run
// time, and a new file takes effect without a reload).
//
// A user's file, "<user>.uidl" (FileName), is text:
//
//	popbridge-uidl-map 1
//	uidvalidity 1733400000
//	mailbox INBOX
//	<uid> <old unique-id>
//	...
//
// The ids are keyed by UID under the UIDVALIDITY they were matched in:
// cheap at login (no header fetch) and exact. When the mailbox's
// UIDVALIDITY changes (a rebuild), the file no longer applies and is
// ignored: the import must be run again then.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

const magic = "popbridge-uidl-map 1"

// maxFileSize bounds a user's file: 70-character ids for a million
// messages fit.
const maxFileSize = 100 << 20

// Table is one user's imported ids.
type Table struct {
	UIDValidity uint32
	Mailbox     string
	UIDLs       map[imap.UID]string
}

// Map is a directory of per-user tables. It implements imapback.UIDLMap.
type Map struct {
	dir string
}

// Load checks that dir is a readable directory and returns its map. It
// reads no table: each login reads its user's.
func Load(dir string) (*Map, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("uidl map: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("uidl map: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("uidl map: %s is not a directory", dir)
	}
	return &Map{dir: dir}, nil
}

// Table reads user's table; nil, nil when the user has none.
func (m *Map) Table(user string) (*Table, error) {
	path := filepath.Join(m.dir, FileName(user))
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("uidl map: %w", err)
	}
	defer f.Close()
	t, err := Read(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("uidl map: %s: %w", path, err)
	}
	return t, nil
}

// UIDLs returns user's imported ids for the mailbox with uidValidity:
// nil when the user has none, or they were matched under another
// UIDVALIDITY (the mailbox was rebuilt since).
func (m *Map) UIDLs(user string, uidValidity uint32) (map[imap.UID]string, error) {
	t, err := m.Table(user)
	if t == nil || err != nil || t.UIDValidity != uidValidity {
		return nil, err
	}
	return t.UIDLs, nil
}

// FileName is the name of user's file: the user name with every byte but
// letters, digits and "@_+-" (and "." after the first byte) written as
// %XX, then ".uidl". Distinct users get distinct names on any file system
// that keeps case (mind case-insensitive ones when users differ by case
// only).
func FileName(user string) string {
	var b strings.Builder
	for i := 0; i < len(user); i++ {
		c := user[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("@_+-", c) >= 0 || c == '.' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String() + ".uidl"
}

// Read parses a table. Every id must be a valid RFC 1939 unique-id and
// every UID and id may appear once.
func Read(r io.Reader) (*Table, error) {
	t := &Table{UIDLs: make(map[imap.UID]string)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	seen := make(map[string]bool)
	size := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		size += len(line) + 1
		if size > maxFileSize {
			return nil, fmt.Errorf("larger than %d octets", maxFileSize)
		}
		if n == 1 {
			if line != magic {
				return nil, fmt.Errorf("line 1: not %q", magic)
			}
			continue
		}
		key, val, ok := strings.Cut(line, " ")
		if !ok || val == "" {
			return nil, fmt.Errorf("line %d: want two fields", n)
		}
		switch key {
		case "uidvalidity":
			v, err := strconv.ParseUint(val, 10, 32)
			if err != nil || v == 0 {
				return nil, fmt.Errorf("line %d: bad uidvalidity %q", n, val)
			}
			t.UIDValidity = uint32(v)
			continue
		case "mailbox":
			t.Mailbox = val
			continue
		}
		uid, err := strconv.ParseUint(key, 10, 32)
		if err != nil || uid == 0 {
			return nil, fmt.Errorf("line %d: bad UID %q", n, key)
		}
		if err := CheckUIDL(val); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := t.UIDLs[imap.UID(uid)]; dup || seen[val] {
			return nil, fmt.Errorf("line %d: UID %d or id %q given twice", n, uid, val)
		}
		seen[val] = true
		t.UIDLs[imap.UID(uid)] = val
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, errors.New("empty")
	}
	if t.UIDValidity == 0 {
		return nil, errors.New("no uidvalidity line")
	}
	return t, nil
}

// CheckUIDL reports whether id is a valid RFC 1939 unique-id: 1 to 70
// characters from 0x21 to 0x7E.
func CheckUIDL(id string) error {
	if len(id) == 0 || len(id) > 70 {
		return fmt.Errorf("unique-id %q is not 1 to 70 characters", id)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return fmt.Errorf("unique-id %q has character %q", id, id[i])
		}
	}
	return nil
}

// Bytes returns the table in its file format, UIDs in ascending order.
func (t *Table) Bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nuidvalidity %d\n", magic, t.UIDValidity)
	if t.Mailbox != "" {
		fmt.Fprintf(&b, "mailbox %s\n", t.Mailbox)
	}
	uids := make([]imap.UID, 0, len(t.UIDLs))
	for uid := range t.UIDLs {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	for _, uid := range uids {
		fmt.Fprintf(&b, "%d %s\n", uid, t.UIDLs[uid])
	}
	return b.Bytes()
}

// WriteFile writes user's table into dir atomically (a temporary file
// renamed), readable by all: it holds no secret.
func WriteFile(dir, user string, t *Table) error {
	path := filepath.Join(dir, FileName(user))
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(t.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
