package config

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapback"
)

// The policy section: per-device views and the rules that override the
// default policy, with their checks.

// DevicesConfig configures per-device views (docs/multi-device.md).
type DevicesConfig struct {
	// Separator splits "user<sep>device" at login, at its last
	// occurrence. Empty: logins name no device.
	Separator string `yaml:"separator"`
	// Known lists the devices allowed; empty allows any valid name.
	Known []string `yaml:"known"`
	// DeleteWhenAllDeleted applies the delete policy to a message once
	// every Known device has deleted it.
	DeleteWhenAllDeleted bool `yaml:"delete_when_all_deleted"`
	// Addresses name the device of clients by their address, for
	// clients whose login cannot carry a device.
	Addresses []DeviceAddress `yaml:"addresses"`
}

// DeviceAddress names the device of clients from one network.
type DeviceAddress struct {
	Network string `yaml:"network"` // CIDR or single address
	Device  string `yaml:"device"`
}

// PolicyRule overrides policy keys for the sessions it matches. A rule
// matches when every match key it has matches (one entry of a list is
// enough); every matching rule applies, in order, so later rules win.
type PolicyRule struct {
	Users    []string `yaml:"users"`    // upstream user names; * and ? are wildcards
	Devices  []string `yaml:"devices"`  // device names
	Networks []string `yaml:"networks"` // client address, CIDR or single address
	Listen   []string `yaml:"listen"`   // listener, as written in listen[].address

	Delete      imapback.DeletePolicy `yaml:"delete"`
	TrashFolder string                `yaml:"trash_folder"`
	Seen        imapback.SeenPolicy   `yaml:"seen"`
	MaxAgeDays  *int                  `yaml:"max_age_days"`
	StartDate   string                `yaml:"start_date"`
	// RetentionDays, when set, replaces policy.retention_days; 0 turns
	// retention off for the sessions the rule matches.
	RetentionDays *int `yaml:"retention_days"`
	// Mailbox serves another folder than the upstream's mailbox, and
	// Mailboxes several folders merged; at most one of them per rule,
	// the last rule that sets either wins, and a folder named at login
	// wins over both.
	Mailbox   string   `yaml:"mailbox"`
	Mailboxes []string `yaml:"mailboxes"`
}

// FoldersConfig lets a login name the folder it reads.
type FoldersConfig struct {
	// Separator splits "user<sep>Folder" at login, at its first
	// occurrence, so that the folder may hold the separator. Empty (the
	// default): logins name no folder.
	Separator string `yaml:"separator"`
}

// StartDateLayout is how start_date is written.
const StartDateLayout = "2006-01-02"

// ParseStartDate reads a start_date; "" is no start date (the zero time).
func ParseStartDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(StartDateLayout, s)
}

// separators are the characters allowed as device separators: none of
// them can be part of a device name.
const separators = "+#%!~=:;,/|^"

// checkPolicy fills in the policy defaults and validates the policy
// section, rules and devices included.
func (c *Config) checkPolicy() []error {
	var errs []error
	p := &c.Policy
	if p.Delete == "" {
		p.Delete = imapback.DeleteExpunge
	}
	errs = append(errs, oneOf("policy.delete", p.Delete, imapback.DeletePolicies))
	if p.Seen == "" {
		p.Seen = imapback.SeenRetr
	}
	errs = append(errs, oneOf("policy.seen", p.Seen, imapback.SeenPolicies))
	errs = append(errs, c.checkTrash("policy.trash_folder", p.TrashFolder))
	if p.MaxAgeDays < 0 {
		errs = append(errs, errors.New("policy.max_age_days: must not be negative"))
	}
	errs = append(errs, checkStartDate("policy.start_date", p.StartDate))
	errs = append(errs, checkRetention("policy.retention_days", p.RetentionDays))

	d := &p.Devices
	if len(d.Separator) > 1 || d.Separator != "" && !strings.Contains(separators, d.Separator) {
		errs = append(errs, fmt.Errorf("policy.devices.separator: %q is not one character of %s", d.Separator, separators))
	}
	errs = append(errs, c.checkFolders()...)
	for i, name := range d.Known {
		d.Known[i] = strings.ToLower(name)
		errs = append(errs, checkDevice(fmt.Sprintf("policy.devices.known[%d]", i), d.Known[i]))
	}
	if d.DeleteWhenAllDeleted && len(d.Known) == 0 {
		errs = append(errs, errors.New("policy.devices.delete_when_all_deleted: needs policy.devices.known"))
	}
	for i, a := range d.Addresses {
		key := fmt.Sprintf("policy.devices.addresses[%d]", i)
		if _, err := ParseNetwork(a.Network); err != nil {
			errs = append(errs, fmt.Errorf("%s.network: %v", key, err))
		}
		d.Addresses[i].Device = strings.ToLower(a.Device)
		errs = append(errs, c.checkKnownDevice(key+".device", d.Addresses[i].Device))
	}

	for i := range p.Rules {
		errs = append(errs, c.checkRule(fmt.Sprintf("policy.rules[%d]", i), &p.Rules[i])...)
	}
	return errs
}

func (c *Config) checkRule(key string, r *PolicyRule) []error {
	var errs []error
	if len(r.Users)+len(r.Devices)+len(r.Networks)+len(r.Listen) == 0 {
		errs = append(errs, fmt.Errorf("%s: needs at least one of users, devices, networks, listen (set the default in policy instead)", key))
	}
	for i, u := range r.Users {
		if _, err := path.Match(u, ""); err != nil || u == "" {
			errs = append(errs, fmt.Errorf("%s.users[%d]: bad pattern %q", key, i, u))
		}
	}
	for i, d := range r.Devices {
		r.Devices[i] = strings.ToLower(d)
		errs = append(errs, c.checkKnownDevice(fmt.Sprintf("%s.devices[%d]", key, i), r.Devices[i]))
	}
	for i, n := range r.Networks {
		if _, err := ParseNetwork(n); err != nil {
			errs = append(errs, fmt.Errorf("%s.networks[%d]: %v", key, i, err))
		}
	}
	for i, l := range r.Listen {
		if !slices.ContainsFunc(c.Listen, func(lc ListenConfig) bool { return lc.Address == l }) {
			errs = append(errs, fmt.Errorf("%s.listen[%d]: %q is not the address of any listen entry", key, i, l))
		}
	}
	if r.Delete != "" {
		errs = append(errs, oneOf(key+".delete", r.Delete, imapback.DeletePolicies))
	}
	if r.Seen != "" {
		errs = append(errs, oneOf(key+".seen", r.Seen, imapback.SeenPolicies))
	}
	errs = append(errs, c.checkTrash(key+".trash_folder", r.TrashFolder))
	if r.MaxAgeDays != nil && *r.MaxAgeDays < 0 {
		errs = append(errs, fmt.Errorf("%s.max_age_days: must not be negative", key))
	}
	errs = append(errs, checkStartDate(key+".start_date", r.StartDate))
	if r.RetentionDays != nil {
		errs = append(errs, checkRetention(key+".retention_days", *r.RetentionDays))
	}
	if r.Mailbox != "" && !imapback.ValidMailbox(r.Mailbox) {
		errs = append(errs, fmt.Errorf("%s.mailbox: %q is not a mailbox name", key, r.Mailbox))
	}
	errs = append(errs, checkMailboxes(key, r.Mailbox, r.Mailboxes)...)
	for _, mb := range r.Mailboxes {
		if strings.EqualFold(mb, r.TrashFolder) {
			errs = append(errs, fmt.Errorf("%s.trash_folder: %q is one of the maildrop's mailboxes", key, mb))
		}
	}
	return errs
}

// checkMailboxes checks the folders of a merged maildrop, which replace
// a single mailbox and so cannot go with one.
func checkMailboxes(key, mailbox string, mailboxes []string) []error {
	var errs []error
	if mailbox != "" && len(mailboxes) > 0 {
		errs = append(errs, fmt.Errorf("%s.mailboxes: mailbox and mailboxes exclude each other", key))
	}
	if mailboxes != nil && len(mailboxes) < 2 {
		errs = append(errs, fmt.Errorf("%s.mailboxes: list at least two folders (one is mailbox)", key))
	}
	if err := imapback.CheckMailboxes(mailboxes); err != nil {
		errs = append(errs, fmt.Errorf("%s.mailboxes: %v", key, err))
	}
	return errs
}

func checkRetention(key string, days int) error {
	if days < 0 || days > imapback.MaxRetentionDays {
		return fmt.Errorf("%s: %d is not a number of days from 0 (never) to %d", key, days, imapback.MaxRetentionDays)
	}
	return nil
}

func checkStartDate(key, s string) error {
	if _, err := ParseStartDate(s); err != nil {
		return fmt.Errorf("%s: %q is not a date written %s", key, s, StartDateLayout)
	}
	return nil
}

// checkFolders checks the folder separator: one of the separator
// characters, and not the device separator, which would make
// "user+x" ambiguous.
func (c *Config) checkFolders() []error {
	sep, dev := c.Policy.Folders.Separator, c.Policy.Devices.Separator
	switch {
	case sep == "":
		return nil
	case len(sep) > 1 || !strings.Contains(separators, sep):
		return []error{fmt.Errorf("policy.folders.separator: %q is not one character of %s", sep, separators)}
	case sep == dev:
		return []error{fmt.Errorf("policy.folders.separator: %q is policy.devices.separator too", sep)}
	}
	return nil
}

func (c *Config) checkTrash(key, folder string) error {
	if folder == "" {
		return nil
	}
	if strings.EqualFold(folder, c.Upstream.Mailbox) {
		return fmt.Errorf("%s: %q is the maildrop (upstream.mailbox) itself", key, folder)
	}
	if slices.ContainsFunc(c.Upstream.Mailboxes, func(mb string) bool { return strings.EqualFold(folder, mb) }) {
		return fmt.Errorf("%s: %q is one of the maildrop's folders (upstream.mailboxes)", key, folder)
	}
	for name, u := range c.Upstreams {
		if mb := cmp.Or(u.Mailbox, imapback.DefaultMailbox); strings.EqualFold(folder, mb) {
			return fmt.Errorf("%s: %q is the maildrop (upstreams.%s.mailbox) itself", key, folder, name)
		}
		if slices.ContainsFunc(u.Mailboxes, func(mb string) bool { return strings.EqualFold(folder, mb) }) {
			return fmt.Errorf("%s: %q is one of the maildrop's folders (upstreams.%s.mailboxes)", key, folder, name)
		}
	}
	return nil
}

func checkDevice(key, name string) error {
	if !imapback.ValidDevice(name) {
		return fmt.Errorf("%s: %q is not a device name (1-%d characters of a-z, 0-9, '.', '_', '-')", key, name, imapback.MaxDeviceLen)
	}
	return nil
}

func (c *Config) checkKnownDevice(key, name string) error {
	if err := checkDevice(key, name); err != nil {
		return err
	}
	if k := c.Policy.Devices.Known; len(k) > 0 && !slices.Contains(k, name) {
		return fmt.Errorf("%s: %q is not in policy.devices.known", key, name)
	}
	return nil
}

// retentionRemovesNothing reports a policy.retention_days that no session
// can act on: without a device a session removes by its delete policy,
// and keep removes nothing; only a rule's delete, a device view or the
// hook's answer (which may name either) would give it work.
func (c *Config) retentionRemovesNothing() bool {
	p := c.Policy
	if p.RetentionDays == 0 || p.Delete != imapback.DeleteKeep || c.AuthHTTP.Enabled() ||
		p.Devices.Separator != "" || len(p.Devices.Addresses) > 0 {
		return false
	}
	return !slices.ContainsFunc(p.Rules, func(r PolicyRule) bool { return r.Delete != "" && r.Delete != imapback.DeleteKeep })
}

// LoginRounds is how many upstream logins a POP3 login may take one after
// another: two when some maildrop may merge folders (the first folder is
// opened alone, to try the password once, then the others at once), else
// one. The hook may answer with folders to merge.
func (c *Config) LoginRounds() int {
	merges := len(c.Upstream.Mailboxes) > 0 || c.AuthHTTP.Enabled() ||
		slices.ContainsFunc(c.Policy.Rules, func(r PolicyRule) bool { return len(r.Mailboxes) > 0 })
	for _, u := range c.Upstreams {
		merges = merges || len(u.Mailboxes) > 0
	}
	if merges {
		return 2
	}
	return 1
}

// LoginRoundTime is the longest one upstream login round may take: a dial
// and three commands, under the slowest timeouts of any configured
// upstream, since a rule or the hook may route a login to any of them.
func (c *Config) LoginRoundTime() time.Duration {
	d := c.Upstream.DialTimeout + 3*c.Upstream.CommandTimeout
	for _, u := range c.Upstreams {
		d = max(d, u.DialTimeout+3*u.CommandTimeout)
	}
	return d
}
