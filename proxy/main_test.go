package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// Every session, upstream connection and server goroutine must be gone
// when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
