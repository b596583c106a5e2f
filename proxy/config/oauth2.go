package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/endpoints"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/oauth2/passhash"
	"github.com/popbridge/popbridge/proxy/oauth2/storekey"
	"github.com/popbridge/popbridge/proxy/state"
)

// OAuth2Config lets devices that only know USER/PASS read mailboxes whose
// server wants OAuth2 (Microsoft 365, Gmail): the device logs in with a
// local password that popbridge checks, and popbridge logs in upstream
// with an access token it obtains and refreshes itself. docs/oauth2.md
// walks through the setup.
type OAuth2Config struct {
	TokenStore TokenStoreConfig          `yaml:"token_store"`
	Providers  map[string]ProviderConfig `yaml:"providers"`
	Accounts   []AccountConfig           `yaml:"accounts"`
}

// TokenStoreConfig says where refresh tokens live. Exactly one of File,
// Dir and Type redis is set when any account needs a refresh token.
type TokenStoreConfig struct {
	// Type redis keeps the tokens in the Redis or Valkey server of the
	// state section, sealed with KeyFile, where every replica reads and
	// renews them; "" means File or Dir.
	Type string `yaml:"type"`
	// File holds the tokens of all accounts in one file, encrypted with
	// KeyFile and written with mode 0600.
	File string `yaml:"file"`
	// Dir holds one file per account, named after it: a directory a
	// Kubernetes Secret is mounted into. Its files are encrypted when
	// KeyFile is set and plain JSON otherwise (the Secret protects them).
	Dir string `yaml:"dir"`
	// KeyFile holds the 256-bit AES key, base64 (popbridge oauth keygen).
	KeyFile string `yaml:"key_file"`

	// State is the config's state section, set by Check for Type redis.
	State state.Config `yaml:"-"`
}

// TokenStoreRedis is the Type of the token store in Redis.
const TokenStoreRedis = "redis"

// ProviderConfig is an OAuth2 authorisation server and the client
// registered there.
type ProviderConfig struct {
	// Preset fills in endpoints, scopes and the IMAP server: microsoft,
	// google or generic (everything given here).
	Preset string `yaml:"preset"`
	// Tenant is Microsoft's directory (tenant) id or domain; default
	// "organizations" (any work or school account).
	Tenant   string `yaml:"tenant"`
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret; none for a public client.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes default to the preset's IMAP scopes.
	Scopes []string `yaml:"scopes"`
	// Grant is how accounts get their tokens: device (RFC 8628), code
	// (authorisation code with PKCE and a loopback redirect) or
	// client_credentials (app-only, no refresh token, no interactive
	// step). Default: device for microsoft, code otherwise.
	Grant Grant `yaml:"grant"`
	// Endpoints override the preset's.
	AuthURL       string `yaml:"auth_url"`
	TokenURL      string `yaml:"token_url"`
	DeviceAuthURL string `yaml:"device_auth_url"`
	// Upstream names the IMAP server in upstreams (or "default"). Default:
	// the preset's server, outlook.office365.com:993 or imap.gmail.com:993;
	// for generic, the default upstream.
	Upstream string `yaml:"upstream"`

	// ClientSecret is read from ClientSecretFile by Check.
	ClientSecret string `yaml:"-"`
}

// AccountConfig is one local POP3 login that maps to an OAuth2 mailbox.
type AccountConfig struct {
	// User is the POP3 login the device sends (a device suffix, see
	// policy.devices, comes on top).
	User string `yaml:"user"`
	// PasswordHash is the local password as argon2id or bcrypt
	// (popbridge hash-password); the password itself is never stored.
	PasswordHash string `yaml:"password_hash"`
	// Provider names an entry of providers.
	Provider string `yaml:"provider"`
	// UpstreamUser is the mailbox's login upstream; default User.
	UpstreamUser string `yaml:"upstream_user"`

	// Hash is PasswordHash parsed by Check.
	Hash passhash.Hash `yaml:"-"`
}

// Grant is how an account gets its tokens.
type Grant string

// Grants.
const (
	GrantDevice            Grant = "device"
	GrantCode              Grant = "code"
	GrantClientCredentials Grant = "client_credentials"
)

// Grants lists every valid Grant.
var Grants = []Grant{GrantDevice, GrantCode, GrantClientCredentials}

// Presets lists the values of a provider's preset.
var Presets = []string{"microsoft", "google", "generic"}

// preset is what a provider preset fills in.
type preset struct {
	endpoint oauth2.Endpoint
	scopes   []string // for delegated grants (device, code)
	appScope []string // for client_credentials
	server   string   // the IMAP server, implicit TLS
	grant    Grant
}

func presetFor(p ProviderConfig) (preset, bool) {
	switch p.Preset {
	case "microsoft":
		tenant := p.Tenant
		if tenant == "" {
			tenant = "organizations"
		}
		return preset{
			endpoint: endpoints.AzureAD(tenant),
			// offline_access is what makes Microsoft issue a refresh token.
			scopes:   []string{"https://outlook.office365.com/IMAP.AccessAsUser.All", "offline_access"},
			appScope: []string{"https://outlook.office365.com/.default"},
			server:   "outlook.office365.com:993",
			grant:    GrantDevice,
		}, true
	case "google":
		return preset{
			endpoint: endpoints.Google,
			scopes:   []string{"https://mail.google.com/"},
			server:   "imap.gmail.com:993",
			grant:    GrantCode,
		}, true
	case "generic":
		return preset{grant: GrantCode}, true
	}
	return preset{}, false
}

// accountNameRE keeps account names usable as file names in a token
// store directory. Kubernetes Secret keys allow neither @ nor +; a Secret
// volume's items can map a key to such a file name (docs/oauth2.md).
var accountNameRE = regexp.MustCompile(`^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*$`)

// checkOAuth2 validates the oauth2 section and fills in presets. Preset
// servers become upstreams named "oauth2-PROVIDER".
func (c *Config) checkOAuth2() []error {
	o := &c.OAuth2
	if len(o.Providers) == 0 && len(o.Accounts) == 0 {
		return nil
	}
	var errs []error
	needStore := false
	names := make([]string, 0, len(o.Providers))
	for name := range o.Providers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := o.Providers[name]
		key := "oauth2.providers." + name
		pre, ok := presetFor(p)
		if !ok {
			errs = append(errs, fmt.Errorf("%s.preset: %q is not one of %s", key, p.Preset, join(Presets)))
			continue
		}
		if p.Tenant != "" && p.Preset != "microsoft" {
			errs = append(errs, fmt.Errorf("%s.tenant: only for the microsoft preset", key))
		}
		if p.ClientID == "" {
			errs = append(errs, fmt.Errorf("%s.client_id: required", key))
		}
		if p.Grant == "" {
			p.Grant = pre.grant
		}
		if err := oneOf(key+".grant", p.Grant, Grants); err != nil {
			errs = append(errs, err)
		}
		if p.Grant != GrantClientCredentials {
			needStore = true
		}
		if p.Preset == "google" && p.Grant != GrantCode {
			// Google's device flow refuses the Gmail scope, and app-only
			// access needs a service account (JWT), not client credentials.
			errs = append(errs, fmt.Errorf("%s.grant: Google allows IMAP access only with the code grant", key))
		}
		if p.ClientSecretFile != "" {
			secret, err := os.ReadFile(p.ClientSecretFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.client_secret_file: %v", key, err))
			}
			p.ClientSecret = strings.TrimSpace(string(secret))
		} else if p.Grant == GrantClientCredentials {
			errs = append(errs, fmt.Errorf("%s.client_secret_file: the client_credentials grant needs a client secret", key))
		}
		if p.AuthURL == "" {
			p.AuthURL = pre.endpoint.AuthURL
		}
		if p.TokenURL == "" {
			p.TokenURL = pre.endpoint.TokenURL
		}
		if p.DeviceAuthURL == "" {
			p.DeviceAuthURL = pre.endpoint.DeviceAuthURL
		}
		if len(p.Scopes) == 0 {
			p.Scopes = pre.scopes
			if p.Grant == GrantClientCredentials && pre.appScope != nil {
				p.Scopes = pre.appScope
			}
		}
		if p.TokenURL == "" {
			errs = append(errs, fmt.Errorf("%s.token_url: required for the generic preset", key))
		}
		if p.Grant == GrantDevice && p.DeviceAuthURL == "" {
			errs = append(errs, fmt.Errorf("%s.device_auth_url: required for the device grant", key))
		}
		if p.Grant == GrantCode && p.AuthURL == "" {
			errs = append(errs, fmt.Errorf("%s.auth_url: required for the code grant", key))
		}
		if len(p.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s.scopes: required for the generic preset", key))
		}
		switch {
		case p.Upstream == "" && pre.server != "":
			p.Upstream = "oauth2-" + name
			if c.Upstreams == nil {
				c.Upstreams = make(map[string]UpstreamConfig)
			}
			if _, taken := c.Upstreams[p.Upstream]; taken {
				errs = append(errs, fmt.Errorf("%s.upstream: upstreams.%s exists; name it here", key, p.Upstream))
				break
			}
			u := UpstreamConfig{Address: pre.server, TLS: imapback.TLSImplicit}
			errs = append(errs, u.check("upstreams."+p.Upstream)...)
			c.Upstreams[p.Upstream] = u
		case p.Upstream == "":
			p.Upstream = DefaultUpstreamName
		case p.Upstream != DefaultUpstreamName:
			if _, ok := c.Upstreams[p.Upstream]; !ok {
				errs = append(errs, fmt.Errorf("%s.upstream: %q is not in upstreams", key, p.Upstream))
			}
		}
		o.Providers[name] = p
	}

	seen := make(map[string]bool)
	for i := range o.Accounts {
		a := &o.Accounts[i]
		key := fmt.Sprintf("oauth2.accounts[%d]", i)
		if !accountNameRE.MatchString(a.User) {
			errs = append(errs, fmt.Errorf("%s.user: %q must be letters, digits and . _ @ + - (it names the token)", key, a.User))
		} else if seen[strings.ToLower(a.User)] {
			errs = append(errs, fmt.Errorf("%s.user: %q appears twice", key, a.User))
		}
		seen[strings.ToLower(a.User)] = true
		if _, ok := o.Providers[a.Provider]; !ok {
			errs = append(errs, fmt.Errorf("%s.provider: %q is not in oauth2.providers", key, a.Provider))
		}
		var err error
		if a.Hash, err = passhash.Parse(a.PasswordHash); err != nil {
			errs = append(errs, fmt.Errorf("%s.password_hash: %v", key, err))
		}
		if a.UpstreamUser == "" {
			a.UpstreamUser = a.User
		}
	}

	s := &o.TokenStore
	switch {
	case s.Type != "" && s.Type != TokenStoreRedis:
		errs = append(errs, fmt.Errorf("oauth2.token_store.type: %q: want redis, or leave it out for file or dir", s.Type))
	case s.Type == TokenStoreRedis && (s.File != "" || s.Dir != ""):
		errs = append(errs, errors.New("oauth2.token_store: type redis takes neither file nor dir"))
	case s.Type == TokenStoreRedis && s.KeyFile == "":
		errs = append(errs, errors.New("oauth2.token_store.key_file: required with type redis (popbridge oauth keygen)"))
	case s.Type == TokenStoreRedis && c.State.Address == "":
		errs = append(errs, errors.New("oauth2.token_store.type: redis needs the server in state.address"))
	case s.Type == TokenStoreRedis:
		s.State = c.State
	case s.File != "" && s.Dir != "":
		errs = append(errs, errors.New("oauth2.token_store: file or dir, not both"))
	case s.File != "" && s.KeyFile == "":
		errs = append(errs, errors.New("oauth2.token_store.key_file: required with file (popbridge oauth keygen)"))
	case s.File == "" && s.Dir == "" && needStore:
		errs = append(errs, errors.New("oauth2.token_store: file, dir or type redis required to keep refresh tokens"))
	}
	if s.KeyFile != "" {
		if _, err := storekey.Load(s.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("oauth2.token_store.key_file: %v", err))
		}
	}
	return errs
}

// Account returns the account whose local login is user, ignoring case.
func (o *OAuth2Config) Account(user string) (*AccountConfig, bool) {
	for i := range o.Accounts {
		if strings.EqualFold(o.Accounts[i].User, user) {
			return &o.Accounts[i], true
		}
	}
	return nil, false
}

// Client is the provider as x/oauth2 sees it, for the delegated grants.
func (p *ProviderConfig) Client() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint: oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, DeviceAuthURL: p.DeviceAuthURL,
			AuthStyle: p.authStyle()},
		Scopes: p.Scopes,
	}
}

// AppClient is the provider for the client_credentials grant.
func (p *ProviderConfig) AppClient() *clientcredentials.Config {
	return &clientcredentials.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		TokenURL:     p.TokenURL,
		Scopes:       p.Scopes,
		AuthStyle:    p.authStyle(),
	}
}

// authStyle is how the client authenticates at the token endpoint. Set
// rather than detected: x/oauth2's detection repeats every failed request
// the other way, so each "authorization_pending" poll of the device grant
// would be two requests, and the second one earns a slow_down.
func (p *ProviderConfig) authStyle() oauth2.AuthStyle {
	// A public client only names itself (RFC 6749 §2.3, §4.1.3);
	// Microsoft and Google take the secret in the body too.
	if p.ClientSecret == "" || p.Preset == "microsoft" || p.Preset == "google" {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader // what RFC 6749 §2.3.1 makes every server support
}
