package proxy

import (
	"net"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

func TestResolveSplitsDevicesAndAppliesRules(t *testing.T) {
	cfg, err := config.ParseConfig([]byte(`
upstream:
  address: imap.example.com:993
listen:
  - address: "0.0.0.0:110"
  - address: "127.0.0.1:1110"
policy:
  seen: quit
  devices:
    separator: "+"
    known: [laptop, scanner, erp]
    delete_when_all_deleted: true
    addresses:
      - network: 192.0.2.0/28
        device: scanner
  rules:
    - users: ["*@example.org"]
      delete: trash
      trash_folder: Papierkorb
    - devices: [scanner]
      seen: never
      max_age_days: 7
    - listen: ["127.0.0.1:1110"]
      networks: ["127.0.0.0/8", "::1"]
      delete: keep
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	ps := newPolicies(cfg)
	ps.bind("0.0.0.0:110", &net.TCPAddr{IP: net.IPv4zero, Port: 110})
	ps.bind("127.0.0.1:1110", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1110})
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	known := []string{"laptop", "scanner", "erp"}

	for _, tc := range []struct {
		login         string
		remote, local net.Addr
		wantUser      string
		wantErr       error
		want          imapback.Policy
	}{
		{"bob", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "bob", nil,
			imapback.Policy{Delete: "expunge", Seen: "quit"}},
		{"bob+laptop", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "bob", nil,
			imapback.Policy{Delete: "expunge", Seen: "quit", Device: "laptop", AllDevices: known}},
		{"Bob+LAPTOP", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "Bob", nil,
			imapback.Policy{Delete: "expunge", Seen: "quit", Device: "laptop", AllDevices: known}},
		// The last separator splits: user names may contain it.
		{"bob+tag@example.org+erp", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "bob+tag@example.org", nil,
			imapback.Policy{Delete: "trash", TrashFolder: "Papierkorb", Seen: "quit", Device: "erp", AllDevices: known}},
		// A device by address; a device in the login wins.
		{"carol", tcp("192.0.2.9", 5000), tcp("203.0.113.1", 110), "carol", nil,
			imapback.Policy{Delete: "expunge", Seen: "never", Device: "scanner", AllDevices: known, MaxAgeDays: 7}},
		{"carol+laptop", tcp("192.0.2.9", 5000), tcp("203.0.113.1", 110), "carol", nil,
			imapback.Policy{Delete: "expunge", Seen: "quit", Device: "laptop", AllDevices: known}},
		// Listener and network rule, IPv4 and IPv6 clients.
		{"dave", tcp("127.0.0.1", 5000), tcp("127.0.0.1", 1110), "dave", nil,
			imapback.Policy{Delete: "keep", Seen: "quit"}},
		{"dave", tcp("127.0.0.1", 5000), tcp("127.0.0.1", 110), "dave", nil,
			imapback.Policy{Delete: "expunge", Seen: "quit"}},
		{"dave@example.org", tcp("::1", 5000), tcp("127.0.0.1", 1110), "dave@example.org", nil,
			imapback.Policy{Delete: "keep", TrashFolder: "Papierkorb", Seen: "quit"}},
		{"bob+phone", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "", errUnknownDevice, imapback.Policy{}},
		{"bob+", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "", errBadDevice, imapback.Policy{}},
		{"+laptop", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "", errBadDevice, imapback.Policy{}},
		{"bob+lap top", tcp("198.51.100.1", 5000), tcp("203.0.113.1", 110), "", errBadDevice, imapback.Policy{}},
	} {
		user, pol, err := ps.resolve(tc.login, pop3front.ConnInfo{RemoteAddr: tc.remote, LocalAddr: tc.local, Listener: tc.local})
		if err != tc.wantErr || user != tc.wantUser || !samePolicy(pol, tc.want) {
			t.Errorf("resolve(%q from %v to %v) = %q, %+v, %v; want %q, %+v, %v",
				tc.login, tc.remote, tc.local, user, pol, err, tc.wantUser, tc.want, tc.wantErr)
		}
	}
}

func samePolicy(a, b imapback.Policy) bool {
	return a.Delete == b.Delete && a.TrashFolder == b.TrashFolder && a.Seen == b.Seen && a.Device == b.Device &&
		slices.Equal(a.AllDevices, b.AllDevices) && a.MaxAgeDays == b.MaxAgeDays
}
