package config

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// brokenFiles are files that must not pass Check, each with the exact
// message: the key path, the line, and no Go type name.
var brokenFiles = []struct{ name, yaml, want string }{
	{"empty file", "", "the file has no settings (upstream.address at least is required)"},
	{"only a comment", "# nothing yet\n", "the file has no settings (upstream.address at least is required)"},
	{"not a mapping at all", "upstream address a:993\n", `the file (line 1): must be a section of keys, not "upstream address a:993"`},
	{"misspelt key", "log:\n  level: info\n\nupstream:\n  address: a:993\n  mailbx: INBOX\n",
		"upstream.mailbx (line 6): unknown key; did you mean mailbox?"},
	{"misspelt section", "upstream:\n  address: a:993\nlimts:\n  idle_timeout: 10m\n",
		"limts (line 3): unknown key; did you mean limits?"},
	{"unknown key, no suggestion", "upstream:\n  address: a:993\n  colour: blue\n", "upstream.colour (line 3): unknown key"},
	{"misspelt key in a list item", "listen:\n  - address: 127.0.0.1:110\n    tsl: none\nupstream:\n  address: a:993\n",
		"listen[0].tsl (line 3): unknown key; did you mean tls?"},
	{"misspelt key in a named upstream", "upstream:\n  address: a:993\nupstreams:\n  b:\n    adress: b:993\n",
		"upstreams.b.adress (line 5): unknown key; did you mean address?"},
	{"duration not a duration", "upstream:\n  address: a:993\nlimits:\n  idle_timeout: ten minutes\n",
		`limits.idle_timeout (line 4): "ten minutes" is not a duration (such as 30s, 10m or 1h)`},
	{"number not a number", "upstream:\n  address: a:993\nlimits:\n  max_connections: many\n",
		`limits.max_connections (line 4): "many" is not a whole number`},
	{"bool not a bool", "upstream:\n  address: a:993\n  reconnect: sometimes\n",
		`upstream.reconnect (line 3): "sometimes" is not true or false`},
	{"list where a section goes", "upstream:\n  - address: a:993\n", "upstream (line 2): must be a section of keys, not a list"},
	{"value where a list goes", "listen: 127.0.0.1:110\nupstream:\n  address: a:993\n",
		`listen (line 1): must be a list, not "127.0.0.1:110"`},
	{"section where a value goes", "upstream:\n  address:\n    host: a\n",
		"upstream.address (line 3): must be a single value, not a section of keys"},
	{"key twice", "upstream:\n  address: a:993\n  address: b:993\n", "upstream.address (line 3): appears twice (first at line 2)"},
	{"wrong indentation", "upstream:\n  address: a:993\n mailbox: INBOX\n", `line 3: "mailbox" is indented wrongly: it lines up with no enclosing section`},
	{"wrong indentation deeper", "upstream:\n  address: a:993\n  mailbox: INBOX\nlimits:\n    idle_timeout: 10m\n   max_connections: 5\n",
		`line 6: "max_connections" is indented wrongly: it lines up with no enclosing section`},
	{"tab", "upstream:\n\taddress: a:993\n", "line 2: a tab in the indentation; indent with spaces"},
	{"unclosed list", "upstream: [\n", "line 1: did not find expected node content"},
	{"missing upstream", "log:\n  level: debug\n", "upstream.address: required (host:port of the IMAP server)"},
	{"bad enum", "upstream:\n  address: a:993\n  tls: maybe\n", `upstream.tls (line 3): "maybe" is not one of implicit, starttls, none`},
	{"bad log level", "upstream:\n  address: a:993\nlog:\n  level: loud\n", `log.level (line 4): "loud" is not one of debug, info, warn, error`},
	{"negative duration", "upstream:\n  address: a:993\nlimits:\n  drain_timeout: -1s\n", "limits.drain_timeout (line 4): must not be negative"},
	{"listen port out of range", "listen:\n  - address: 127.0.0.1:99999\nupstream:\n  address: a:993\n",
		`listen[0].address (line 2): "127.0.0.1:99999": port 99999 is out of range (0 to 65535)`},
	{"upstream port out of range", "upstream:\n  address: a:99999\n", `upstream.address (line 2): "a:99999": port 99999 is out of range (0 to 65535)`},
	{"metrics port out of range", "upstream:\n  address: a:993\nmetrics:\n  listen: 127.0.0.1:70000\n",
		`metrics.listen (line 4): "127.0.0.1:70000": port 70000 is out of range (0 to 65535)`},
	{"listen host that does not resolve", "listen:\n  - address: pop.nowhere.invalid:110\nupstream:\n  address: a:993\n",
		`listen[0].address (line 2): "pop.nowhere.invalid:110": host "pop.nowhere.invalid" does not resolve`},
	{"listen address not of this machine", "listen:\n  - address: 192.0.2.7:110\nupstream:\n  address: a:993\n",
		`listen[0].address (line 2): "192.0.2.7:110": 192.0.2.7 is not an address of this machine`},
	{"same listen address twice", "listen:\n  - address: 127.0.0.1:1110\n  - address: 127.0.0.1:1110\nupstream:\n  address: a:993\n",
		`listen[1].address (line 3): "127.0.0.1:1110" is bound by listen[0].address too`},
	{"same address by name and by number", "listen:\n  - address: 127.0.0.1:1110\n  - address: localhost:1110\nupstream:\n  address: a:993\n",
		`listen[1].address (line 3): "localhost:1110" is bound by listen[0].address too`},
	{"wildcard and a specific address", "listen:\n  - address: :1110\n  - address: 127.0.0.1:1110\nupstream:\n  address: a:993\n",
		`listen[1].address (line 3): "127.0.0.1:1110" is bound by listen[0].address too`},
	{"metrics on a POP3 listener's address", "listen:\n  - address: 127.0.0.1:1110\nupstream:\n  address: a:993\nmetrics:\n  listen: 127.0.0.1:1110\n",
		`metrics.listen (line 6): "127.0.0.1:1110" is bound by listen[0].address too`},
	{"admin on the metrics address", "listen:\n  - address: 127.0.0.1:1110\nupstream:\n  address: a:993\nmetrics:\n  listen: 127.0.0.1:9100\nadmin:\n  listen: 127.0.0.1:9100\n",
		`admin.listen (line 8): "127.0.0.1:9100" is bound by metrics.listen too`},
	{"listen address without port", "listen:\n  - address: nope\nupstream:\n  address: a:993\n",
		"listen[0].address (line 2): address nope: missing port in address"},
	{"certificate file missing", "listen:\n  - address: 127.0.0.1:995\n    tls: implicit\n    cert_file: DIR/missing.pem\n    key_file: DIR/missing.key\nupstream:\n  address: a:993\n",
		"listen[0].cert_file/key_file (line 4): open DIR/missing.pem: no such file or directory"},
	{"tls without certificate", "listen:\n  - address: 127.0.0.1:995\n    tls: implicit\nupstream:\n  address: a:993\n",
		"listen[0] (line 2): tls: implicit needs cert_file and key_file"},
	{"bad verify_client", "listen:\n  - address: 127.0.0.1:110\n    verify_client: maybe\nupstream:\n  address: a:993\n",
		`listen[0].verify_client (line 3): "maybe" is not one of off, on, optional, optional_no_ca`},
	{"verify_client without tls", "listen:\n  - address: 127.0.0.1:110\n    verify_client: on\nupstream:\n  address: a:993\n",
		"listen[0] (line 2): verify_client: on needs tls: starttls or implicit"},
	{"client_ca_file without verify_client", "listen:\n  - address: 127.0.0.1:110\n    client_ca_file: DIR/ca.pem\nupstream:\n  address: a:993\n",
		"listen[0] (line 2): client_ca_file needs verify_client: on or optional"},
	{"CA file missing", "upstream:\n  address: a:993\n  ca_file: DIR/ca.pem\n", "upstream.ca_file (line 3): open DIR/ca.pem: no such file or directory"},
	{"CA file not PEM", "upstream:\n  address: a:993\n  ca_file: DIR/garbage\n", "upstream.ca_file (line 3): DIR/garbage: no PEM certificates found"},
	{"certificate not PEM", "listen:\n  - address: 127.0.0.1:995\n    tls: starttls\n    cert_file: DIR/garbage\n    key_file: DIR/garbage\nupstream:\n  address: a:993\n",
		"listen[0].cert_file/key_file (line 4): tls: failed to find any PEM data in certificate input"},
	{"client secret file missing", "upstream:\n  address: a:993\noauth2:\n  providers:\n    m:\n      preset: microsoft\n      client_id: x\n      client_secret_file: DIR/secret\n  token_store:\n    dir: DIR\n",
		"oauth2.providers.m.client_secret_file (line 8): open DIR/secret: no such file or directory"},
	{"token store key missing", "upstream:\n  address: a:993\noauth2:\n  providers:\n    m:\n      preset: microsoft\n      client_id: x\n  token_store:\n    file: DIR/tokens\n    key_file: DIR/key\n",
		"oauth2.token_store.key_file (line 10): open DIR/key: no such file or directory"},
	{"bad uidl format", "upstream:\n  address: a:1\npolicy:\n  uidl_format: '%v'\n", "policy.uidl_format (line 4): uidl format: must contain %u, %g or %m to make ids unique"},
}

func TestBrokenFilesAreRefusedWithKeyAndLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "garbage"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oldLookup, oldLocal := lookupHost, localAddrs
	t.Cleanup(func() { lookupHost, localAddrs = oldLookup, oldLocal })
	lookupHost = func(_ context.Context, host string) ([]string, error) {
		if host == "localhost" {
			return []string{"127.0.0.1", "::1"}, nil
		}
		return nil, errors.New("no such host")
	}
	localAddrs = func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}, nil
	}
	if len(brokenFiles) < 30 {
		t.Fatalf("only %d broken files", len(brokenFiles))
	}
	for _, tc := range brokenFiles {
		yaml := strings.ReplaceAll(tc.yaml, "DIR", dir)
		want := strings.ReplaceAll(tc.want, "DIR", dir)
		cfg, err := ParseConfig([]byte(yaml))
		if err == nil {
			err = cfg.Check()
		}
		got := "<nil>"
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%s:\n  got  %s\n  want %s", tc.name, got, want)
		}
	}
}

// Types that decode themselves (other sections may add some) are decoded
// as they say, and their own error is reported at their line.
func TestWalkLetsSelfDecodingTypesDecide(t *testing.T) {
	type section struct {
		Addr  netip.AddrPort `yaml:"addr"`
		Extra any            `yaml:"extra"`
	}
	var errs []error
	lines := lineMap{}
	doc := "addr: 127.0.0.1:110\nextra: {a: [1, 2]}\n"
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	walk(n.Content[0], "s", reflect.TypeFor[section](), lines, &errs)
	if len(errs) != 0 || lines["s.extra"] != 2 {
		t.Errorf("valid section: errors %v, lines %v", errs, lines)
	}
	if err := yaml.Unmarshal([]byte("addr: nowhere\n"), &n); err != nil {
		t.Fatal(err)
	}
	walk(n.Content[0], "s", reflect.TypeFor[section](), lines, &errs)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "s.addr (line 1): ") || strings.Contains(errs[0].Error(), "netip") {
		t.Errorf("bad address: errors %v, want one at s.addr (line 1) without a Go type", errs)
	}
}
