package proxy

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/authhttp"
	"github.com/popbridge/popbridge/proxy/config"
)

// A refusal by the hook is answered with the hook's text, and counts as
// a failed login for the rate limits.
func TestHookRefusalKeepsItsTextAndCountsAsAFailedLogin(t *testing.T) {
	err := error(hookDenied{&authhttp.DeniedError{Status: "Account locked"}})
	var pe *pop3front.Error
	if !errors.As(err, &pe) || pe.Code != "AUTH" || pe.Text != "Account locked" {
		t.Fatalf("reply %v, want [AUTH] Account locked", pe)
	}
	if !errors.Is(err, pop3front.ErrAuthFailed) || !errors.Is(err, authhttp.ErrDenied) {
		t.Fatal("a refusal must count as a failed login and stay a refusal")
	}
}

// One Backend per server and TLS settings: answers for the same target
// share it, other targets get their own with their own settings, and no
// more than maxHookBackends are kept.
func TestHookTargetsShareBackendsWithinABound(t *testing.T) {
	cfg := testConfig("127.0.0.1:143")
	cfg.Upstreams = map[string]config.UpstreamConfig{"corp": {Address: "imap.corp.example:993", TLS: imapback.TLSImplicit}}
	cfg.AuthHTTP = authhttp.Config{URL: "http://127.0.0.1:9/auth", Servers: []authhttp.Server{{Network: "10.0.0.0/8", TLS: "starttls"}}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	h, err := newAuthHook(cfg, newPolicies(cfg), Hooks{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	at := func(addr string) netip.AddrPort { return netip.MustParseAddrPort(addr) }
	server := &cfg.AuthHTTP.Servers[0]
	b1, name, err := h.targets.backend(authhttp.Answer{Addr: at("10.0.0.5:143"), Server: server})
	if err != nil {
		t.Fatal(err)
	}
	if b2, _, _ := h.targets.backend(authhttp.Answer{Addr: at("10.0.0.5:143"), Server: server}); b2 != b1 {
		t.Error("two answers for one server built two Backends")
	}
	if b3, _, _ := h.targets.backend(authhttp.Answer{Addr: at("10.0.0.5:143"), Upstream: "corp"}); b3 == b1 {
		t.Error("one Backend for two TLS settings")
	}
	if name != "auth_http:10.0.0.5:143" {
		t.Errorf("name %q", name)
	}
	opts, err := h.targets.options(hookTarget{addr: at("10.0.0.7:993"), upstream: "corp"})
	if err != nil || opts.Address != "10.0.0.7:993" || opts.TLS != imapback.TLSImplicit || opts.TLSConfig.ServerName != "imap.corp.example" ||
		opts.ReadAheadShared != h.targets.budget {
		t.Errorf("options for corp at another address: %+v, %v", opts, err)
	}
	opts, err = h.targets.options(hookTarget{addr: at("10.0.0.5:143"), server: *server})
	if err != nil || opts.TLS != imapback.TLSStartTLS || opts.TLSConfig.ServerName != "" {
		t.Errorf("options for a servers entry: %+v, %v", opts, err)
	}
	for i := range maxHookBackends + 10 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 143)
		if _, _, err := h.targets.backend(authhttp.Answer{Addr: addr, Server: server}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.targets.backends); n != maxHookBackends || len(h.targets.order) != n {
		t.Errorf("%d Backends kept (%d in order), want %d", n, len(h.targets.order), maxHookBackends)
	}
}
