package uidlmap

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestTableRoundTrip(t *testing.T) {
	in := &Table{UIDValidity: 1733400000, Mailbox: "INBOX", UIDLs: map[imap.UID]string{3: "old-3", 1: "0000000100000001"}}
	want := "popbridge-uidl-map 1\nuidvalidity 1733400000\nmailbox INBOX\n1 0000000100000001\n3 old-3\n"
	if got := string(in.Bytes()); got != want {
		t.Fatalf("Bytes = %q, want %q", got, want)
	}
	out, err := Read(strings.NewReader(want))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("Read = %+v, %v; want %+v", out, err, in)
	}
	for _, bad := range []string{
		"", "popbridge-uidl-map 2\n", "popbridge-uidl-map 1\n1 a\n", // no uidvalidity
		"popbridge-uidl-map 1\nuidvalidity 5\n1 a b\n",    // space in an id
		"popbridge-uidl-map 1\nuidvalidity 5\n1 a\n2 a\n", // an id twice
		"popbridge-uidl-map 1\nuidvalidity 5\n0 a\n",      // UID 0
		"popbridge-uidl-map 1\nuidvalidity 5\n1 " + strings.Repeat("x", 71) + "\n",
	} {
		if _, err := Read(strings.NewReader(bad)); err == nil {
			t.Errorf("Read(%q) accepted it", bad)
		}
	}
}

func TestMapLookup(t *testing.T) {
	dir := t.TempDir()
	tab := &Table{UIDValidity: 7, UIDLs: map[imap.UID]string{1: "a"}}
	if err := WriteFile(dir, "bob/x@example.org", tab); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bob%2Fx@example.org.uidl")); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.UIDLs("bob/x@example.org", 7); err != nil || got[1] != "a" {
		t.Errorf("UIDLs = %v, %v", got, err)
	}
	if got, err := m.UIDLs("bob/x@example.org", 8); err != nil || got != nil {
		t.Errorf("UIDLs for another UIDVALIDITY = %v, %v; want none", got, err)
	}
	if got, err := m.UIDLs("carol", 7); err != nil || got != nil {
		t.Errorf("UIDLs of a user without a file = %v, %v", got, err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing directory succeeded")
	}
	for user, want := range map[string]string{".hidden": "%2Ehidden.uidl", "a.b": "a.b.uidl", "..": "%2E..uidl", "": ".uidl"} {
		if got := FileName(user); got != want {
			t.Errorf("FileName(%q) = %q, want %q", user, got, want)
		}
	}
}

func TestMatch(t *testing.T) {
	old := []OldMessage{
		{UIDL: "o1", Size: 100, Hash: "h1"},
		{UIDL: "o2", Size: 200, Hash: "dup"},
		{UIDL: "o3", Size: 300, Hash: "dup"},
		{UIDL: "gone", Size: 50, Hash: "hx"},
		{UIDL: "o5", Size: 500, Hash: "dup"},
	}
	fresh := []NewMessage{
		{UID: 10, Size: 100, Hash: "h1"},
		{UID: 11, Size: 300, Hash: "dup"}, // sizes tell equal headers apart
		{UID: 12, Size: 200, Hash: "dup"},
		{UID: 13, Size: 999, Hash: "new"},
	}
	r := Match(old, fresh)
	want := map[imap.UID]string{10: "o1", 12: "o2", 11: "o3"}
	if !reflect.DeepEqual(r.UIDLs, want) {
		t.Errorf("UIDLs = %v, want %v", r.UIDLs, want)
	}
	if len(r.Unmatched) != 2 || r.Unmatched[0].UIDL != "gone" || r.Unmatched[1].UIDL != "o5" {
		t.Errorf("Unmatched = %v", r.Unmatched)
	}
	if len(r.Fresh) != 1 || r.Fresh[0].UID != 13 {
		t.Errorf("Fresh = %v", r.Fresh)
	}
	// Without hashes only position and size match.
	r = Match([]OldMessage{{UIDL: "a", Size: 1}, {UIDL: "b", Size: 5}, {UIDL: "c", Size: -1}},
		[]NewMessage{{UID: 1, Size: 1, Hash: "x"}, {UID: 2, Size: 2, Hash: "y"}, {UID: 3, Size: 3, Hash: "z"}})
	if !reflect.DeepEqual(r.UIDLs, map[imap.UID]string{1: "a"}) || len(r.Unmatched) != 2 {
		t.Errorf("positional: %v, unmatched %v", r.UIDLs, r.Unmatched)
	}
}

func TestParseUIDList(t *testing.T) {
	v3 := "3 V1733400000 N4 G3085f01b7f11094c501100008c4a11c1\n" +
		"1 W1234 S1200 :1733400001.M1P1.host\n" +
		"2 :1733400002.M2P1.host,S=10,W=12\n" +
		"3 P0000abcd W99 :1733400003.M3P1.host\n"
	l, err := ParseUIDList(strings.NewReader(v3))
	if err != nil {
		t.Fatal(err)
	}
	want := &UIDList{UIDValidity: 1733400000, Records: []UIDListRecord{
		{UID: 1, File: "1733400001.M1P1.host", VSize: 1234},
		{UID: 2, File: "1733400002.M2P1.host,S=10,W=12", VSize: -1},
		{UID: 3, File: "1733400003.M3P1.host", POP3UIDL: "0000abcd", VSize: 99},
	}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("ParseUIDList = %+v, want %+v", l, want)
	}
	v1, err := ParseUIDList(strings.NewReader("1 42 3\n1 a.host\n2 b.host\n"))
	if err != nil || v1.UIDValidity != 42 || len(v1.Records) != 2 || v1.Records[1].File != "b.host" {
		t.Errorf("version 1: %+v, %v", v1, err)
	}
	for _, bad := range []string{"", "2 V1\n", "3 N4\n", "3 V1\nx :a\n", "3 V1\n2 :a\n1 :b\n", "3 V1\n1 W1\n", "3 V1\n1 :a/b\n"} {
		if _, err := ParseUIDList(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseUIDList(%q) accepted it", bad)
		}
	}
}

func TestParseListing(t *testing.T) {
	got, err := ParseListing(strings.NewReader("+OK\r\n1 abc\r\n2 def 120 ABCDEF\r\n.\r\n"))
	want := []OldMessage{{UIDL: "abc", Size: -1}, {UIDL: "def", Size: 120, Hash: "abcdef"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseListing = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseListing(strings.NewReader("abc\n")); err == nil {
		t.Error("a line without a message number was accepted")
	}
}

// FuzzParseUIDList: never panics; what it accepts has ascending UIDs and
// plain file names.
func FuzzParseUIDList(f *testing.F) {
	f.Add([]byte("3 V1733400000 N4\n1 W1234 :a.host\n2 P0a :b\n"))
	f.Add([]byte("1 42 3\n1 a.host\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseUIDList(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i, r := range l.Records {
			if r.File == "" || strings.ContainsAny(r.File, "/\x00") || i > 0 && r.UID <= l.Records[i-1].UID {
				t.Fatalf("accepted %+v from %q", r, data)
			}
		}
	})
}

// FuzzRead: a table Read accepts writes back to a table Read reads the
// same.
func FuzzRead(f *testing.F) {
	f.Add([]byte("popbridge-uidl-map 1\nuidvalidity 5\nmailbox INBOX\n1 a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := Read(bytes.NewReader(tab.Bytes()))
		if err != nil || !reflect.DeepEqual(tab, again) {
			t.Fatalf("%q: read back %+v, %v; want %+v", data, again, err, tab)
		}
	})
}
