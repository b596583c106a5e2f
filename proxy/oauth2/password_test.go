package oauth2

// Tests of CheckPassword, the local password check of an account.

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/oauthtest"
	"github.com/popbridge/popbridge/proxy/config"
)

// Local password checks queue once 2×GOMAXPROCS run (each argon2id check
// takes 19 MiB), and a login waits only as long as its context allows.
// Not parallel: it fills the process-wide semaphore.
func TestLocalPasswordChecksAreBoundedAndRespectTheContext(t *testing.T) {
	cfg, err := config.ParseConfig([]byte("upstream: {address: 127.0.0.1:143}\n" +
		oauthtest.ConfigSection(t, oauthtest.Start(t, oauthtest.Options{}), "code", "")))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	a, _ := cfg.OAuth2.Account(oauthtest.FixtureAccount)
	if cap(passwordChecks) != 2*runtime.GOMAXPROCS(0) {
		t.Errorf("%d concurrent checks allowed, want 2×GOMAXPROCS = %d", cap(passwordChecks), 2*runtime.GOMAXPROCS(0))
	}
	for range cap(passwordChecks) {
		passwordChecks <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	ok, err := CheckPassword(ctx, a, "local-pw")
	cancel()
	if ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with every slot taken: ok %v err %v, want the context's deadline", ok, err)
	}
	<-passwordChecks // one slot frees up
	done := make(chan bool)
	go func() {
		ok, _ := CheckPassword(context.Background(), a, "local-pw")
		done <- ok
	}()
	if !<-done {
		t.Error("the right password failed once a slot was free")
	}
	for range cap(passwordChecks) - 1 {
		<-passwordChecks
	}
	if ok, err := CheckPassword(context.Background(), a, "wrong-local-pw"); ok || err != nil {
		t.Errorf("wrong password: ok %v err %v", ok, err)
	}
}
