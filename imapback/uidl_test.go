package imapback

import (
	"strings"
	"testing"
)

func TestUIDLFormat(t *testing.T) {
	for _, tc := range []struct {
		format           string
		uid, uidValidity uint32
		want             string
	}{
		{DefaultUIDLFormat, 1, 1, "0000000100000001"},
		{DefaultUIDLFormat, 0xabcdef, 1700000000, "00abcdef6553f100"},
		{DefaultUIDLFormat, 0xffffffff, 0xffffffff, "ffffffffffffffff"},
		{"%u", 42, 7, "42"},
		{"%v.%u", 42, 7, "7.42"},
		{"%08UXu", 255, 0, "000000FF"},
		{"%XUu-%Xv", 255, 16, "FF-10"},
		{"%ULXu", 255, 0, "ff"},
		{"%%%u", 5, 0, "%5"},
		{"id%010u", 123, 0, "id0000000123"},
	} {
		f, err := ParseUIDLFormat(tc.format)
		if err != nil {
			t.Errorf("ParseUIDLFormat(%q): %v", tc.format, err)
			continue
		}
		if got := f.Format(tc.uid, tc.uidValidity); got != tc.want {
			t.Errorf("%q with UID %d, UIDVALIDITY %d = %q, want %q", tc.format, tc.uid, tc.uidValidity, got, tc.want)
		}
	}
}

func TestUIDLFormatRejectsInvalidIDs(t *testing.T) {
	for _, tc := range []struct{ format, wantErr string }{
		{"%v", "must contain %u"},
		{"", "must contain %u"},
		{"%u%", "only %u, %v"},
		{"%xu", "only %u, %v"},
		{"%Xg", "no width and no X"},
		{"%08m", "no width and no X"},
		{"%m" + strings.Repeat("x", 25), "RFC 1939 allows 70"},
		{"%8u", "not allowed"}, // space padding
		{"a b%u", "not allowed"},
		{"%u" + strings.Repeat("x", 70), "RFC 1939 allows 70"},
		{"%99u", "RFC 1939 allows 70"},
	} {
		_, err := ParseUIDLFormat(tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseUIDLFormat(%q) = %v, want an error containing %q", tc.format, err, tc.wantErr)
		}
	}
}

// FuzzUIDLFormat checks that every format the parser accepts yields
// RFC 1939 unique-ids for any UID and UIDVALIDITY.
func FuzzUIDLFormat(f *testing.F) {
	for _, s := range []string{DefaultUIDLFormat, "%u", "%v.%u", "%08UXu", "%%%u", "x%9u"} {
		f.Add(s, uint32(1), uint32(1))
	}
	f.Fuzz(func(t *testing.T, format string, uid, uidValidity uint32) {
		u, err := ParseUIDLFormat(format)
		if err != nil {
			return
		}
		id := u.Format(uid, uidValidity)
		if len(id) == 0 || len(id) > 70 {
			t.Fatalf("%q gives %q", format, id)
		}
		for i := 0; i < len(id); i++ {
			if id[i] < 0x21 || id[i] > 0x7e {
				t.Fatalf("%q gives %q with byte %#x", format, id, id[i])
			}
		}
	})
}

// Only a format whose ids differ in the UID alone skips dedupeUIDLs:
// %u once, nothing that two messages may share.
func TestUIDLFormatUnique(t *testing.T) {
	for format, want := range map[string]bool{
		DefaultUIDLFormat: true, "%u": true, "x%05u-%v": true,
		"%u%u": false, "%u%m": false, "%g%u": false, "%m": false, "%g": false,
	} {
		if got := uidlFormat(t, format).unique; got != want {
			t.Errorf("%q: unique %v, want %v", format, got, want)
		}
	}
	// Distinct by construction: every UID of a mailbox, padded or not,
	// gives its own id.
	f := uidlFormat(t, "x%05u-%v")
	seen := make(map[string]bool)
	for _, uid := range []uint32{1, 9, 10, 99999, 100000, 1234567} {
		id := f.Format(uid, 7)
		if seen[id] {
			t.Errorf("UID %d: id %q made twice", uid, id)
		}
		seen[id] = true
	}
}
