// Command dockerlint checks Dockerfiles offline with BuildKit's own rules,
// those of `docker build --check` (undefined variables and build
// arguments, JSON arguments, casing, legacy forms...), for every stage and
// without pulling a base image: CI has neither a Docker daemon nor hadolint.
//
//	dockerlint deploy/Dockerfile
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerlint DOCKERFILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		n, err := lint(path, os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dockerlint: %s: %v\n", path, err)
			failed = true
			continue
		}
		if n > 0 {
			failed = true
		}
		fmt.Printf("%s: %d warnings\n", path, n)
	}
	if failed {
		os.Exit(1)
	}
}

// offline answers every base image with an empty configuration instead of
// asking its registry.
type offline struct{}

func (offline) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, "", []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers"}}`), nil
}

// lint writes one line per warning to w and returns how many there were;
// a Dockerfile that does not parse is an error.
func lint(path string, w io.Writer) (int, error) {
	dt, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sm := llb.NewSourceMap(nil, path, "Dockerfile", dt)
	sm.Definition = &llb.Definition{}
	res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		// A platform other than the build machine's, as a cross build has.
		TargetPlatform: &ocispecs.Platform{OS: "linux", Architecture: "arm64"},
		SourceMap:      sm,
		MetaResolver:   offline{},
	})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, fmt.Errorf("%s", res.Error.Message)
	}
	for _, warn := range res.Warnings {
		line := 0
		if len(warn.Location.Ranges) > 0 {
			line = int(warn.Location.Ranges[0].Start.Line)
		}
		fmt.Fprintf(w, "%s:%d: %s: %s\n", path, line, warn.RuleName, warn.Detail)
	}
	return len(res.Warnings), nil
}
