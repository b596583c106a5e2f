package metrics

import (
	"strings"
	"testing"
)

func TestStateStoreErrorsAreCountedByFeature(t *testing.T) {
	m := New("test")
	m.State().StoreError("locks")
	m.State().StoreError("locks") // a second observer counts into the same series
	_, body := get(t, m.Handler(), "/metrics")
	for _, want := range []string{
		`popbridge_state_store_errors_total{feature="locks"} 2`,
		`popbridge_state_store_errors_total{feature="logins"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in:\n%s", want, body)
		}
	}
}

func TestSizeMismatchesAreCounted(t *testing.T) {
	m := New("test")
	m.Sizes().SizeMismatch()
	m.Sizes().SizeMismatch()
	if _, body := get(t, m.Handler(), "/metrics"); !strings.Contains(body, "popbridge_pop3_size_mismatches_total 2") {
		t.Errorf("no size mismatch count of 2 in:\n%s", body)
	}
}
