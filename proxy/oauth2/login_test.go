package oauth2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2/storekey"
)

func TestOAuthLoginRefusesBeforeAnyoneSignsIn(t *testing.T) {
	// The provider's endpoints are a closed port: every case must be
	// refused before a request would go out.
	const providers = `
  providers:
    dev: {preset: generic, client_id: app, token_url: "http://127.0.0.1:1/token", device_auth_url: "http://127.0.0.1:1/device",
          scopes: [imap], grant: device, upstream: default}
    app: {preset: generic, client_id: app, client_secret_file: SECRET, token_url: "http://127.0.0.1:1/token",
          scopes: [imap], grant: client_credentials, upstream: default}
    gmail: {preset: google, client_id: app, client_secret_file: SECRET}
  accounts:
    - {user: scanner, password_hash: "HASH", provider: dev}
    - {user: erp, password_hash: "HASH", provider: app}
    - {user: mail, password_hash: "HASH", provider: gmail}
`
	otherKey := filepath.Join(t.TempDir(), "other.key")
	if err := storekey.Generate(otherKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, store, account string
		grant                config.Grant
		redirectHost         string
		setup                func(t *testing.T, cfg *config.Config)
		want                 string
	}{
		{name: "unknown account", store: "{dir: DIR}", account: "nobody", want: `no account "nobody" in oauth2.accounts (there are: scanner, erp, mail)`},
		{name: "missing store directory", store: "{dir: DIR/missing}", account: "scanner", want: "cannot write the token store directory"},
		{name: "store directory under a file", store: "{dir: DIR/file/sub}", account: "scanner",
			setup: func(t *testing.T, cfg *config.Config) {
				os.WriteFile(filepath.Join(filepath.Dir(filepath.Dir(cfg.OAuth2.TokenStore.Dir)), "file"), nil, 0o600)
			},
			want: "not a directory"},
		{name: "store file sealed with another key", store: "{file: DIR/tokens, key_file: KEY}", account: "scanner",
			setup: func(t *testing.T, cfg *config.Config) {
				other := cfg.OAuth2.TokenStore
				other.KeyFile = otherKey
				s, err := OpenStore(other)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Save("someone", &oauth2.Token{RefreshToken: "rt"}); err != nil {
					t.Fatal(err)
				}
			},
			want: "cannot read the token store file"},
		{name: "grant other than device or code", store: "{dir: DIR}", account: "scanner", grant: "password", want: `grant "password": want device or code`},
		{name: "interactive grant for a client_credentials provider", store: "{dir: DIR}", account: "erp", grant: "device",
			want: "provider app uses the client_credentials grant, which has no interactive login"},
		{name: "device grant at Google", store: "{dir: DIR}", account: "mail", grant: "device", want: "Google, which refuses the Gmail scope in the device grant"},
		{name: "code grant without auth_url", store: "{dir: DIR}", account: "scanner", grant: "code", want: "provider dev has no auth_url"},
		{name: "redirect to a host that is not loopback", store: "{dir: DIR}", account: "mail", redirectHost: "popbridge.example.com",
			want: `redirect host "popbridge.example.com": want 127.0.0.1 or localhost`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := oauth2TestConfig(t, "  token_store: "+tc.store+providers)
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, cfg)
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = Login(ctx, cfg, tc.account, LoginOptions{Grant: tc.grant, RedirectHost: tc.redirectHost, Out: &out})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Login: %v\nwant an error containing %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed instructions although it refused: %q", out.String())
			}
		})
	}
}

func TestCodeAuthURLSendsAnS256ChallengeOfTheVerifier(t *testing.T) {
	for _, preset := range []string{"generic", "google"} {
		p := &config.ProviderConfig{Preset: preset, ClientID: "app", AuthURL: "https://idp.example/authorize", TokenURL: "https://idp.example/token",
			Scopes: []string{"imap", "offline"}}
		c := p.Client()
		c.RedirectURL = "http://127.0.0.1:4711/"
		verifier := oauth2.GenerateVerifier()
		u, err := url.Parse(codeAuthURL(c, p, "st4te", verifier))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		sum := sha256.Sum256([]byte(verifier))
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Errorf("%s: challenge %q method %q, want S256 of the verifier", preset, q.Get("code_challenge"), q.Get("code_challenge_method"))
		}
		if strings.Contains(u.String(), verifier) {
			t.Errorf("%s: the verifier itself is in the authorisation URL", preset)
		}
		if q.Get("state") != "st4te" || q.Get("redirect_uri") != "http://127.0.0.1:4711/" || q.Get("response_type") != "code" ||
			q.Get("client_id") != "app" || q.Get("scope") != "imap offline" {
			t.Errorf("%s: authorisation URL %s", preset, u)
		}
		// Google issues a refresh token only for offline access, and on a
		// repeated consent only with prompt=consent.
		google := q.Get("access_type") == "offline" && q.Get("prompt") == "consent"
		if google != (preset == "google") {
			t.Errorf("%s: access_type=%q prompt=%q", preset, q.Get("access_type"), q.Get("prompt"))
		}
	}
}
