package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/internal/redistest"
	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2"
)

// `popbridge oauth login` with the token store in Redis: the operator
// authorises an account once for every replica.
func TestOAuthLoginCommandWritesToTheRedisStore(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t, redistest.Options{})
	s := oauthtest.Start(t, oauthtest.Options{DeviceInterval: time.Second})
	path, _ := oauthLoginConfig(t, s, "device")
	dir := filepath.Dir(path)
	if code, out, errOut := runBinary(t, "", "oauth", "keygen", filepath.Join(dir, "key")); code != exitOK {
		t.Fatalf("oauth keygen: %d %s %s", code, out, errOut)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := "state: {address: " + rds.Addr + "}\n" + regexp.MustCompile(`token_store: \{dir: [^}]*\}`).
		ReplaceAllString(string(data), "token_store: {type: redis, key_file: "+filepath.Join(dir, "key")+"}")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startLoginBinary(t, "-config", path, "scanner")
	if err := s.ApproveDevice(p.await(t, userCodeRE), "scanner@example.com"); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, p.out.String())
	}
	out := p.out.String()
	if want := "saved in the Redis token store (redis " + rds.Addr + " key popbridge:value:oauth2:token:scanner)"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, "owner of its directory") || strings.Contains(out, "root owns") {
		t.Errorf("output speaks of files:\n%s", out)
	}

	cfg, err := config.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	store, err := oauth2.OpenStore(cfg.OAuth2.TokenStore)
	if err != nil {
		t.Fatal(err)
	}
	defer store.(io.Closer).Close()
	tok, err := store.Load("scanner")
	if err != nil || !s.RefreshTokenValid(tok.RefreshToken) || tok.AccessToken == "" {
		t.Fatalf("the Redis store holds no usable token for scanner (err %v)", err)
	}
	if strings.Contains(out, tok.RefreshToken) || strings.Contains(out, tok.AccessToken) {
		t.Errorf("the command printed a token:\n%s", out)
	}
}
