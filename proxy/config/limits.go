package config

// The limits that keep one client, one address or one upstream from
// taking what every other session needs: connection counts, the
// authorization timeout and the bounds on upstream responses. Their
// defaults are documented, with the reasons, in deploy/popbridge.yaml.

import (
	"errors"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// Defaults of the connection limits, applied by Check.
const (
	// DefaultMaxConnectionsPerIP lets one address hold this many
	// connections. It is not 1 or 2 because a whole office behind one NAT
	// address shares it (every mail client of every desk, each polling
	// now and then, some with several accounts), and not unlimited
	// because one address could then take every descriptor of the
	// process. 50 serves an office of a few dozen desks; a site with
	// more behind one address raises it.
	DefaultMaxConnectionsPerIP = 50
	// DefaultAuthTimeout bounds the AUTHORIZATION state, from the
	// greeting to a successful login. Real clients log in within seconds;
	// only a client holding connections open to starve others needs
	// longer (nginx's mail proxy allows a minute too).
	DefaultAuthTimeout = time.Minute
	// NoLimit, for max_connections and max_connections_per_ip, turns the
	// limit off.
	NoLimit = -1
)

// checkLimits fills in and validates the connection limits and the
// authorization timeout. limits.max_connections stays 0 when unset: the
// proxy derives it from the process's descriptor limit, which only the
// running process knows.
func (c *Config) checkLimits() []error {
	var errs []error
	l := &c.Limits
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if l.AuthTimeout == 0 {
		l.AuthTimeout = DefaultAuthTimeout
	}
	for key, n := range map[string]int{"limits.max_connections": l.MaxConnections, "limits.max_connections_per_ip": l.MaxConnectionsPerIP} {
		if n < NoLimit {
			errs = append(errs, fmt.Errorf("%s: must be -1 (no limit), 0 (the default) or positive", key))
		}
	}
	if l.AuthTimeout < 0 {
		errs = append(errs, errors.New("limits.auth_timeout: must not be negative"))
	}
	if err := c.State.Check(); err != nil {
		errs = append(errs, err) // state.Check names the setting
	}
	if c.State.Address != "" {
		c.State = c.State.WithDefaults()
	}
	return errs
}

// checkBounds fills in and validates an upstream's bounds on what it may
// send; key names the upstream in errors.
func (u *UpstreamConfig) checkBounds(key string) []error {
	var errs []error
	if u.ForwardClientAddress == nil {
		// Safe everywhere: it is sent only to a server that announces
		// ID, and a server that does not trust popbridge ignores it.
		on := true
		u.ForwardClientAddress = &on
	}
	if u.MaxMessages == 0 {
		u.MaxMessages = imapback.DefaultMaxMessages
	}
	if u.MaxLiteralBytes == 0 {
		u.MaxLiteralBytes = imapback.DefaultMaxLiteral
	}
	if u.MaxResponseBytes == 0 {
		u.MaxResponseBytes = imapback.DefaultMaxResponse
	}
	if u.MaxMessages < 0 {
		errs = append(errs, fmt.Errorf("%s.max_messages: must be positive", key))
	}
	// Below a few KiB a capability list or a mailbox name would not
	// fit; above a GiB the bound no longer protects the process.
	const least, most = 4 << 10, 1 << 30
	for name, n := range map[string]int64{".max_literal_bytes": u.MaxLiteralBytes, ".max_response_bytes": u.MaxResponseBytes} {
		if n < least || n > most {
			errs = append(errs, fmt.Errorf("%s%s: must be between %d and %d", key, name, least, most))
		}
	}
	if u.MaxLiteralBytes > u.MaxResponseBytes {
		errs = append(errs, fmt.Errorf("%s.max_literal_bytes: larger than %s.max_response_bytes, which includes it", key, key))
	}
	return errs
}
