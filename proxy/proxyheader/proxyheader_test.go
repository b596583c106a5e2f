package proxyheader

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/popbridge/popbridge/pop3front"
)

// A header with addresses makes the connection Proxied, with them as its
// addresses; a LOCAL header (a proxy's health check) names none.
func TestProxiedOnlyWithAddresses(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(tcp, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, 5*time.Second, slog.New(slog.DiscardHandler))
	defer ln.Close()
	src := &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40001}
	dst := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 995}
	for _, tc := range []struct {
		header  *proxyproto.Header
		proxied bool
	}{
		{&proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4, SourceAddr: src, DestinationAddr: dst}, true},
		{&proxyproto.Header{Version: 1, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4, SourceAddr: src, DestinationAddr: dst}, true},
		{&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}, false},
	} {
		client, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tc.header.WriteTo(client); err != nil {
			t.Fatal(err)
		}
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		pc, ok := nc.(pop3front.ProxiedConn)
		if !ok {
			t.Fatalf("%T is not a pop3front.ProxiedConn", nc)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if got := pc.Proxied(); got != tc.proxied {
			t.Errorf("v%d %v: Proxied() = %v, want %v", tc.header.Version, tc.header.Command, got, tc.proxied)
		}
		if wantSrc := client.LocalAddr().String(); tc.proxied {
			if nc.RemoteAddr().String() != src.String() || nc.LocalAddr().String() != dst.String() {
				t.Errorf("addresses %v -> %v, want the header's %v -> %v", nc.RemoteAddr(), nc.LocalAddr(), src, dst)
			}
		} else if nc.RemoteAddr().String() != wantSrc {
			t.Errorf("RemoteAddr %v, want the socket's %v", nc.RemoteAddr(), wantSrc)
		}
		client.Close()
		nc.Close()
	}
}
