package benchrig

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/testkit"
)

// The rig runs end to end on small mailboxes: every target answers every
// scenario correctly (popbench verifies each message) and every figure is
// there. The figures themselves are BENCHMARKS.md's business.
func TestRigRunsEveryScenarioAgainstEveryTarget(t *testing.T) {
	if !dovecottest.Available() || os.Geteuid() != 0 {
		testkit.Unavailable(t, "the rig needs Dovecot and root")
	}
	t.Parallel()
	dir, err := os.MkdirTemp("", "rigtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "popbridge")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/popbridge").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var log strings.Builder
	res, err := Run(context.Background(), Config{
		Dir: dir, Popbridge: bin, Rounds: 1, Small: 60, Mixed: 100, IdleSessions: 30, HugeSize: 3 << 20, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(res.Results) != 10 {
		t.Errorf("%d scenarios measured, want 10", len(res.Results))
	}
	for _, r := range res.Results {
		targets := []string{Native, Popbridge, Gateway}
		if strings.Contains(r.Scenario, "cache") {
			targets = targets[:2] // the snapshot cache's figures: popbridge instances against native only
		}
		for _, target := range targets {
			if v := r.Values[target]; len(v) != 1 || v[0] <= 0 {
				t.Errorf("%s: %s measured %v", r.Scenario, target, v)
			}
			if c := r.CPU[target]; len(c) != 1 || c[0].Store < 0 || c[0].Front < 0 {
				t.Errorf("%s: %s processor time %+v", r.Scenario, target, c)
			}
		}
	}
	// The mixed profile makes every process work for long enough to
	// count (/proc counts in hundredths of a second).
	for _, r := range res.Results {
		if !strings.HasPrefix(r.Scenario, "mixed profile") {
			continue
		}
		for _, target := range []string{Native, Popbridge, Gateway} {
			if c := r.CPU[target]; len(c) != 1 || c[0].Store <= 0 || target != Native && c[0].Front <= 0 {
				t.Errorf("%s: %s processor time %+v", r.Scenario, target, c)
			}
		}
	}
	if m := res.Memory; m == nil || m.IdleRSSAfterKiB <= 0 || m.HugePeakKiB <= 0 {
		t.Errorf("memory figures missing: %+v", m)
	}
	if !strings.Contains(log.String(), "| login+STAT, 60 small |") || !strings.Contains(log.String(), "| mixed profile, 100 mixed, 8 sessions | ") {
		t.Errorf("no result table in the log:\n%s", log.String())
	}
}
