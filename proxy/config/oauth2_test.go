package config

import (
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/oauthtest"
)

// oauth2TestConfig checks a config whose oauth2 section is section, with
// KEY, SECRET, HASH ("local-pw") and DIR filled in.
func oauth2TestConfig(t *testing.T, section string) (*Config, error) {
	t.Helper()
	return parsed(t, "upstream: {address: 127.0.0.1:143}\noauth2:\n"+oauthtest.ExpandSection(t, section))
}

func TestOAuth2PresetsFillEndpointsScopesAndServer(t *testing.T) {
	cfg, err := oauth2TestConfig(t, `
  token_store: {file: DIR/tokens, key_file: KEY}
  providers:
    m365: {preset: microsoft, tenant: contoso.example, client_id: app1}
    m365app: {preset: microsoft, tenant: contoso.example, client_id: app2, client_secret_file: SECRET, grant: client_credentials}
    gmail: {preset: google, client_id: app3, client_secret_file: SECRET}
  accounts:
    - {user: scanner, password_hash: "HASH", provider: m365, upstream_user: scanner@contoso.example}
    - {user: erp, password_hash: "HASH", provider: gmail}
`)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.OAuth2.Providers
	m := p["m365"]
	if m.Grant != GrantDevice || m.TokenURL != "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token" ||
		m.DeviceAuthURL != "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/devicecode" ||
		strings.Join(m.Scopes, " ") != "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access" ||
		m.Upstream != "oauth2-m365" || m.ClientSecret != "" {
		t.Errorf("microsoft preset: %+v", m)
	}
	if a := p["m365app"]; strings.Join(a.Scopes, " ") != "https://outlook.office365.com/.default" || a.ClientSecret != "s3cret" {
		t.Errorf("microsoft app-only preset: %+v", a)
	}
	if g := p["gmail"]; g.Grant != GrantCode || g.TokenURL != "https://oauth2.googleapis.com/token" ||
		strings.Join(g.Scopes, " ") != "https://mail.google.com/" || g.Upstream != "oauth2-gmail" {
		t.Errorf("google preset: %+v", g)
	}
	for _, name := range []string{"m365", "m365app", "gmail"} {
		pc := p[name]
		if pc.Client().Endpoint.AuthStyle != oauth2.AuthStyleInParams || pc.AppClient().AuthStyle != oauth2.AuthStyleInParams {
			t.Errorf("%s: client credentials not sent in the form", name)
		}
	}
	// A generic confidential client uses basic auth, which RFC 6749 makes
	// every server support; no detection that doubles failing requests.
	if idp := (ProviderConfig{Preset: "generic", ClientSecret: "x"}); idp.Client().Endpoint.AuthStyle != oauth2.AuthStyleInHeader {
		t.Errorf("generic confidential client: auth style %v", idp.Client().Endpoint.AuthStyle)
	}
	if u := cfg.Upstreams["oauth2-m365"]; u.Address != "outlook.office365.com:993" || u.TLS != "implicit" {
		t.Errorf("microsoft upstream: %+v", u)
	}
	if u := cfg.Upstreams["oauth2-gmail"]; u.Address != "imap.gmail.com:993" || u.TLS != "implicit" {
		t.Errorf("google upstream: %+v", u)
	}
	a, ok := cfg.OAuth2.Account("SCANNER")
	if !ok || a.UpstreamUser != "scanner@contoso.example" || !a.Hash.Verify("local-pw") || a.Hash.Verify("other") {
		t.Errorf("account scanner: %+v %v", a, ok)
	}
	if a, _ := cfg.OAuth2.Account("erp"); a.UpstreamUser != "erp" {
		t.Errorf("upstream_user default: %q", a.UpstreamUser)
	}
	if _, ok := cfg.OAuth2.Account("nobody"); ok {
		t.Error("an unknown login matched an account")
	}
	// Check is idempotent (a reload checks a config again).
	if err := cfg.Check(); err != nil {
		t.Fatalf("second Check: %v", err)
	}
}

func TestOAuth2ConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ section, want string }{
		{"  providers: {x: {preset: yahoo, client_id: a}}", "oauth2.providers.x.preset"},
		{"  providers: {x: {preset: microsoft}}\n  token_store: {dir: DIR}", "oauth2.providers.x.client_id (line 3): required"},
		{"  providers: {x: {preset: google, client_id: a, grant: device}}\n  token_store: {dir: DIR}", "Google allows IMAP access only with the code grant"},
		{"  providers: {x: {preset: microsoft, client_id: a, grant: client_credentials}}", "needs a client secret"},
		{"  providers: {x: {preset: generic, client_id: a}}\n  token_store: {dir: DIR}", "oauth2.providers.x.token_url (line 3): required"},
		{"  providers: {x: {preset: generic, client_id: a, token_url: 'http://127.0.0.1/t', scopes: [s], grant: device}}\n  token_store: {dir: DIR}", "device_auth_url (line 3): required"},
		{"  providers: {x: {preset: microsoft, client_id: a, upstream: nowhere}}\n  token_store: {dir: DIR}", `"nowhere" is not in upstreams`},
		{"  providers: {x: {preset: microsoft, client_id: a}}", "oauth2.token_store (line 2): file, dir or type redis required"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {file: DIR/t}", "key_file (line 4): required with file"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {file: DIR/t, dir: DIR, key_file: KEY}", "file or dir, not both"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {dir: DIR, key_file: DIR/missing}", "oauth2.token_store.key_file"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {type: sql, key_file: KEY}", `oauth2.token_store.type (line 4): "sql"`},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {type: redis, dir: DIR, key_file: KEY}", "type redis takes neither file nor dir"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {type: redis}", "key_file (line 4): required with type redis"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {type: redis, key_file: KEY}", "redis needs the server in state.address"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {dir: DIR}\n  accounts: [{user: a, password_hash: 'HASH', provider: y}]", `"y" is not in oauth2.providers`},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {dir: DIR}\n  accounts: [{user: a, password_hash: plain, provider: x}]", "oauth2.accounts[0].password_hash"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {dir: DIR}\n  accounts: [{user: ../a, password_hash: 'HASH', provider: x}]", "oauth2.accounts[0].user"},
		{"  providers: {x: {preset: microsoft, client_id: a}}\n  token_store: {dir: DIR}\n  accounts: [{user: a, password_hash: 'HASH', provider: x}, {user: A, password_hash: 'HASH', provider: x}]", "appears twice"},
	} {
		_, err := oauth2TestConfig(t, tc.section)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  got %v\n  want %q", tc.section, err, tc.want)
		}
	}
}

func TestProviderConfigsCarryTheClientAndEndpoints(t *testing.T) {
	cfg, err := oauth2TestConfig(t, `
  token_store: {dir: DIR}
  providers:
    idp: {preset: generic, client_id: app, client_secret_file: SECRET, token_url: "http://127.0.0.1:1/token",
          auth_url: "http://127.0.0.1:1/authorize", scopes: [imap, offline], upstream: default}
`)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.OAuth2.Providers["idp"]
	c, app := p.Client(), p.AppClient()
	if c.ClientID != "app" || c.ClientSecret != "s3cret" || c.Endpoint.TokenURL != "http://127.0.0.1:1/token" ||
		c.Endpoint.AuthURL != "http://127.0.0.1:1/authorize" || strings.Join(c.Scopes, ",") != "imap,offline" {
		t.Errorf("config: %+v", c)
	}
	if app.ClientID != "app" || app.ClientSecret != "s3cret" || app.TokenURL != c.Endpoint.TokenURL || len(app.Scopes) != 2 {
		t.Errorf("appConfig: %+v", app)
	}
	if p.Upstream != DefaultUpstreamName || len(cfg.Upstreams) != 0 {
		t.Errorf("generic provider upstream %q, upstreams %v", p.Upstream, cfg.Upstreams)
	}
}

func TestProviderAuthStyleIsFixedNotProbed(t *testing.T) {
	for _, tc := range []struct {
		p    ProviderConfig
		want oauth2.AuthStyle
	}{
		{ProviderConfig{Preset: "generic"}, oauth2.AuthStyleInParams}, // public client: names itself in the body
		{ProviderConfig{Preset: "generic", ClientSecret: "s"}, oauth2.AuthStyleInHeader},
		{ProviderConfig{Preset: "microsoft", ClientSecret: "s"}, oauth2.AuthStyleInParams},
		{ProviderConfig{Preset: "google", ClientSecret: "s"}, oauth2.AuthStyleInParams},
	} {
		if got := tc.p.Client().Endpoint.AuthStyle; got != tc.want {
			t.Errorf("%s with secret %v: auth style %v, want %v", tc.p.Preset, tc.p.ClientSecret != "", got, tc.want)
		}
	}
}

func TestRedisTokenStoreTakesTheStateSection(t *testing.T) {
	cfg := checked(t, "upstream: {address: 127.0.0.1:143}\nstate: {address: 127.0.0.1:6379, key_prefix: 'pb:'}\noauth2:\n"+
		oauthtest.ExpandSection(t, "  token_store: {type: redis, key_file: KEY}\n  providers: {x: {preset: microsoft, client_id: a}}\n"))
	if s := cfg.OAuth2.TokenStore.State; s.Address != "127.0.0.1:6379" || s.KeyPrefix != "pb:" {
		t.Errorf("token_store.State = %+v, want the state section", s)
	}
}
