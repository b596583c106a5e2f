package oauth2

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2/storekey"
)

func newStoreKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	if err := storekey.Generate(path); err != nil {
		t.Fatal(err)
	}
	if err := storekey.Generate(path); err == nil {
		t.Fatal("storekey.Generate overwrote an existing key")
	}
	return path
}

func testToken(refresh string) *oauth2.Token {
	return &oauth2.Token{AccessToken: "at-" + refresh, TokenType: "Bearer", RefreshToken: refresh,
		Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestTokenStoresKeepTokensPerAccount(t *testing.T) {
	dir := t.TempDir()
	key := newStoreKey(t)
	for name, cfg := range map[string]config.TokenStoreConfig{
		"file":       {File: filepath.Join(dir, "tokens"), KeyFile: key},
		"dir sealed": {Dir: t.TempDir(), KeyFile: key},
		"dir plain":  {Dir: t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := OpenStore(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Load("scanner"); err != errNoToken {
				t.Fatalf("empty store: Load = %v, want errNoToken", err)
			}
			for _, acc := range []string{"scanner", "erp@example.com"} {
				if err := st.Save(acc, testToken("rt-"+acc)); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Save("scanner", testToken("rt-rotated")); err != nil {
				t.Fatal(err)
			}
			// A second store on the same files, as after a restart.
			st2, _ := OpenStore(cfg)
			for acc, want := range map[string]string{"scanner": "rt-rotated", "erp@example.com": "rt-erp@example.com"} {
				tok, err := st2.Load(acc)
				if err != nil {
					t.Fatal(err)
				}
				if tok.RefreshToken != want || tok.AccessToken != "at-"+want || !tok.Expiry.Equal(testToken("").Expiry) {
					t.Errorf("%s: loaded %+v, want refresh token %s", acc, tok, want)
				}
			}
			// Files are private, and sealed ones do not show the tokens.
			files, _ := filepath.Glob(filepath.Join(cfg.File+cfg.Dir, "*"))
			if cfg.File != "" {
				files = []string{cfg.File}
			}
			for _, f := range files {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
				}
				data, _ := os.ReadFile(f)
				if sealedStore := cfg.KeyFile != ""; sealedStore == bytes.Contains(data, []byte("rt-")) {
					t.Errorf("%s: sealed=%v but content %q", f, sealedStore, data)
				}
			}
		})
	}
}

func TestSealedTokenStoreRefusesWrongKeyAndSwappedFiles(t *testing.T) {
	dir := t.TempDir()
	st, _ := OpenStore(config.TokenStoreConfig{Dir: dir, KeyFile: newStoreKey(t)})
	st.Save("a", testToken("rt-a"))
	st.Save("b", testToken("rt-b"))
	// Account b's file put in a's place must not pass for a's token.
	data, _ := os.ReadFile(filepath.Join(dir, "b"))
	os.WriteFile(filepath.Join(dir, "a"), data, 0o600)
	if tok, err := st.Load("a"); err == nil {
		t.Fatalf("swapped file loaded as %+v", tok)
	}
	other, _ := OpenStore(config.TokenStoreConfig{Dir: dir, KeyFile: newStoreKey(t)})
	if _, err := other.Load("b"); err == nil || !strings.Contains(err.Error(), "wrong key") {
		t.Fatalf("Load with another key: %v", err)
	}
}

// Concurrent Saves of different accounts to one file (as from the daemon
// and `popbridge oauth login` at once) must lose none of them.
func TestTokenFileConcurrentSavesLoseNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	key := newStoreKey(t)
	var wg sync.WaitGroup
	for i := range 8 {
		// Separate stores: separate processes share only the file lock.
		st, _ := OpenStore(config.TokenStoreConfig{File: path, KeyFile: key})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				if err := st.Save(string(rune('a'+i)), testToken(string(rune('0'+j)))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st, _ := OpenStore(config.TokenStoreConfig{File: path, KeyFile: key})
	for i := range 8 {
		tok, err := st.Load(string(rune('a' + i)))
		if err != nil || tok.RefreshToken != "4" {
			t.Errorf("account %c: %v %+v", 'a'+i, err, tok)
		}
	}
}

func TestSealedFormatIsVersioned(t *testing.T) {
	var s sealed
	data, _ := seal(bytes.Repeat([]byte{7}, 32), []byte("x"), "aad")
	if err := json.Unmarshal(data, &s); err != nil || s.Format != sealFormat {
		t.Fatalf("sealed form %q", data)
	}
}
