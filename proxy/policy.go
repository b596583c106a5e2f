package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

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

	Delete      string `yaml:"delete"`
	TrashFolder string `yaml:"trash_folder"`
	Seen        string `yaml:"seen"`
	MaxAgeDays  *int   `yaml:"max_age_days"`
}

var (
	deleteValues = []string{"expunge", "trash", "flag", "keep"}
	seenValues   = []string{"retr", "never", "quit"}
)

// separators are the characters allowed as device separators: none of
// them can be part of a device name.
const separators = "+#%!~=:;,/|^"

// checkPolicy fills in the policy defaults and validates the policy
// section, rules and devices included.
func (c *Config) checkPolicy() []error {
	var errs []error
	p := &c.Policy
	if p.Delete == "" {
		p.Delete = string(imapback.DeleteExpunge)
	}
	errs = append(errs, oneOf("policy.delete", p.Delete, deleteValues...))
	if p.Seen == "" {
		p.Seen = string(imapback.SeenRetr)
	}
	errs = append(errs, oneOf("policy.seen", p.Seen, seenValues...))
	errs = append(errs, c.checkTrash("policy.trash_folder", p.TrashFolder))
	if p.MaxAgeDays < 0 {
		errs = append(errs, errors.New("policy.max_age_days: must not be negative"))
	}

	d := &p.Devices
	if len(d.Separator) > 1 || d.Separator != "" && !strings.Contains(separators, d.Separator) {
		errs = append(errs, fmt.Errorf("policy.devices.separator: %q is not one character of %s", d.Separator, separators))
	}
	for i, name := range d.Known {
		d.Known[i] = strings.ToLower(name)
		errs = append(errs, checkDevice(fmt.Sprintf("policy.devices.known[%d]", i), d.Known[i]))
	}
	if d.DeleteWhenAllDeleted && len(d.Known) == 0 {
		errs = append(errs, errors.New("policy.devices.delete_when_all_deleted: needs policy.devices.known"))
	}
	for i, a := range d.Addresses {
		key := fmt.Sprintf("policy.devices.addresses[%d]", i)
		if _, err := parseNetwork(a.Network); err != nil {
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
		if _, err := parseNetwork(n); err != nil {
			errs = append(errs, fmt.Errorf("%s.networks[%d]: %v", key, i, err))
		}
	}
	for i, l := range r.Listen {
		if !slices.ContainsFunc(c.Listen, func(lc ListenConfig) bool { return lc.Address == l }) {
			errs = append(errs, fmt.Errorf("%s.listen[%d]: %q is not the address of any listen entry", key, i, l))
		}
	}
	if r.Delete != "" {
		errs = append(errs, oneOf(key+".delete", r.Delete, deleteValues...))
	}
	if r.Seen != "" {
		errs = append(errs, oneOf(key+".seen", r.Seen, seenValues...))
	}
	errs = append(errs, c.checkTrash(key+".trash_folder", r.TrashFolder))
	if r.MaxAgeDays != nil && *r.MaxAgeDays < 0 {
		errs = append(errs, fmt.Errorf("%s.max_age_days: must not be negative", key))
	}
	return errs
}

func (c *Config) checkTrash(key, folder string) error {
	if folder == "" {
		return nil
	}
	if strings.EqualFold(folder, c.Upstream.Mailbox) {
		return fmt.Errorf("%s: %q is the maildrop (upstream.mailbox) itself", key, folder)
	}
	for name, u := range c.Upstreams {
		if mb := cmp.Or(u.Mailbox, imapback.DefaultMailbox); strings.EqualFold(folder, mb) {
			return fmt.Errorf("%s: %q is the maildrop (upstreams.%s.mailbox) itself", key, folder, name)
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

func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// policies resolves the policy of each login from the checked config.
type policies struct {
	base      imapback.Policy
	devices   DevicesConfig
	addresses []netip.Prefix // parallel to devices.Addresses
	rules     []rule

	mu sync.Mutex
	// bound lists the listeners' bound addresses with their configured
	// address, to tell which listener a connection came in on.
	bound []boundListener
}

type rule struct {
	PolicyRule
	networks []netip.Prefix
}

type boundListener struct {
	addr   netip.AddrPort
	config string
}

func newPolicies(c *Config) *policies {
	p := c.Policy
	ps := &policies{
		base: imapback.Policy{
			Delete:      imapback.DeletePolicy(p.Delete),
			TrashFolder: p.TrashFolder,
			Seen:        imapback.SeenPolicy(p.Seen),
			MaxAgeDays:  p.MaxAgeDays,
		},
		devices: p.Devices,
	}
	for _, a := range p.Devices.Addresses {
		n, _ := parseNetwork(a.Network)
		ps.addresses = append(ps.addresses, n)
	}
	for _, r := range p.Rules {
		cr := rule{PolicyRule: r}
		for _, s := range r.Networks {
			n, _ := parseNetwork(s)
			cr.networks = append(cr.networks, n)
		}
		ps.rules = append(ps.rules, cr)
	}
	return ps
}

// bind records that the listener configured as config listens on addr.
func (ps *policies) bind(config string, addr net.Addr) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return
	}
	ps.mu.Lock()
	ps.bound = append(ps.bound, boundListener{ap, config})
	ps.mu.Unlock()
}

// listener returns the configured address of the listener a connection
// with local address local came in on: the one bound to exactly that
// address, else a wildcard one on the same port.
func (ps *policies) listener(local net.Addr) string {
	if local == nil {
		return ""
	}
	ap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return ""
	}
	ip := ap.Addr().Unmap()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	wildcard := ""
	for _, b := range ps.bound {
		if b.addr.Port() != ap.Port() {
			continue
		}
		if b.addr.Addr().Unmap() == ip {
			return b.config
		}
		if b.addr.Addr().IsUnspecified() {
			wildcard = b.config
		}
	}
	return wildcard
}

var (
	errBadDevice     = &pop3front.Error{Code: "AUTH", Text: "Invalid device name"}
	errUnknownDevice = &pop3front.Error{Code: "AUTH", Text: "Unknown device"}
)

// resolve splits the device off a login name and returns the upstream
// user and the session's policy.
func (ps *policies) resolve(login string, info pop3front.ConnInfo) (string, imapback.Policy, error) {
	user, device := login, ""
	if sep := ps.devices.Separator; sep != "" {
		if i := strings.LastIndex(login, sep); i >= 0 {
			user, device = login[:i], strings.ToLower(login[i+1:])
			if user == "" || !imapback.ValidDevice(device) {
				return "", imapback.Policy{}, errBadDevice
			}
		}
	}
	client := addrOf(info.RemoteAddr)
	if device == "" && client.IsValid() {
		for i, n := range ps.addresses {
			if n.Contains(client) {
				device = ps.devices.Addresses[i].Device
				break
			}
		}
	}
	if device != "" && len(ps.devices.Known) > 0 && !slices.Contains(ps.devices.Known, device) {
		return "", imapback.Policy{}, errUnknownDevice
	}

	pol := ps.base
	pol.Device = device
	if device != "" && ps.devices.DeleteWhenAllDeleted {
		pol.AllDevices = ps.devices.Known
	}
	listener := ps.listener(info.LocalAddr)
	for _, r := range ps.rules {
		if !r.matches(user, device, client, listener) {
			continue
		}
		if r.Delete != "" {
			pol.Delete = imapback.DeletePolicy(r.Delete)
		}
		if r.TrashFolder != "" {
			pol.TrashFolder = r.TrashFolder
		}
		if r.Seen != "" {
			pol.Seen = imapback.SeenPolicy(r.Seen)
		}
		if r.MaxAgeDays != nil {
			pol.MaxAgeDays = *r.MaxAgeDays
		}
	}
	return user, pol, nil
}

func (r *rule) matches(user, device string, client netip.Addr, listener string) bool {
	if len(r.Users) > 0 && !slices.ContainsFunc(r.Users, func(p string) bool {
		ok, _ := path.Match(p, user)
		return ok
	}) {
		return false
	}
	if len(r.Devices) > 0 && !slices.Contains(r.Devices, device) {
		return false
	}
	if len(r.networks) > 0 && !slices.ContainsFunc(r.networks, func(n netip.Prefix) bool { return n.Contains(client) }) {
		return false
	}
	if len(r.Listen) > 0 && !slices.Contains(r.Listen, listener) {
		return false
	}
	return true
}

func addrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
