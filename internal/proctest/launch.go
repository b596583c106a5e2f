package proctest

// Launch, how a harness starts its server: tries on fresh ports, and the
// server's output shown when the test fails.

import "testing"

// StartTries is how many times Launch.Run tries to start a server.
const StartTries = 3

// Launch says how a harness starts its server.
type Launch struct {
	// Harness ("dovecottest") starts every message.
	Harness string
	// Try starts the server on fresh ports and waits until it is ready.
	// A try most often fails because another process took a port
	// between FreePorts and the server's bind.
	Try func() error
	// Stop ends what a failed Try started.
	Stop func()
	// Retry says whether a failed Try is worth another; nil: any is.
	Retry func(error) bool
	// Log is the server's output so far.
	Log func() string
}

// Run calls Try until it succeeds, at most StartTries times, and fails t
// with the last error and the server's output when no try succeeded.
// Once the server runs, its output is logged if t ends failed.
func (l *Launch) Run(t testing.TB) {
	t.Helper()
	for try := 1; ; try++ {
		err := l.Try()
		if err == nil {
			break
		}
		l.Stop()
		if try < StartTries && (l.Retry == nil || l.Retry(err)) {
			t.Logf("%s: attempt %d: %v; retrying with new ports", l.Harness, try, err)
			continue
		}
		t.Fatalf("%s: starting the server failed (attempt %d): %v\n%s", l.Harness, try, err, l.Log())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: server output:\n%s", l.Harness, l.Log())
		}
	})
}
