#!/usr/bin/env bash
# Validates deploy/ and the release with the real tools: the static build the
# Dockerfile uses and BuildKit's lint rules for the Dockerfile, kustomize
# build, helm lint and template against the chart's schema, a strict decode
# of every rendered object into the Kubernetes and prometheus-operator API
# types (deploy/validate, which also runs popbridge check-config on each
# rendered configuration), promtool for the alert rules, a snapshot of every
# release artefact but the image (deploy/release.sh), and the .deb installed,
# run and removed, with systemd-analyze on the unit it installs. Called by
# .ci/run; needs root (dpkg) and Debian, with rpm, promtool and systemd-analyze
# (./test.sh installs them). Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ] || ! command -v dpkg > /dev/null; then
  echo "deploy.sh installs the release's .deb: it needs root on Debian or Ubuntu" >&2
  exit 1
fi
export PATH="$PATH:$(go env GOPATH)/bin"
work=$(mktemp -d)
cleanup() {
  if dpkg-query -W -f='${Status}' popbridge 2>/dev/null | grep -q installed; then
    dpkg --purge popbridge >/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== deploy: install helm, kustomize, nfpm and syft"
start=$SECONDS
GOFLAGS= go install helm.sh/helm/v3/cmd/helm@v3.19.5
GOFLAGS= go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.0
# deploy/release.sh makes the packages with nfpm and the SBOMs with syft.
# Both from the Go module proxy (neither is a Debian package).
GOFLAGS= go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
GOFLAGS= go install -ldflags "-X main.version=1.57.2" github.com/anchore/syft/cmd/syft@v1.57.2
echo "helm $(helm version --short), kustomize $(kustomize version), nfpm and syft: $((SECONDS - start))s"

echo "== deploy: the static binary, built as the Dockerfile builds it"
start=$SECONDS
grep -q 'sh deploy/build.sh /out/popbridge' deploy/Dockerfile
# Cross-compiled on the build platform, for the target's OS and CPU.
grep -q '^FROM --platform=\$BUILDPLATFORM golang:' deploy/Dockerfile
grep -q 'GOOS="\${TARGETOS}" GOARCH="\${TARGETARCH}"' deploy/Dockerfile
for label in source version revision licenses; do
  grep -q "org.opencontainers.image.$label=" deploy/Dockerfile
done
deploy/build.sh "$work/popbridge"
go version -m "$work/popbridge" | grep -q 'build	CGO_ENABLED=0'
go version -m "$work/popbridge" | grep -q 'build	-trimpath=true'
if ldd "$work/popbridge" >/dev/null 2>&1; then
  echo "deploy/build.sh made a dynamically linked binary"; exit 1
fi
"$work/popbridge" version | grep -q "^popbridge .* (commit $(git rev-parse HEAD), go"
echo "built: $((SECONDS - start))s"

echo "== deploy: manifests (kustomize, helm, Kubernetes API types)"
start=$SECONDS
(cd deploy/validate && go vet ./... && staticcheck ./... && go test -count=1 ./... &&
  go build -o "$work/validate" . && go build -o "$work/dockerlint" ./dockerlint)
echo "validator and Dockerfile linter built and tested: $((SECONDS - start))s"
# hadolint is neither a Debian package nor a Go module: BuildKit's own
# rules (docker build --check) lint the Dockerfile instead, every stage.
"$work/dockerlint" deploy/Dockerfile
start=$SECONDS
chart=deploy/helm/popbridge
app_version=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$chart/Chart.yaml")
# One image reference everywhere: the chart's appVersion, the tag kustomize
# sets, and the top release of CHANGELOG.md.
for k in deploy/kubernetes/base deploy/kubernetes/sidecar; do
  grep -q "newTag: $app_version\$" "$k/kustomization.yaml" || { echo "$k does not run $app_version"; exit 1; }
done
grep -m1 '^## \[[0-9]' CHANGELOG.md | grep -q "^## \[$app_version\]" || { echo "appVersion $app_version is not the newest release in CHANGELOG.md"; exit 1; }
kustomize build deploy/kubernetes/base > "$work/kustomize-base.yaml"
kustomize build deploy/kubernetes/sidecar > "$work/kustomize-sidecar.yaml"
grep -q "image: ghcr.io/popbridge/popbridge:$app_version\$" "$work/kustomize-base.yaml"
# helm lint and template validate the values against values.schema.json.
# A helm built by go install assumes Kubernetes 1.20 without a cluster: name
# the oldest version the chart supports (kubeVersion) instead.
helm() { command helm "$@" --kube-version "${kube_version:-1.30.0}"; }
helm lint --strict "$chart" -f "$chart/ci/test-values.yaml"
helm template pop "$chart" -f "$chart/ci/test-values.yaml" > "$work/helm-default.yaml"
grep -q "image: \"ghcr.io/popbridge/popbridge:$app_version\"" "$work/helm-default.yaml"
helm template pop "$chart" --set tls.existingSecret=pop-tls --set pop3s.enabled=false \
  --set pop3.tls=none --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false \
  --set drainTimeoutSeconds=120 --set 'config.trusted_networks={10.0.0.0/8}' \
  --set service.sessionAffinity=ClientIP > "$work/helm-variant.yaml"
helm template pop "$chart" -f "$chart/ci/test-values.yaml" -f "$chart/ci/extras-values.yaml" > "$work/helm-extras.yaml"
for kind in ServiceMonitor NetworkPolicy; do
  grep -q "^kind: $kind\$" "$work/helm-extras.yaml" || { echo "helm template rendered no $kind"; exit 1; }
done
# Refused at render time: TLS listeners without a certificate, a value the
# schema does not know, a Kubernetes older than the preStop sleep action.
if helm template pop "$chart" > /dev/null 2>&1; then
  echo "helm template rendered TLS listeners without a certificate"; exit 1
fi
if helm template pop "$chart" -f "$chart/ci/test-values.yaml" --set service.sesionAffinity=ClientIP > /dev/null 2>&1; then
  echo "helm template accepted a value that values.schema.json does not name"; exit 1
fi
if kube_version=1.29.0 helm template pop "$chart" -f "$chart/ci/test-values.yaml" > /dev/null 2>&1; then
  echo "helm template accepted Kubernetes 1.29, which has no preStop sleep"; exit 1
fi
# Secrets created by hand or by cert-manager, never by the manifests: the
# base's TLS Secret and extras-values.yaml's token store and state server.
"$work/validate" -popbridge "$work/popbridge" -external-secret popbridge-tls \
  -external-secret popbridge-oauth-tokens -external-secret popbridge-redis -external-secret popbridge-redis-ca -external-secret popbridge-client-ca \
  "$work"/kustomize-*.yaml "$work"/helm-*.yaml
echo "rendered and validated: $((SECONDS - start))s"

echo "== deploy: Prometheus rules"
start=$SECONDS
promtool check rules deploy/monitoring/popbridge-alerts.yaml
promtool test rules deploy/monitoring/popbridge-alerts_test.yaml
echo "promtool: $((SECONDS - start))s"

echo "== deploy: release snapshot (every artefact but the image: no Docker daemon here)"
start=$SECONDS
# The next patch release, marked as a pre-release: it sorts after the
# newest release and before the real next one.
version=${app_version%.*}.$((${app_version##*.} + 1))-next
commit=$(git rev-parse HEAD)
dist=$work/dist
deploy/release.sh "$version" "$dist" > /dev/null
for arch in amd64 arm64; do
  archive=$dist/popbridge_${version}_linux_$arch.tar.gz
  grep -q '"name": *"github.com/emersion/go-imap/v2"' "$archive.spdx.json" ||
    { echo "no SBOM listing popbridge's modules for $archive"; exit 1; }
  tar -tzf "$archive" | sed 's#^[^/]*/##' | sort > "$work/contents"
  printf '%s\n' CHANGELOG.md LICENSE README.md deploy/popbridge.yaml deploy/systemd/popbridge.service popbridge |
    diff - "$work/contents" || { echo "$archive holds other files"; exit 1; }
done
# Each package, deb and rpm for both architectures, holds the same files
# (directories aside); the rpms' version, configuration file and scripts
# are read here, the amd64 deb's by installing it below.
for pkg in "$dist"/popbridge_*_amd64.deb "$dist"/popbridge_*_arm64.deb \
  "$dist"/popbridge-*.x86_64.rpm "$dist"/popbridge-*.aarch64.rpm; do
  case $pkg in
    *.deb) dpkg-deb -c "$pkg" | awk '$1 !~ /^d/ { print substr($6, 2) }' ;;
    *.rpm) rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$pkg" 2>/dev/null | awk '$1 !~ /^d/ { print $2 }' ;;
  esac | sort > "$work/contents"
  printf '%s\n' /etc/popbridge/popbridge.yaml /usr/bin/popbridge /usr/lib/systemd/system/popbridge.service \
    /usr/share/doc/popbridge/CHANGELOG.md /usr/share/doc/popbridge/README.md /usr/share/doc/popbridge/copyright |
    diff - "$work/contents" || { echo "$pkg holds other files"; exit 1; }
done
for rpm in "$dist"/popbridge-*.rpm; do
  rpm -qp --qf '%{VERSION}-%{RELEASE}\n' "$rpm" 2>/dev/null | grep -qxF "${version/-/"~"}-1" ||
    { echo "$rpm is not version $version"; exit 1; }
  rpm -qp --configfiles "$rpm" 2>/dev/null | grep -qx /etc/popbridge/popbridge.yaml ||
    { echo "$rpm does not keep an edited /etc/popbridge/popbridge.yaml"; exit 1; }
  rpm -qp --scripts "$rpm" 2>/dev/null | grep -q 'useradd --system' ||
    { echo "$rpm does not create the popbridge user"; exit 1; }
done
(cd "$dist" && sha256sum --quiet -c checksums.txt)
test "$(wc -l < "$dist/checksums.txt")" = 8 || { echo "checksums.txt does not name all 8 artefacts"; exit 1; }
echo "release snapshot $version: $((SECONDS - start))s"

echo "== deploy: the .deb installed, run and removed; its systemd unit"
start=$SECONDS
if dpkg-query -W popbridge > /dev/null 2>&1; then
  echo "a popbridge package is installed already: not replacing it"; exit 1
fi
dpkg -i "$dist"/popbridge_*_amd64.deb
/usr/bin/popbridge version | grep -qx "popbridge $version (commit $commit, go[0-9.]*, linux/amd64)"
getent passwd popbridge > /dev/null
test "$(stat -c %U:%G:%a /etc/popbridge/popbridge.yaml /etc/popbridge/tls)" = "$(printf 'root:popbridge:%s\n' 640 750)"
# As the service runs it: the package's user reads the example config.
runuser -u popbridge -- /usr/bin/popbridge check-config /etc/popbridge/popbridge.yaml
unit=/usr/lib/systemd/system/popbridge.service
cmp "$unit" deploy/systemd/popbridge.service
systemd-analyze verify "$unit"
exposure=$(systemd-analyze security --offline=true "$unit" | awk '/Overall exposure level/ {print $(NF-2)}')
echo "systemd-analyze security: exposure $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || { echo "the unit's exposure rose above 2.0"; exit 1; }
dpkg --purge popbridge
test ! -e /usr/bin/popbridge && test ! -e "$unit" && test ! -e /etc/popbridge/popbridge.yaml
echo "package checked: $((SECONDS - start))s"
