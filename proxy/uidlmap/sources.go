package uidlmap

// Where the old ids come from: a Dovecot maildir's dovecot-uidlist (with
// the message files beside it, for their headers), or a listing saved
// from the old server's UIDL answer. The old server itself, over POP3, is
// in pop3.go; the new mailbox, over IMAP, in imap.go.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/imapback"
)

// UIDList is a parsed dovecot-uidlist.
type UIDList struct {
	UIDValidity uint32
	Records     []UIDListRecord
}

// UIDListRecord is one message of a dovecot-uidlist.
type UIDListRecord struct {
	UID      uint32
	File     string // the maildir file's base name (before ":2,")
	POP3UIDL string // the P field: the id Dovecot's POP3 serves, if set
	VSize    int64  // the W field (size with CRLF line ends), or -1
}

// maxUIDListLine bounds a line of dovecot-uidlist.
const maxUIDListLine = 64 << 10

// ParseUIDList parses dovecot-uidlist, version 3 ("3 V<uidvalidity>
// N<next uid> ...", then "<uid> [<key><value> ...] :<file>") or version 1
// ("1 <uidvalidity> <next uid>", then "<uid> <file>").
func ParseUIDList(r io.Reader) (*UIDList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxUIDListLine)
	if !sc.Scan() {
		return nil, fmt.Errorf("dovecot-uidlist: empty: %v", sc.Err())
	}
	head := strings.Fields(sc.Text())
	l := &UIDList{}
	if len(head) == 0 {
		return nil, errors.New("dovecot-uidlist: no header")
	}
	version := head[0]
	switch version {
	case "1":
		if len(head) < 3 {
			return nil, errors.New("dovecot-uidlist: short version 1 header")
		}
		v, err := strconv.ParseUint(head[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("dovecot-uidlist: uidvalidity %q", head[1])
		}
		l.UIDValidity = uint32(v)
	case "3":
		for _, f := range head[1:] {
			if v, ok := strings.CutPrefix(f, "V"); ok {
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("dovecot-uidlist: uidvalidity %q", v)
				}
				l.UIDValidity = uint32(n)
			}
		}
	default:
		return nil, fmt.Errorf("dovecot-uidlist: version %q not known", version)
	}
	if l.UIDValidity == 0 {
		return nil, errors.New("dovecot-uidlist: no uidvalidity")
	}
	for n := 2; sc.Scan(); n++ {
		rec, err := parseUIDListLine(sc.Text(), version)
		if err != nil {
			return nil, fmt.Errorf("dovecot-uidlist: line %d: %w", n, err)
		}
		if k := len(l.Records); k > 0 && rec.UID <= l.Records[k-1].UID {
			return nil, fmt.Errorf("dovecot-uidlist: line %d: UID %d not ascending", n, rec.UID)
		}
		l.Records = append(l.Records, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dovecot-uidlist: %w", err)
	}
	return l, nil
}

func parseUIDListLine(line, version string) (UIDListRecord, error) {
	rec := UIDListRecord{VSize: -1}
	uid, rest, ok := strings.Cut(line, " ")
	n, err := strconv.ParseUint(uid, 10, 32)
	if !ok || err != nil || n == 0 {
		return rec, fmt.Errorf("bad UID %q", uid)
	}
	rec.UID = uint32(n)
	if version == "1" {
		rec.File = rest
	} else {
		fields, file, ok := strings.Cut(rest, ":")
		if !ok {
			return rec, errors.New("no \":<file>\"")
		}
		rec.File = file
		for _, f := range strings.Fields(fields) {
			switch f[0] {
			case 'P':
				rec.POP3UIDL = f[1:]
			case 'W':
				if rec.VSize, err = strconv.ParseInt(f[1:], 10, 64); err != nil || rec.VSize < 0 {
					return rec, fmt.Errorf("bad size %q", f)
				}
			}
		}
	}
	if rec.File == "" || strings.ContainsAny(rec.File, "/\x00") {
		return rec, fmt.Errorf("bad file name %q", rec.File)
	}
	return rec, nil
}

// ReadDovecotMaildir reads a Dovecot maildir (dir holds dovecot-uidlist,
// cur and new) and returns its messages as Dovecot's POP3 server listed
// them: the P field's id where set, else format's (Dovecot's
// pop3_uidl_format; only %u and %v can be rebuilt outside Dovecot), with
// each message's size and header hash read from its file. Files the list
// names that are gone are left out.
func ReadDovecotMaildir(dir string, format *imapback.UIDLFormat) ([]OldMessage, error) {
	f, err := os.Open(filepath.Join(dir, "dovecot-uidlist"))
	if err != nil {
		return nil, err
	}
	l, err := ParseUIDList(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	files := make(map[string]string) // base name -> path
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			base, _, _ := strings.Cut(e.Name(), ":")
			files[base] = filepath.Join(dir, sub, e.Name())
		}
	}
	var old []OldMessage
	for _, rec := range l.Records {
		path, ok := files[rec.File]
		if !ok {
			continue
		}
		m, err := readMessageFile(path)
		if err != nil {
			return nil, err
		}
		m.UIDL = rec.POP3UIDL
		if m.UIDL == "" {
			m.UIDL = format.Format(rec.UID, l.UIDValidity)
		}
		if rec.VSize >= 0 {
			m.Size = rec.VSize
		}
		old = append(old, m)
	}
	return old, nil
}

// readMessageFile returns a message file's header hash and its size
// with CRLF line ends (what POP3 LIST reports).
func readMessageFile(path string) (OldMessage, error) {
	f, err := os.Open(path)
	if err != nil {
		return OldMessage{}, err
	}
	defer f.Close()
	m := OldMessage{}
	if m.Hash, err = imapback.HeaderHash(f); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return m, err
	}
	br := bufio.NewReader(f)
	var prev byte
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, err
		}
		if c == '\n' && prev != '\r' {
			m.Size++
		}
		m.Size++
		prev = c
	}
	return m, nil
}

// ParseListing reads a listing saved from the old server: lines as POP3's
// UIDL answers them ("<n> <id>"), each optionally followed by the
// message's size and header hash. Without hashes, messages match only by
// position and size.
func ParseListing(r io.Reader) ([]OldMessage, error) {
	sc := bufio.NewScanner(r)
	var old []OldMessage
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "." || strings.HasPrefix(f[0], "+OK") {
			continue
		}
		if len(f) < 2 || len(f) > 4 {
			return nil, fmt.Errorf("listing line %d: want \"<n> <id> [size [hash]]\"", n)
		}
		if _, err := strconv.ParseUint(f[0], 10, 32); err != nil {
			return nil, fmt.Errorf("listing line %d: message number %q", n, f[0])
		}
		if err := CheckUIDL(f[1]); err != nil {
			return nil, fmt.Errorf("listing line %d: %w", n, err)
		}
		m := OldMessage{UIDL: f[1], Size: -1}
		if len(f) > 2 {
			size, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil || size < 0 {
				return nil, fmt.Errorf("listing line %d: size %q", n, f[2])
			}
			m.Size = size
		}
		if len(f) > 3 {
			m.Hash = strings.ToLower(f[3])
		}
		old = append(old, m)
	}
	return old, sc.Err()
}
