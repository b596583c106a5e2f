#!/bin/sh
# Builds the static popbridge binary: the one flag set used by the container
# image (deploy/Dockerfile), CI (.ci/deploy.sh) and anyone packaging popbridge
# by hand, and deploy/release.sh for the release archives and packages.
#   deploy/build.sh [OUTPUT]        VERSION=1.2.3 COMMIT=abc123 deploy/build.sh
set -eu
cd "$(dirname "$0")/.."
out=${1:-popbridge}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
version=${version#v}
commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
# Static (no cgo: the pure-Go resolver), reproducible paths, no symbol table.
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
  -ldflags "-s -w -X main.version=$version -X main.commit=$commit" -o "$out" ./cmd/popbridge
