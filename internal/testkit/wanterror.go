package testkit

// WantError, the check of table tests whose cases either pass or fail
// with a known message.

import (
	"strings"
	"testing"
)

// WantError fails t unless err is what a case wants: no error when want
// is "", else an error whose text holds want. what, the case, is printed
// with %+v in the failure.
func WantError(t testing.TB, what any, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%+v: %v, want no error", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%+v: %v, want an error with %q", what, err, want)
	}
}
