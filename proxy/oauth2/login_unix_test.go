//go:build unix

package oauth2

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/oauthtest"
)

func fileOwner(st os.FileInfo) int { return int(st.Sys().(*syscall.Stat_t).Uid) }

func TestOAuthLoginLeavesTheTokenFileToTheStoreDirectorysOwner(t *testing.T) {
	t.Parallel()
	s := oauthtest.Start(t, oauthtest.Options{AuthorizeUser: loginUser})
	cfg := loginTestConfig(t, s.URL, "{dir: DIR/store}", "grant: code")
	dir := cfg.OAuth2.TokenStore.Dir
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// As root (the operator with sudo), the directory belongs to the
	// daemon's user; otherwise the file is simply the caller's.
	wantUID := os.Getuid()
	if wantUID == 0 {
		wantUID = 4242
		if err := os.Chown(dir, wantUID, wantUID); err != nil {
			t.Fatal(err)
		}
	}
	l := startLogin(context.Background(), cfg, LoginOptions{Timeout: time.Minute})
	redirect, _, _ := follow(t, l.await(t, authURLRE))
	follow(t, redirect.String())
	if err := l.result(t); err != nil {
		t.Fatalf("login: %v\n%s", err, l.out.String())
	}
	st, err := os.Stat(filepath.Join(dir, "scanner"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fileOwner(st); uid != wantUID || st.Mode().Perm() != 0o600 {
		t.Errorf("token file owner %d mode %v, want %d and 0600", uid, st.Mode().Perm(), wantUID)
	}
	if os.Getuid() == 0 && !strings.Contains(l.out.String(), "It belongs to uid 4242, the owner of its directory") {
		t.Errorf("output does not say who owns the file:\n%s", l.out.String())
	}
}
