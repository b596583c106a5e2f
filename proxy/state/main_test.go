package state

import (
	"testing"

	"go.uber.org/goleak"
)

// The renewers and the Redis clients' goroutines must be gone once every
// store is closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
