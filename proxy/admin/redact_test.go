package admin

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// A configuration shaped like popbridge's: nested structs, slices of
// structs, maps of structs, pointers, durations and unexported state.
type testConfig struct {
	Listen   []testListen            `yaml:"listen"`
	Upstream testUpstream            `yaml:"upstream"`
	Named    map[string]testUpstream `yaml:"upstreams"`
	Accounts []*testAccount          `yaml:"accounts"`
	Extra    map[string]any          `yaml:"extra"`
	Timeout  time.Duration           `yaml:"timeout"`
	Started  time.Time               `yaml:"started"`
	NoTag    string
	Skipped  string `yaml:"-"`
	hidden   string
}

type testListen struct {
	Address string `yaml:"address"`
	KeyFile string `yaml:"key_file"`
}

type testUpstream struct {
	Address    string   `yaml:"address"`
	Password   string   `yaml:"password"`
	APIToken   string   `yaml:"api_token"`
	Opaque     string   `yaml:"opaque" secret:"true"`
	OldSecrets []string `yaml:"old_secrets"`
	SecretFile string   `yaml:"client_secret_file"`
	Retries    int      `yaml:"max_token"` // a secret name on a number: zeroed
}

type testAccount struct {
	User         string `yaml:"user"`
	PasswordHash string `yaml:"password_hash"`
	clientSecret string
}

func TestRedact(t *testing.T) {
	up := testUpstream{Address: "imap.example.com:993", Password: "hunter2-up", APIToken: "tok-123",
		Opaque: "opaque-456", OldSecrets: []string{"old-1", "old-2"}, SecretFile: "/etc/popbridge/secret", Retries: 3}
	started := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	in := testConfig{
		Listen:   []testListen{{Address: ":110", KeyFile: "/etc/key.pem"}},
		Upstream: up,
		Named:    map[string]testUpstream{"eu": up, "us": {Address: "us.example.com:993"}},
		Accounts: []*testAccount{{User: "alice", PasswordHash: "$argon2id$secret-hash", clientSecret: "cs"}, nil},
		Extra:    map[string]any{"db_password": "pw-789", "note": "kept", "nested": map[string]any{"refresh_token": "rt-000"}},
		Timeout:  90 * time.Second,
		Started:  started,
		NoTag:    "plain",
		Skipped:  "skipped",
		hidden:   "hidden",
	}
	before := yamlText(t, in)

	out := Redact(in)

	wantUp := testUpstream{Address: "imap.example.com:993", Password: Redacted, APIToken: Redacted, Opaque: Redacted,
		OldSecrets: []string{Redacted, Redacted}, SecretFile: "/etc/popbridge/secret"}
	if !reflect.DeepEqual(out.Upstream, wantUp) {
		t.Errorf("upstream = %+v\nwant %+v", out.Upstream, wantUp)
	}
	if !reflect.DeepEqual(out.Named["eu"], wantUp) || !reflect.DeepEqual(out.Named["us"], testUpstream{Address: "us.example.com:993"}) {
		t.Errorf("upstreams = %+v: secrets set are redacted, unset ones stay empty", out.Named)
	}
	if a := out.Accounts[0]; a.User != "alice" || a.PasswordHash != Redacted || a.clientSecret != "" {
		t.Errorf("account = %+v", *a)
	}
	if len(out.Accounts) != 2 || out.Accounts[1] != nil {
		t.Errorf("a nil pointer in a slice must stay nil: %v", out.Accounts)
	}
	if out.Extra["db_password"] != Redacted || out.Extra["note"] != "kept" ||
		out.Extra["nested"].(map[string]any)["refresh_token"] != Redacted {
		t.Errorf("extra = %v: map keys with secret names must be redacted", out.Extra)
	}
	if out.Timeout != 90*time.Second || !out.Started.Equal(started) || out.NoTag != "plain" || out.Listen[0].KeyFile != "/etc/key.pem" {
		t.Errorf("non-secrets changed: %+v", out)
	}
	if out.hidden != "" {
		t.Error("unexported fields must not be copied")
	}

	// The input, and everything it points to, is untouched.
	if after := yamlText(t, in); after != before || in.Accounts[0].PasswordHash != "$argon2id$secret-hash" || in.hidden != "hidden" {
		t.Errorf("Redact changed its input:\n%s\nwas\n%s", after, before)
	}

	// No secret reaches the YAML that GET /config serves.
	doc := yamlText(t, out)
	for _, secret := range []string{"hunter2", "tok-123", "opaque-456", "old-1", "secret-hash", "pw-789", "rt-000"} {
		if strings.Contains(doc, secret) {
			t.Errorf("the redacted YAML holds %q:\n%s", secret, doc)
		}
	}
	for _, kept := range []string{"timeout: 1m30s", "client_secret_file: /etc/popbridge/secret", "password: " + Redacted} {
		if !strings.Contains(doc, kept) {
			t.Errorf("the redacted YAML lacks %q:\n%s", kept, doc)
		}
	}
}

func TestRedactThroughInterfaceAndPointer(t *testing.T) {
	in := &testUpstream{Address: "a:993", Password: "pw"}
	var v any = in
	out := Redact(v).(*testUpstream)
	if out == in || out.Password != Redacted || in.Password != "pw" {
		t.Errorf("Redact(any(*T)) = %+v (input now %+v): want a redacted copy", out, in)
	}
	if Redact[any](nil) != nil {
		t.Error("Redact(nil) must be nil")
	}
}

func yamlText(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
