package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// writeToken writes tok to a new file and returns its path.
func writeToken(t *testing.T, tok string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodToken = "0123456789abcdef0123456789abcdef"

func TestConfigCheck(t *testing.T) {
	good := writeToken(t, goodToken+"\n")
	short := writeToken(t, "abc")
	twoWords := writeToken(t, "0123456789abcdef 0123456789abcdef")
	missing := filepath.Join(t.TempDir(), "none")
	tests := []struct {
		cfg  Config
		want string // "" for no error, else a substring of it
	}{
		{Config{}, ""},
		{Config{Listen: "127.0.0.1:9111"}, ""},
		{Config{Listen: "[::1]:9111"}, ""},
		{Config{Listen: "localhost:9111"}, ""},
		{Config{Listen: "127.0.0.1:9111", TokenFile: good}, ""},
		{Config{Listen: "0.0.0.0:9111", TokenFile: good}, ""},
		{Config{Listen: "admin.example.com:9111", TokenFile: good}, ""},
		{Config{TokenFile: good}, "admin.token_file: set, but admin.listen is empty"},
		{Config{Listen: "127.0.0.1"}, `admin.listen: "127.0.0.1": want host:port`},
		{Config{Listen: "127.0.0.1:99999"}, `admin.listen: port "99999"`},
		{Config{Listen: "127.0.0.1:http"}, `admin.listen: port "http"`},
		{Config{Listen: "0.0.0.0:9111"}, "not a loopback address: a non-loopback admin listener needs admin.token_file"},
		{Config{Listen: ":9111"}, "needs admin.token_file"},
		{Config{Listen: "[::]:9111"}, "needs admin.token_file"},
		{Config{Listen: "admin.example.com:9111"}, "needs admin.token_file"},
		{Config{Listen: "10.1.2.3:9111"}, "needs admin.token_file"},
		{Config{Listen: "127.0.0.1:9111", TokenFile: missing}, "admin.token_file: open " + missing},
		{Config{Listen: "127.0.0.1:9111", TokenFile: short}, "the token has 3 characters; want at least 16"},
		{Config{Listen: "127.0.0.1:9111", TokenFile: twoWords}, "the token must be one word"},
	}
	for _, tt := range tests {
		testkit.WantError(t, tt.cfg, tt.cfg.Check(), tt.want)
	}
}

func TestReadTokenTrims(t *testing.T) {
	tok, err := ReadToken(writeToken(t, "  "+goodToken+"\r\n"))
	if err != nil || tok != goodToken {
		t.Fatalf("ReadToken = %q, %v; want %q", tok, err, goodToken)
	}
}

func TestConfigFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	doc := "upstream:\n  address: imap.example.com:993\nadmin:\n  listen: 127.0.0.1:9111\n  token_file: /etc/popbridge/admin-token\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFromFile(path)
	want := Config{Listen: "127.0.0.1:9111", TokenFile: "/etc/popbridge/admin-token"}
	if err != nil || cfg != want {
		t.Fatalf("ConfigFromFile = %+v, %v; want %+v", cfg, err, want)
	}

	empty := filepath.Join(t.TempDir(), "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	if cfg, err := ConfigFromFile(empty); err != nil || cfg != (Config{}) {
		t.Errorf("empty file: %+v, %v; want no admin section and no error", cfg, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("admin: [\n"), 0o600)
	if _, err := ConfigFromFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("broken file: %v, want an error naming the file", err)
	}
}
