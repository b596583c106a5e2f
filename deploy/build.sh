#!/bin/sh
# Builds the static popbridge binary: the one flag set used by the container
# image (deploy/Dockerfile), CI (.ci/run) and anyone packaging popbridge.
#   deploy/build.sh [OUTPUT]        VERSION=1.2.3 deploy/build.sh
set -eu
cd "$(dirname "$0")/.."
out=${1:-popbridge}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
# Static (no cgo: the pure-Go resolver), reproducible paths, no symbol table.
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
  -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/popbridge
