package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/popbridgetest"

	"github.com/popbridge/popbridge/internal/popbench"
)

func TestRetrAllPrintsTextAndJSON(t *testing.T) {
	msgs := [][]byte{[]byte("Subject: a\r\n\r\n.dot\r\n"), []byte("Subject: b\r\n\r\nbody\r\n")}
	addr := popbridgetest.Start(t, msgs)
	dir := t.TempDir()
	expect := filepath.Join(dir, "expect.json")
	var e bytes.Buffer
	if err := popbench.WriteExpected(&e, msgs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(expect, e.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POPBENCH_PASS", "secret")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", addr, "-user", "alice", "-mode", "retr-all",
		"-c", "2", "-n", "4", "-pipeline", "4", "-expect", expect, "-json", "-"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var rep popbench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Sessions != 4 || rep.Messages != 8 || rep.Errors != 0 || rep.Latency["RETR"].Count != 8 {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(stderr.String(), "messages/s") || !strings.Contains(stderr.String(), "RETR") {
		t.Errorf("text report missing from stderr:\n%s", stderr.String())
	}
}

func TestFailedChecksExitWithOne(t *testing.T) {
	addr := popbridgetest.Start(t, [][]byte{[]byte("Subject: a\r\n\r\nbody\r\n")})
	dir := t.TempDir()
	expect := filepath.Join(dir, "expect.json")
	var e bytes.Buffer
	popbench.WriteExpected(&e, [][]byte{[]byte("Subject: other\r\n\r\nbody\r\n")})
	os.WriteFile(expect, e.Bytes(), 0o644)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", addr, "-user", "alice", "-pass", "secret", "-mode", "retr-all", "-expect", expect}, &stdout, &stderr)
	if code != exitFail || !strings.Contains(stdout.String(), "error:") {
		t.Fatalf("exit %d, stdout:\n%s", code, stdout.String())
	}
}

func TestBadUsageExitsWithTwo(t *testing.T) {
	for _, args := range [][]string{
		{},                              // no -user
		{"-user", "a", "-mode", "fast"}, // unknown mode
		{"-user", "a", "stray"},         // extra argument
		{"-user", "a", "-expect", "/nonexistent"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}
