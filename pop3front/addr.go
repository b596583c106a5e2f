// addr.go holds AddrIP, the one way popbridge takes a client's IP address
// from a net.Addr, for per-address limits and trusted networks alike.

package pop3front

import (
	"net"
	"net/netip"
)

// AddrIP returns the IP address of a, or the zero Addr when a carries
// none. It understands *net.TCPAddr, *net.UDPAddr and any address whose
// String is "host:port" with a literal IP (such as a PROXY protocol
// client's). The result is unmapped (an IPv4 client on a dual-stack
// socket is its IPv4 address, so that it matches IPv4 prefixes) and has
// no IPv6 zone (a zoned address matches no netip.Prefix, and the same
// client must count the same whatever type its address has).
func AddrIP(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		if a == nil {
			return netip.Addr{}
		}
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		if a == nil {
			return netip.Addr{}
		}
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone("")
}
