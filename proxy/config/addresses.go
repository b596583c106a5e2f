package config

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// The addresses popbridge binds, checked so that a file check-config
// accepts also starts: ports in range, host names that resolve (this is
// the one check that asks DNS), addresses of this machine, and no address
// bound twice. Only a port that another process holds is left to the
// start.

// lookupHost resolves a listen host; tests replace it.
var lookupHost = net.DefaultResolver.LookupHost

// localAddrs returns the addresses of this machine's interfaces; tests
// replace it. Where they cannot be listed (a sandbox without netlink
// sockets, such as the systemd unit's RestrictAddressFamilies), the check
// that a listen address is this machine's is skipped.
var localAddrs = func() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	for _, a := range ifas {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			addrs = append(addrs, p.Addr().Unmap())
		}
	}
	return addrs, nil
}

// resolveTimeout bounds the lookup of one listen host.
const resolveTimeout = 5 * time.Second

// bindAddr is one address popbridge listens on, by key path.
type bindAddr struct{ key, addr string }

// bindAddrs lists every address popbridge binds: the POP3 listeners and
// the HTTP listener.
func (c *Config) bindAddrs() []bindAddr {
	var out []bindAddr
	for i, l := range c.Listen {
		out = append(out, bindAddr{fmt.Sprintf("listen[%d].address", i), l.Address})
	}
	if c.Metrics.Listen != "" {
		out = append(out, bindAddr{"metrics.listen", c.Metrics.Listen})
	}
	if c.Admin.Listen != "" {
		out = append(out, bindAddr{"admin.listen", c.Admin.Listen})
	}
	return out
}

// checkAddresses checks the bound addresses and the upstreams' ports.
func (c *Config) checkAddresses() []error {
	var errs []error
	type bound struct {
		key  string
		ips  []netip.Addr // none: every address (an empty host)
		port int
	}
	var taken []bound
	var local []netip.Addr
	for _, b := range c.bindAddrs() {
		host, portStr, err := net.SplitHostPort(b.addr)
		if err != nil {
			continue // reported by the section's own check
		}
		port, err := checkPort(portStr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %v", b.key, b.addr, err))
			continue
		}
		ips, err := resolve(host)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %v", b.key, b.addr, err))
			continue
		}
		if len(ips) > 0 && !ips[0].IsUnspecified() {
			if local == nil {
				local, _ = localAddrs()
			}
			// All of 127.0.0.0/8 is this machine's, as Linux routes it.
			if local != nil && !slices.Contains(local, ips[0]) && !(ips[0].Is4() && ips[0].IsLoopback()) {
				errs = append(errs, fmt.Errorf("%s: %q: %s is not an address of this machine", b.key, b.addr, ips[0]))
				continue
			}
		}
		if len(ips) > 0 && ips[0].IsUnspecified() {
			ips = nil
		}
		// Port 0 picks a free port each time: it never collides.
		if port != 0 {
			for _, t := range taken {
				if t.port == port && (t.ips == nil || ips == nil || t.ips[0] == ips[0]) {
					errs = append(errs, fmt.Errorf("%s: %q is bound by %s too", b.key, b.addr, t.key))
					break
				}
			}
		}
		if len(ips) > 1 {
			ips = ips[:1] // net.Listen binds the first address only
		}
		taken = append(taken, bound{b.key, ips, port})
	}
	keys := []string{"upstream"}
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		keys = append(keys, "upstreams."+name)
	}
	for _, key := range keys {
		u := c.Upstream
		if key != "upstream" {
			u = c.Upstreams[key[len("upstreams."):]]
		}
		if _, portStr, err := net.SplitHostPort(u.Address); err == nil {
			if _, err := checkPort(portStr); err != nil {
				errs = append(errs, fmt.Errorf("%s.address: %q: %v", key, u.Address, err))
			}
		}
	}
	return errs
}

// checkPort parses a port number or a service name, as net.Listen does.
func checkPort(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 65535 {
			return 0, fmt.Errorf("port %d is out of range (0 to 65535)", n)
		}
		return n, nil
	}
	n, err := net.LookupPort("tcp", s)
	if err != nil {
		return 0, fmt.Errorf("unknown port %q", s)
	}
	return n, nil
}

// resolve returns the addresses of a listen host, as net.Listen would
// bind them; none for an empty host (every address).
func resolve(host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	names, err := lookupHost(ctx, host)
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("host %q does not resolve", host)
	}
	var ips []netip.Addr
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, a.Unmap())
		}
	}
	// net.Listen prefers an IPv4 address.
	slices.SortStableFunc(ips, func(a, b netip.Addr) int {
		if a.Is4() == b.Is4() {
			return 0
		}
		if a.Is4() {
			return -1
		}
		return 1
	})
	return ips, nil
}
