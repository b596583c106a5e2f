package imapback

import (
	"strings"
	"testing"
)

func TestMergeUIDLs(t *testing.T) {
	junk := folderTag("Junk")
	long := strings.Repeat("a", 70)
	tests := []struct {
		name    string
		folders []string
		ids     [][]string
		want    []string
	}{
		{"first folder unchanged, second tagged", []string{"INBOX", "Junk"},
			[][]string{{"0000000100000005", "0000000200000005"}, {"0000000100000005"}},
			[]string{"0000000100000005", "0000000200000005", "0000000100000005" + junk}},
		{"same id in both folders (a copy under %m)", []string{"INBOX", "Junk"},
			[][]string{{"hash"}, {"hash"}},
			[]string{"hash", "hash" + junk}},
		{"an imported id that ends like the tag", []string{"INBOX", "Junk"},
			[][]string{{"x" + junk}, {"x"}},
			[]string{"x" + junk, "x" + junk + "-2"}},
		{"too long for the tag", []string{"INBOX", "Junk"},
			[][]string{{long}, {long, long[:69] + "b"}},
			[]string{long, long[:61] + junk, long[:61] + junk[:7] + "-2"}},
		{"an empty folder", []string{"INBOX", "Junk", "Spam"},
			[][]string{{"1"}, nil, {"1"}},
			[]string{"1", "1" + folderTag("Spam")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeUIDLs(tt.folders, tt.ids)
			for i := range got {
				if len(got[i]) > 70 || checkUIDL(got[i]) != nil {
					t.Errorf("id %q not a valid unique-id", got[i])
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFolderTag(t *testing.T) {
	if folderTag("inbox") != folderTag("INBOX") {
		t.Error("INBOX's tag depends on its case")
	}
	if folderTag("junk") == folderTag("Junk") {
		t.Error("folders other than INBOX are case-sensitive in IMAP; their tags should differ")
	}
	if tag := folderTag("Ünïcode/Ordner"); len(tag) != 9 || checkUIDL(tag) != nil {
		t.Errorf("tag %q: want 9 printable ASCII characters", tag)
	}
}

func TestCheckMailboxes(t *testing.T) {
	for _, tt := range []struct {
		names []string
		ok    bool
	}{
		{nil, true},
		{[]string{"INBOX", "Junk"}, true},
		{[]string{"INBOX", "inbox"}, false},
		{[]string{"INBOX", "Ju*nk"}, false},
		{[]string{"a", "b", "c", "d", "e"}, false},
	} {
		if err := CheckMailboxes(tt.names); (err == nil) != tt.ok {
			t.Errorf("CheckMailboxes(%q) = %v, want ok %v", tt.names, err, tt.ok)
		}
	}
}
