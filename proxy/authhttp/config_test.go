// config_test.go checks the auth_http section's defaults and that every
// error names its setting.

package authhttp

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigOffByDefault(t *testing.T) {
	var c Config
	if errs := c.Check(); len(errs) != 0 || c.Enabled() {
		t.Fatalf("%v, enabled %v", errs, c.Enabled())
	}
	c.CacheTTL = time.Minute
	if errs := c.Check(); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "auth_http.url: ") {
		t.Fatalf("settings without url: %v", errs)
	}
}

func TestConfigDefaultsFromYAML(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `
url: http://127.0.0.1:9000/auth
headers:
  - {name: X-Auth-Key, value_file: ` + secret + `}
servers:
  - {address: "10.0.0.5:993", tls: implicit, server_name: imap1.example.net}
  - {network: 10.1.0.0/16, tls: starttls}
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if errs := c.Check(); len(errs) != 0 {
		t.Fatal(errs)
	}
	if c.Timeout != DefaultTimeout || c.MaxConcurrent != DefaultMaxConcurrent || c.MaxWait != DefaultMaxWait ||
		c.CacheTTL != 0 || c.CacheSize != DefaultCacheSize {
		t.Fatalf("defaults: %+v", c)
	}
	if v, err := c.Headers[0].value(); v != "s3cret" || err != nil {
		t.Fatalf("value_file gives %q, %v", v, err)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"scheme", func(c *Config) { c.URL = "ftp://hook/" }, "auth_http.url: "},
		{"no host", func(c *Config) { c.URL = "http:///auth" }, "auth_http.url: "},
		{"user in URL", func(c *Config) { c.URL = "http://u:p@hook/" }, "auth_http.url: "},
		{"ca_file on http", func(c *Config) { c.CAFile = empty }, "auth_http.ca_file: "},
		{"ca_file not PEM", func(c *Config) { c.URL, c.CAFile = "https://hook/", empty }, "auth_http.ca_file: "},
		{"timeout", func(c *Config) { c.Timeout = -time.Second }, "auth_http.timeout: "},
		{"max_wait", func(c *Config) { c.MaxWait = -time.Second }, "auth_http.max_wait: "},
		{"max_concurrent", func(c *Config) { c.MaxConcurrent = -1 }, "auth_http.max_concurrent: "},
		{"cache_ttl", func(c *Config) { c.CacheTTL = -time.Second }, "auth_http.cache_ttl: "},
		{"cache_size", func(c *Config) { c.CacheSize = -5 }, "auth_http.cache_size: "},
		{"header name", func(c *Config) { c.Headers = []Header{{Name: "X Key", Value: "v"}} }, "auth_http.headers[0]: name"},
		{"own header", func(c *Config) { c.Headers = []Header{{Name: "auth-user", Value: "v"}} }, "auth_http.headers[0]: name"},
		{"both values", func(c *Config) { c.Headers = []Header{{Name: "X-K", Value: "v", ValueFile: empty}} }, "auth_http.headers[0]: needs exactly one"},
		{"no value", func(c *Config) { c.Headers = []Header{{Name: "X-K"}} }, "auth_http.headers[0]: needs exactly one"},
		{"line break", func(c *Config) { c.Headers = []Header{{Name: "X-K", Value: "a\r\nAuth-Status: OK"}} }, "auth_http.headers[0]: value"},
		{"empty file", func(c *Config) { c.Headers = []Header{{Name: "X-K", ValueFile: empty}} }, "auth_http.headers[0]: value_file"},
		{"missing file", func(c *Config) { c.Headers = []Header{{Name: "X-K", ValueFile: empty + ".no"}} }, "auth_http.headers[0]: value_file"},
		{"server both", func(c *Config) { c.Servers = []Server{{Address: "10.0.0.1:993", Network: "10.0.0.0/8", TLS: "none"}} }, "auth_http.servers[0]: needs exactly one"},
		{"server address", func(c *Config) { c.Servers = []Server{{Address: "imap:993", TLS: "none"}} }, "auth_http.servers[0]: address"},
		{"server network", func(c *Config) { c.Servers = []Server{{Network: "10.0.0.0/33", TLS: "none"}} }, "auth_http.servers[0]: network"},
		{"server tls", func(c *Config) { c.Servers = []Server{{Network: "10.0.0.0/8", TLS: "yes"}} }, "auth_http.servers[0]: tls"},
		{"server ca without tls", func(c *Config) { c.Servers = []Server{{Network: "10.0.0.0/8", TLS: "none", CAFile: empty}} }, "auth_http.servers[0]: ca_file"},
		{"server ca missing", func(c *Config) { c.Servers = []Server{{Network: "10.0.0.0/8", TLS: "implicit", CAFile: empty + ".no"}} }, "auth_http.servers[0]: ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{URL: "http://127.0.0.1/auth"}
			tc.edit(&c)
			errs := c.Check()
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.want) {
				t.Fatalf("errors %v, want one starting %q", errs, tc.want)
			}
			if _, err := New(c, Options{}); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestServerMatches(t *testing.T) {
	for _, tc := range []struct {
		s     Server
		addr  string
		match bool
	}{
		{Server{Address: "10.0.0.5:993"}, "10.0.0.5:993", true},
		{Server{Address: "10.0.0.5:993"}, "10.0.0.5:143", false},
		{Server{Address: "[::ffff:10.0.0.5]:993"}, "10.0.0.5:993", true},
		{Server{Network: "10.0.0.0/8"}, "10.200.0.1:143", true},
		{Server{Network: "10.0.0.0/8"}, "11.0.0.1:143", false},
		{Server{Network: "10.0.0.5"}, "10.0.0.5:1", true},
		{Server{Network: "2001:db8::/32"}, "[2001:db8::1]:993", true},
		{Server{Network: "2001:db8::/32"}, "10.0.0.5:993", false},
	} {
		if got := tc.s.matches(netip.MustParseAddrPort(tc.addr)); got != tc.match {
			t.Errorf("%+v matches %s: %v", tc.s, tc.addr, got)
		}
	}
}
