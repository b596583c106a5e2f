package pop3front

import (
	"net"
	"net/netip"
	"testing"
)

// strAddr is a net.Addr known only by its string, as a PROXY protocol
// listener's client address may be.
type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

func TestAddrIP(t *testing.T) {
	var nilTCP *net.TCPAddr
	for _, tc := range []struct {
		name string
		addr net.Addr
		want string // "" for the zero Addr
	}{
		{"nil", nil, ""},
		{"nil TCPAddr", nilTCP, ""},
		{"TCP IPv4", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 110}, "192.0.2.1"},
		{"TCP IPv4 as 4 bytes", &net.TCPAddr{IP: net.IP{192, 0, 2, 1}, Port: 110}, "192.0.2.1"},
		{"TCP IPv4-in-IPv6", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 110}, "192.0.2.1"},
		{"TCP IPv6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 110}, "2001:db8::1"},
		{"TCP IPv6 zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 110, Zone: "eth0"}, "fe80::1"},
		{"TCP without IP", &net.TCPAddr{Port: 110}, ""},
		{"UDP IPv4-in-IPv6", &net.UDPAddr{IP: net.ParseIP("::ffff:198.51.100.7"), Port: 53}, "198.51.100.7"},
		{"string IPv4", strAddr("203.0.113.9:4711"), "203.0.113.9"},
		{"string IPv4-in-IPv6", strAddr("[::ffff:203.0.113.9]:4711"), "203.0.113.9"},
		{"string IPv6 zone", strAddr("[fe80::2%eth1]:4711"), "fe80::2"},
		{"string without port", strAddr("203.0.113.9"), ""},
		{"string host name", strAddr("mail.example:110"), ""},
		{"unix socket", &net.UnixAddr{Name: "/run/pop3.sock", Net: "unix"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want netip.Addr
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got := AddrIP(tc.addr); got != want {
				t.Errorf("AddrIP(%v) = %v, want %v", tc.addr, got, want)
			}
		})
	}
}
