package popbench

import (
	"testing"

	"go.uber.org/goleak"
)

// Every session, relay and server goroutine must be gone when the tests
// end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
