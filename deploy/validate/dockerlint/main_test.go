package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(bad, []byte("FROM golang:1.26 as build\nENV A 1\nFROM scratch\nCOPY --from=build $UNDEFINED /a\nCMD serve now\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	n, err := lint(bad, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{":1: FromAsCasing", ":2: LegacyKeyValueFormat", ":4: UndefinedVar", ":5: JSONArgsRecommended"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if n != 4 {
		t.Errorf("%d warnings, want 4", n)
	}

	out.Reset()
	if n, err := lint("../../Dockerfile", &out); err != nil || n != 0 {
		t.Errorf("deploy/Dockerfile: %d warnings, %v:\n%s", n, err, out.String())
	}
}
