package proctest

import (
	"errors"
	"testing"
)

// A try that fails is stopped and, while tries remain and the failure is
// worth another, tried again.
func TestLaunchRetriesAndStopsFailedTries(t *testing.T) {
	var tries, stops int
	(&Launch{
		Harness: "launchtest",
		Try: func() error {
			tries++
			if tries < StartTries {
				return ErrForeign
			}
			return nil
		},
		Stop:  func() { stops++ },
		Retry: func(err error) bool { return errors.Is(err, ErrForeign) },
		Log:   func() string { return "" },
	}).Run(t)
	if tries != StartTries || stops != StartTries-1 {
		t.Fatalf("%d tries, %d stops; want %d and %d", tries, stops, StartTries, StartTries-1)
	}
}
