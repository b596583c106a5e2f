package proxy

// Policy resolution: the device, the folder and the policy of each login.

import (
	"cmp"
	"net"
	"net/netip"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

// policies resolves the policy of each login from the checked config.
type policies struct {
	base      imapback.Policy
	devices   config.DevicesConfig
	addresses []netip.Prefix // parallel to devices.Addresses
	rules     []rule
	folderSep string // policy.folders.separator

	mu sync.Mutex
	// bound lists the listeners' bound addresses with their configured
	// address, to tell which listener a connection came in on.
	bound []boundListener
}

type rule struct {
	config.PolicyRule
	networks  []netip.Prefix
	startDate time.Time
}

type boundListener struct {
	addr   netip.AddrPort
	config string
}

func newPolicies(c *config.Config) *policies {
	p := c.Policy
	ps := &policies{
		base: imapback.Policy{Delete: p.Delete, TrashFolder: p.TrashFolder, Seen: p.Seen,
			MaxAgeDays: p.MaxAgeDays, RetentionDays: p.RetentionDays},
		devices:   p.Devices,
		folderSep: p.Folders.Separator,
	}
	ps.base.StartDate, _ = config.ParseStartDate(p.StartDate) // checked by Check
	for _, a := range p.Devices.Addresses {
		n, _ := config.ParseNetwork(a.Network) // checked by Check
		ps.addresses = append(ps.addresses, n)
	}
	for _, r := range p.Rules {
		cr := rule{PolicyRule: r}
		cr.startDate, _ = config.ParseStartDate(r.StartDate)
		for _, s := range r.Networks {
			n, _ := config.ParseNetwork(s)
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
// came in on (local: ConnInfo.Listener, never what a PROXY header named):
// the one bound to exactly that address, else a wildcard one on its port.
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

// resolve splits the device and the folder off a login name and
// returns the upstream user and the session's policy.
func (ps *policies) resolve(login string, info pop3front.ConnInfo) (string, imapback.Policy, error) {
	n, err := ps.split(login)
	if err != nil {
		return "", imapback.Policy{}, err
	}
	pol, err := ps.policy(n, info)
	if err != nil {
		return "", imapback.Policy{}, err
	}
	return n.user, pol, nil
}

// policy returns the policy of a login: its device (named, else by the
// client's address), the rules that match, then the folder it named.
func (ps *policies) policy(n loginName, info pop3front.ConnInfo) (imapback.Policy, error) {
	device := n.device
	client := pop3front.AddrIP(info.RemoteAddr)
	if device == "" && client.IsValid() {
		for i, a := range ps.addresses {
			if a.Contains(client) {
				device = ps.devices.Addresses[i].Device
				break
			}
		}
	}
	if device != "" && len(ps.devices.Known) > 0 && !slices.Contains(ps.devices.Known, device) {
		return imapback.Policy{}, errUnknownDevice
	}

	pol := ps.base
	pol.Device = device
	if device != "" && ps.devices.DeleteWhenAllDeleted {
		pol.AllDevices = ps.devices.Known
	}
	listener := ps.listener(info.Listener)
	for _, r := range ps.rules {
		if !r.matches(n.user, device, client, listener) {
			continue
		}
		override(&pol.Delete, r.Delete)
		override(&pol.TrashFolder, r.TrashFolder)
		override(&pol.Seen, r.Seen)
		if r.MaxAgeDays != nil {
			pol.MaxAgeDays = *r.MaxAgeDays
		}
		if r.StartDate != "" {
			pol.StartDate = r.startDate
		}
		pol.RetentionDays = *cmp.Or(r.RetentionDays, &pol.RetentionDays) // a rule's 0 turns it off
		pol.SetFolders(r.Mailbox, r.Mailboxes)
	}
	pol.SetFolders(n.folder, nil)
	return pol, nil
}

// override sets *dst to v unless v is unset (the zero value).
func override[T comparable](dst *T, v T) {
	var unset T
	if v != unset {
		*dst = v
	}
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
