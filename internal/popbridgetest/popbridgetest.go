// Package popbridgetest starts popbridge in front of an in-memory IMAP
// server for the tests of POP3 clients (popbench and its command).
package popbridgetest

import (
	"log/slog"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/proxy/config"
)

// User and Pass log in to the mailbox Start fills.
const (
	User = "alice"
	Pass = "secret"
)

// Start runs popbridge (proxy.Proxy, in this process) in front of an
// in-memory IMAP server whose INBOX holds msgs in order, and returns its
// POP3 address. Both stop when the test ends. Failed logins are answered
// at once, so tests of wrong passwords do not wait.
func Start(t testing.TB, msgs [][]byte) string {
	t.Helper()
	up, err := memimap.Listen(memimap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	up.AddUser(User, Pass)
	for _, m := range msgs {
		if err := up.Append(User, "INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
	noDelay := time.Duration(0)
	cfg := &config.Config{
		Listen:   []config.ListenConfig{{Address: "127.0.0.1:0"}},
		Upstream: config.UpstreamConfig{Address: up.Addr, TLS: "none"},
		Limits:   config.LimitsConfig{AuthFailureDelay: &noDelay},
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); p.Serve() }()
	t.Cleanup(func() { p.Close(); <-done })
	return p.Addrs()[0].String()
}
