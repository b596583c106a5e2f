package storekey

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestStoreKeyMustBe256Bits(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"short": "c2hvcnQ=\n", "not base64": "!!!!\n", "empty": ""} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := Load(path); err == nil {
			t.Errorf("%s key accepted", name)
		}
	}
	raw := filepath.Join(dir, "raw")
	os.WriteFile(raw, bytes.Repeat([]byte{7}, 32), 0o600)
	if _, err := Load(raw); err != nil {
		t.Errorf("32 raw octets refused: %v", err)
	}
}
