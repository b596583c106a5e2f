#!/usr/bin/env bash
# Builds every release artefact but the image, for linux amd64 and arm64:
#   deploy/release.sh VERSION OUTDIR         e.g. deploy/release.sh 0.1.0 dist
# makes in OUTDIR (which must be empty or absent):
#   popbridge_VERSION_linux_ARCH.tar.gz            the binary, README.md, LICENSE,
#                                                  CHANGELOG.md, the example config
#                                                  and the systemd unit
#   popbridge_VERSION_linux_ARCH.tar.gz.spdx.json  its SBOM (SPDX, by syft)
#   popbridge_VERSION_ARCH.deb, popbridge-VERSION-1.{x86_64,aarch64}.rpm
#                                                  by nfpm from deploy/packaging/nfpm.yaml
#   checksums.txt                                  SHA-256 of all of the above
#   linux/ARCH/popbridge                           the binaries again, laid out as the
#                                                  image's build context: the image is
#   docker buildx build -f deploy/Dockerfile --target release \
#     --platform linux/amd64,linux/arm64 --build-arg VERSION=0.1.0 \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t ghcr.io/popbridge/popbridge:0.1.0 OUTDIR
# Needs nfpm and syft on PATH:
#   go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
#   go install github.com/anchore/syft/cmd/syft@v1.57.2
# The binaries come from deploy/build.sh (the image's and CI's flags). Every
# file's time is the commit's, so that one commit gives the same archives
# and packages, byte for byte; each SBOM has its own creation time and, as
# SPDX asks, its own document namespace.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: deploy/release.sh VERSION OUTDIR   (VERSION like 0.1.0 or 0.1.1-next)" >&2
  exit 2
fi
version=${1#v}
out=$2
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "release.sh: version $1 is not MAJOR.MINOR.PATCH[-PRERELEASE]" >&2
  exit 2
fi
for tool in nfpm syft sha256sum; do
  command -v "$tool" > /dev/null || { echo "release.sh: $tool is not on PATH" >&2; exit 1; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -n "$(ls -A "$out")" ]; then
  echo "release.sh: $out is not empty" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
commit=${COMMIT:-$(git rev-parse HEAD)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$commit")}
# syft would ask the internet for a newer syft.
export SYFT_CHECK_FOR_APP_UPDATE=false

for arch in amd64 arm64; do
  binary=$out/linux/$arch/popbridge
  GOOS=linux GOARCH=$arch VERSION=$version COMMIT=$commit deploy/build.sh "$binary"
  touch -d "@$SOURCE_DATE_EPOCH" "$binary"

  name=popbridge_${version}_linux_$arch
  # The files under one directory named like the archive, in the paths they
  # have here (deploy/popbridge.yaml, deploy/systemd/popbridge.service).
  tar --create --sort=name --mtime="@$SOURCE_DATE_EPOCH" \
    --owner=0 --group=0 --numeric-owner --mode='go-w' --transform="s#^#$name/#" \
    README.md LICENSE CHANGELOG.md deploy/popbridge.yaml deploy/systemd/popbridge.service \
    -C "$out/linux/$arch" popbridge | gzip -n > "$out/$name.tar.gz"
  syft --quiet "$out/$name.tar.gz" --output "spdx-json=$out/$name.tar.gz.spdx.json"

  for format in deb rpm; do
    VERSION=$version ARCH=$arch BINARY=$binary \
      nfpm package --config deploy/packaging/nfpm.yaml --packager "$format" --target "$out/" > /dev/null
  done
done

(cd "$out" && sha256sum -- *.tar.gz *.spdx.json *.deb *.rpm > checksums.txt)
ls -l "$out"
