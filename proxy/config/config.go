// Package config is popbridge's YAML schema, its defaults and its checks:
// data only, with no sockets and no logging (Check reads the files the
// configuration names and resolves listen host names, so that a file it
// accepts also starts).
package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/admin"
	"github.com/popbridge/popbridge/proxy/authhttp"
	"github.com/popbridge/popbridge/proxy/state"
	"github.com/popbridge/popbridge/proxy/uidlmap"
)

// DefaultListen is where popbridge listens when nothing says otherwise:
// loopback only, so that a bare start exposes nothing.
const DefaultListen = "127.0.0.1:1110"

// Config is the whole configuration, one YAML file. deploy/popbridge.yaml
// documents every key.
type Config struct {
	Listen   []ListenConfig `yaml:"listen"`
	Upstream UpstreamConfig `yaml:"upstream"`
	Policy   PolicyConfig   `yaml:"policy"`
	Limits   LimitsConfig   `yaml:"limits"`
	Log      LogConfig      `yaml:"log"`

	// Security and routing (listen.go, routes.go).
	TrustedNetworks []string                  `yaml:"trusted_networks"`
	Upstreams       map[string]UpstreamConfig `yaml:"upstreams"`
	Routes          []RouteConfig             `yaml:"routes"`

	// The metrics and health listener (performance.go).
	Metrics MetricsConfig `yaml:"metrics"`
	// Read-ahead tuning (performance.go).
	Performance PerformanceConfig `yaml:"performance"`
	// Local accounts that log in upstream with OAuth2 (oauth2.go).
	OAuth2 OAuth2Config `yaml:"oauth2"`
	// The admin listener: sessions, kicks, this config redacted. Off
	// unless admin.listen is set.
	Admin admin.Config `yaml:"admin"`
	// The store of limits and locks shared by replicas.
	State state.Config `yaml:"state"`
	// The external auth and routing hook.
	AuthHTTP authhttp.Config `yaml:"auth_http"`

	// lines holds the line of every key path in the file, for Check's
	// messages (decode.go).
	lines lineMap
}

// ListenConfig is one POP3 listener.
type ListenConfig struct {
	Address string `yaml:"address"`
	// TLS, certificates and the PROXY protocol: see listen.go.
	TLS            ListenTLS `yaml:"tls"`
	CertFile       string    `yaml:"cert_file"`
	KeyFile        string    `yaml:"key_file"`
	MinVersion     string    `yaml:"min_version"` // 1.2 or 1.3
	ProxyProtocol  bool      `yaml:"proxy_protocol"`
	TrustedProxies []string  `yaml:"trusted_proxies"`
	// Client certificates, as nginx's ssl_verify_client and
	// ssl_client_certificate: asked for, checked against client_ca_file,
	// and passed to the auth_http hook.
	VerifyClient ListenVerify `yaml:"verify_client"`
	ClientCAFile string       `yaml:"client_ca_file"`
}

// UpstreamConfig is the IMAP server that holds the mail.
type UpstreamConfig struct {
	Address    string           `yaml:"address"`
	TLS        imapback.TLSMode `yaml:"tls"` // default by port
	CAFile     string           `yaml:"ca_file"`
	ServerName string           `yaml:"server_name"`
	// A client certificate for the upstream, and turning verification
	// off (only by explicit config, logged as a warning).
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// Send the POP3 client's address upstream with IMAP ID
	// (x-originating-ip, as Dovecot's proxy does). Default true.
	ForwardClientAddress *bool                  `yaml:"forward_client_address"`
	Auth                 imapback.AuthMechanism `yaml:"auth"` // "auto" is AuthAuto
	Mailbox              string                 `yaml:"mailbox"`
	// Mailboxes serves several folders merged as one maildrop, instead
	// of Mailbox (docs/routing.md).
	Mailboxes      []string      `yaml:"mailboxes"`
	DialTimeout    time.Duration `yaml:"dial_timeout"`
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// Bounds on what the upstream may send (upstreambounds.go).
	MaxMessages      int   `yaml:"max_messages"`
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	MaxLiteralBytes  int64 `yaml:"max_literal_bytes"`
	// ExactSizes lists each message with the octets RETR sends, counted
	// once, instead of the upstream's RFC822.SIZE. Default false.
	ExactSizes bool `yaml:"exact_sizes"`
	// Reconnect lets a session log in again after its upstream
	// connection closed. Default true.
	Reconnect *bool `yaml:"reconnect"`
}

// PolicyConfig says what POP3 actions do to the upstream mailbox.
// Devices and Rules are in policy.go.
type PolicyConfig struct {
	Delete      imapback.DeletePolicy `yaml:"delete"`
	TrashFolder string                `yaml:"trash_folder"`
	Seen        imapback.SeenPolicy   `yaml:"seen"`
	MaxAgeDays  int                   `yaml:"max_age_days"`
	StartDate   string                `yaml:"start_date"` // YYYY-MM-DD; see policy.go
	UIDLFormat  string                `yaml:"uidl_format"`
	// UIDLMap is a directory of per-user maps from `popbridge uidl
	// import`: imported messages keep the UIDLs of the old server.
	UIDLMap string        `yaml:"uidl_map"`
	Devices DevicesConfig `yaml:"devices"`
	Folders FoldersConfig `yaml:"folders"`
	Rules   []PolicyRule  `yaml:"rules"`

	// RetentionDays > 0 removes at a QUIT what the device retrieved that
	// many days before; 0: never.
	RetentionDays int `yaml:"retention_days"`
}

// LimitsConfig bounds what clients can hold.
type LimitsConfig struct {
	IdleTimeout      time.Duration  `yaml:"idle_timeout"`
	WriteTimeout     time.Duration  `yaml:"write_timeout"`
	AuthFailureDelay *time.Duration `yaml:"auth_failure_delay"`
	MaxConnections   int            `yaml:"max_connections"`
	DrainTimeout     time.Duration  `yaml:"drain_timeout"`

	// Per client address and per user name; see listen.go.
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip"`
	HandshakeTimeout    time.Duration `yaml:"handshake_timeout"`
	AuthTimeout         time.Duration `yaml:"auth_timeout"`
	AuthFailuresPerIP   *int          `yaml:"auth_failures_per_ip"`
	AuthFailuresPerUser *int          `yaml:"auth_failures_per_user"`
	AuthFailureWindow   time.Duration `yaml:"auth_failure_window"`

	// LockSession refuses a second session of a maildrop with
	// -ERR [IN-USE]: in this process, or across the replicas that share
	// the state store.
	LockSession bool `yaml:"lock_session"`
}

// LogConfig chooses the log format and level.
type LogConfig struct {
	Level  string `yaml:"level"`  // one of LogLevels
	Format string `yaml:"format"` // one of LogFormats
}

// The values of log.level and log.format; the first format is the
// default, and info the default level.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"text", "json"}
)

// Defaults applied by Check.
const (
	DefaultAuthFailureDelay = 2 * time.Second
	DefaultDrainTimeout     = 30 * time.Second
)

// Check fills in defaults and validates every value, so that a bad config
// fails at start (and in check-config), not at the first login. Each error
// is "key.path (line N): what is wrong" when the file has the key.
func (c *Config) Check() error {
	if len(c.Listen) == 0 {
		c.Listen = []ListenConfig{{Address: DefaultListen}}
	}
	var errs []error
	for i := range c.Listen {
		errs = append(errs, c.Listen[i].check(fmt.Sprintf("listen[%d]", i))...)
	}

	u := &c.Upstream
	errs = append(errs, u.check("upstream")...)
	errs = append(errs, c.checkSecurity()...)
	errs = append(errs, c.checkOAuth2()...)
	errs = append(errs, c.checkAuthHTTP()...)
	errs = append(errs, c.Performance.check()...)
	errs = append(errs, c.checkLimits()...)

	p := &c.Policy
	errs = append(errs, c.checkPolicy()...)
	if p.UIDLFormat == "" {
		p.UIDLFormat = imapback.DefaultUIDLFormat
	}
	if _, err := imapback.ParseUIDLFormat(p.UIDLFormat); err != nil {
		errs = append(errs, fmt.Errorf("policy.uidl_format: %v", err))
	}
	if p.UIDLMap != "" {
		if _, err := uidlmap.Load(p.UIDLMap); err != nil {
			errs = append(errs, fmt.Errorf("policy.uidl_map: %v", err))
		}
	}

	l := &c.Limits
	if l.IdleTimeout == 0 {
		l.IdleTimeout = minIdleTimeout
	}
	if l.AuthFailureDelay == nil {
		d := DefaultAuthFailureDelay
		l.AuthFailureDelay = &d
	}
	if l.DrainTimeout == 0 {
		l.DrainTimeout = DefaultDrainTimeout
	}
	for name, d := range map[string]time.Duration{
		"limits.idle_timeout": l.IdleTimeout, "limits.write_timeout": l.WriteTimeout,
		"limits.auth_failure_delay": *l.AuthFailureDelay, "limits.drain_timeout": l.DrainTimeout,
		"upstream.dial_timeout": u.DialTimeout, "upstream.command_timeout": u.CommandTimeout,
		"limits.handshake_timeout": l.HandshakeTimeout, "limits.auth_failure_window": l.AuthFailureWindow,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", name))
		}
	}

	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Log.Format = cmp.Or(c.Log.Format, LogFormats[0])
	errs = append(errs, oneOf("log.level", c.Log.Level, LogLevels))
	errs = append(errs, oneOf("log.format", c.Log.Format, LogFormats))
	errs = append(errs, c.Metrics.check()...)
	errs = append(errs, c.Admin.Check())
	errs = append(errs, c.checkAddresses()...)
	return c.located(errs)
}

// minIdleTimeout is the shortest idle timeout RFC 1939 (section 3) allows,
// and the default.
const minIdleTimeout = 10 * time.Minute

// Warnings lists what a checked config allows but an operator should
// hear about, for the caller to log.
func (c *Config) Warnings() []string {
	var w []string
	if c.Limits.IdleTimeout < minIdleTimeout {
		w = append(w, fmt.Sprintf("limits.idle_timeout %v is below the 10 minutes RFC 1939 asks for", c.Limits.IdleTimeout))
	}
	if c.retentionRemovesNothing() {
		w = append(w, fmt.Sprintf("policy.retention_days %d removes nothing: policy.delete is keep, no rule sets another delete "+
			"and no login gets a device view (policy.devices), where retention would mark the device's delete", c.Policy.RetentionDays))
	}
	return w
}

// oneOf checks that v is one of allowed; key names the setting.
func oneOf[T ~string](key string, v T, allowed []T) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%s: %q is not one of %s", key, v, join(allowed))
}

// join lists allowed values for a message.
func join[T ~string](allowed []T) string {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}
