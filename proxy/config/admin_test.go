package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit"
)

// TestCheckRefusesAnUnsafeAdminListener: the admin section is checked with
// the rest of the file, so check-config refuses what the start would.
func TestCheckRefusesAnUnsafeAdminListener(t *testing.T) {
	token := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ admin, want string }{
		{"", ""},
		{"admin:\n  listen: 127.0.0.1:9111\n", ""},
		{"admin:\n  listen: 0.0.0.0:9111\n  token_file: " + token + "\n", ""},
		{"admin:\n  listen: 0.0.0.0:9111\n", "admin.listen (line 4): \"0.0.0.0:9111\" is not a loopback address"},
		{"admin:\n  listen: 127.0.0.1:9111\n  token_file: " + token + ".missing\n", "admin.token_file (line 5):"},
	} {
		_, err := parsed(t, "upstream:\n  address: imap.example.com:993\n"+tc.admin)
		testkit.WantError(t, tc.admin, err, tc.want)
	}
}
