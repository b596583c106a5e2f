// The build's identity that `popbridge version` prints and the
// popbridge_build_info metric carries: version, commit and Go version.
package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version and commit are set by release builds (deploy/build.sh, which
// deploy/release.sh calls):
//
//	go build -ldflags "-X main.version=0.1.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/popbridge
//
// Left empty, they come from what the go command recorded in the binary:
// `go install github.com/popbridge/popbridge/cmd/popbridge@v0.1.0` records
// the module version, a build in a git checkout its revision.
var version, commit string

// goVersion is the Go release the binary was built with.
var goVersion string

// init settles the three before anything reads them, so that the version
// verb and the metric never disagree.
func init() {
	bi, _ := debug.ReadBuildInfo()
	version, commit, goVersion = identify(version, commit, bi)
}

// identify fills what -ldflags left empty from the build information bi
// (nil when the binary has none): the version "dev" and the commit
// "unknown" when nothing says better.
func identify(ver, rev string, bi *debug.BuildInfo) (string, string, string) {
	goVer := runtime.Version()
	if bi != nil {
		if bi.GoVersion != "" {
			goVer = bi.GoVersion
		}
		// "(devel)" is a build of the main module from its own source tree.
		if v := bi.Main.Version; ver == "" && v != "" && v != "(devel)" {
			ver = strings.TrimPrefix(v, "v")
		}
		if rev == "" {
			rev = vcsRevision(bi.Settings)
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev, goVer
}

// vcsRevision is the commit the go command stamped (with -buildvcs, the
// default in a git checkout), marked -dirty for uncommitted changes.
func vcsRevision(settings []debug.BuildSetting) string {
	var rev string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" && modified {
		rev += "-dirty"
	}
	return rev
}

// printVersion writes one line, for people and scripts alike:
//
//	popbridge 0.1.0 (commit 3f2c1e0..., go1.26.10, linux/amd64)
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "popbridge %s (commit %s, %s, %s/%s)\n", version, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}
