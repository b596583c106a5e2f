package state

// This file holds the store's configuration (the optional "state" section
// of popbridge's config) and its checks: data only, no connections.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Config describes the shared store. The zero value means in-process
// state; every other field needs Address.
type Config struct {
	// Address is the host:port of a Redis or Valkey server (6.0 or later).
	Address string `yaml:"address"`
	// Username is the ACL user; "" is Redis's "default" user.
	Username string `yaml:"username"`
	// PasswordFile holds the password (one trailing line break is ignored);
	// "" sends none.
	PasswordFile string `yaml:"password_file"`
	// TLS connects over TLS, verifying the server's certificate for the
	// host of Address against CAFile, or the system's roots when CAFile is "".
	TLS    bool   `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// KeyPrefix starts every key, so that several deployments can share a
	// server. Default "popbridge:".
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout bounds a new connection to the store (default 1s);
	// CommandTimeout bounds each operation as a whole, a dial included
	// (default 1s). A login waits at most CommandTimeout per operation on
	// a store that does not answer.
	DialTimeout    time.Duration `yaml:"dial_timeout"`
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// LeaseTTL is how long a lock or connection slot outlives a replica
	// that stopped renewing it (default 30s); leases are renewed every
	// third of it, so it must be at least 3 x CommandTimeout.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// OnFailure says per feature what happens while the store cannot be
	// asked.
	OnFailure FailModes `yaml:"on_failure"`
}

// FailModes holds one FailMode per feature.
type FailModes struct {
	// Logins: the failed-login limits (default open).
	Logins FailMode `yaml:"logins"`
	// Connections: the per-address connection limit (default open).
	Connections FailMode `yaml:"connections"`
	// Locks: lock_session (default closed).
	Locks FailMode `yaml:"locks"`
}

// FailMode is what a feature does while the store cannot be asked.
type FailMode string

const (
	// FailOpen lets the session go on, with an error for the caller to
	// log and count.
	FailOpen FailMode = "open"
	// FailClosed refuses the session (the caller answers -ERR [SYS/TEMP]).
	FailClosed FailMode = "closed"
)

// Check reports whether m is a known mode ("" stands for the default).
func (m FailMode) Check() error {
	switch m {
	case "", FailOpen, FailClosed:
		return nil
	}
	return fmt.Errorf("%q is not a fail mode (open or closed)", string(m))
}

// Defaults.
const (
	DefaultKeyPrefix      = "popbridge:"
	DefaultDialTimeout    = time.Second
	DefaultCommandTimeout = time.Second
	DefaultLeaseTTL       = 30 * time.Second
)

// WithDefaults returns c with every unset field of a Redis store at its
// default; a config without Address is returned unchanged.
func (c Config) WithDefaults() Config {
	if c.Address == "" {
		return c
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.OnFailure.Logins == "" {
		c.OnFailure.Logins = FailOpen
	}
	if c.OnFailure.Connections == "" {
		c.OnFailure.Connections = FailOpen
	}
	if c.OnFailure.Locks == "" {
		c.OnFailure.Locks = FailClosed
	}
	return c
}

// Check reports the first setting that is wrong, naming it as it is
// spelled in the config file.
func (c Config) Check() error {
	if c.Address == "" {
		if c != (Config{}) {
			return errors.New("state: the section is set but state.address is empty")
		}
		return nil
	}
	c = c.WithDefaults()
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil {
		return fmt.Errorf("state.address: %q is not host:port: %v", c.Address, err)
	}
	if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("state.address: %q needs a host and a port from 1 to 65535", c.Address)
	}
	if c.CAFile != "" && !c.TLS {
		return errors.New("state.ca_file is set but state.tls is off")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial_timeout", c.DialTimeout}, {"command_timeout", c.CommandTimeout}, {"lease_ttl", c.LeaseTTL}} {
		if d.v < 0 {
			return fmt.Errorf("state.%s: %v is negative", d.name, d.v)
		}
	}
	// A renewal every third of the TTL that may take a whole command
	// timeout must still land before the lease expires.
	if c.LeaseTTL < 3*c.CommandTimeout {
		return fmt.Errorf("state.lease_ttl: %v is less than 3 x state.command_timeout (%v)", c.LeaseTTL, c.CommandTimeout)
	}
	for _, m := range []struct {
		name string
		v    FailMode
	}{{"logins", c.OnFailure.Logins}, {"connections", c.OnFailure.Connections}, {"locks", c.OnFailure.Locks}} {
		if err := m.v.Check(); err != nil {
			return fmt.Errorf("state.on_failure.%s: %v", m.name, err)
		}
	}
	return nil
}
