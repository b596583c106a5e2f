package proxy

// Who may do what: the trusted networks, and certificate reloads.

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

// netSet is a set of networks.
type netSet []netip.Prefix

func (s netSet) contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// plaintextPolicy allows USER/PASS and AUTH PLAIN without TLS only from
// the trusted networks.
func plaintextPolicy(trustedNetworks []string) func(pop3front.ConnInfo) bool {
	nets, _ := config.ParseNetworks(trustedNetworks) // checked by Check
	trusted := netSet(nets)
	return func(info pop3front.ConnInfo) bool { return trusted.contains(pop3front.AddrIP(info.RemoteAddr)) }
}

// ReloadCertificates reads every listener's certificate and key files
// again (for SIGHUP; changed files are also picked up by themselves within
// a second of the next handshake). On error the listeners keep their old
// certificates.
func (p *Proxy) ReloadCertificates() error {
	var errs []error
	for _, bl := range p.listeners {
		if bl.cert != nil {
			if err := bl.cert.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("listen %s: %w", bl.cfg.Address, err))
			}
		}
	}
	return errors.Join(errs...)
}
