package config

import (
	"net/netip"
	"testing"
)

func TestParseNetworkUnmapsAndMasks(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for an error
		client   string // an address the network must contain
	}{
		{"10.0.0.0/8", "10.0.0.0/8", "10.1.2.3"},
		{"10.1.2.3/8", "10.0.0.0/8", "10.200.0.1"},
		{" 192.0.2.7 ", "192.0.2.7/32", "192.0.2.7"},
		{"::ffff:10.0.0.1", "10.0.0.1/32", "10.0.0.1"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", "10.9.9.9"},
		{"2001:db8::/32", "2001:db8::/32", "2001:db8::1"},
		{"::1", "::1/128", "::1"},
		{"::/0", "::/0", "2001:db8::1"},
		{"10.0.0.0/33", "", ""},
		{"example.com", "", ""},
		{"", "", ""},
	} {
		p, err := ParseNetwork(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseNetwork(%q) = %v, want an error", tc.in, p)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			continue
		}
		// Clients are matched by their unmapped address.
		if !p.Contains(netip.MustParseAddr(tc.client).Unmap()) {
			t.Errorf("ParseNetwork(%q) = %v does not contain %s", tc.in, p, tc.client)
		}
	}
	if _, err := ParseNetworks([]string{"10.0.0.0/8", "nope", "::1"}); err == nil {
		t.Error("ParseNetworks accepted a list with a bad entry")
	}
}
