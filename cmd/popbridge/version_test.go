package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestIdentify(t *testing.T) {
	info := func(mainVersion string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/popbridge/popbridge", Version: mainVersion}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		name             string
		ver, rev         string
		bi               *debug.BuildInfo
		wantVer, wantRev string
		wantGo           string
	}{
		{"ldflags win", "0.1.0", "abc123", info("v0.0.9", "vcs.revision", "fff"), "0.1.0", "abc123", "go1.99.1"},
		{"go install of a tag", "", "", info("v0.1.0"), "0.1.0", "unknown", "go1.99.1"},
		{"source tree, clean checkout", "", "", info("(devel)", "vcs.revision", "deadbeef", "vcs.modified", "false"), "dev", "deadbeef", "go1.99.1"},
		{"source tree, local changes", "", "", info("(devel)", "vcs.revision", "deadbeef", "vcs.modified", "true"), "dev", "deadbeef-dirty", "go1.99.1"},
		{"ldflags version, stamped commit", "0.2.0", "", info("(devel)", "vcs.revision", "cafe"), "0.2.0", "cafe", "go1.99.1"},
		{"no build information", "", "", nil, "dev", "unknown", runtime.Version()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ver, rev, goVer := identify(tc.ver, tc.rev, tc.bi)
			if ver != tc.wantVer || rev != tc.wantRev || goVer != tc.wantGo {
				t.Errorf("identify = %q, %q, %q; want %q, %q, %q", ver, rev, goVer, tc.wantVer, tc.wantRev, tc.wantGo)
			}
		})
	}
}

// TestVersionLdflags builds the binary as a release does and checks that
// -X sets what `popbridge version` prints.
func TestVersionLdflags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "popbridge")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=9.8.7 -X main.commit=0123abcd", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("popbridge version: %v", err)
	}
	want := "popbridge 9.8.7 (commit 0123abcd, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if string(out) != want {
		t.Errorf("popbridge version printed %q, want %q", out, want)
	}

	var buf bytes.Buffer
	printVersion(&buf)
	if want := "popbridge " + version + " (commit " + commit + ", " + goVersion + ", "; !bytes.HasPrefix(buf.Bytes(), []byte(want)) {
		t.Errorf("printVersion wrote %q, want it to start with %q", buf.String(), want)
	}
}
