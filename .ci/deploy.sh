#!/usr/bin/env bash
# Validates deploy/ with the real tools: the static build the Dockerfile
# uses, kustomize build, helm lint and template, a strict decode of every
# rendered object into the Kubernetes API types (deploy/validate, which also
# runs popbridge check-config on each rendered configuration), promtool for
# the alert rules and systemd-analyze for the unit. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== deploy: install helm and kustomize"
start=$SECONDS
GOFLAGS= go install helm.sh/helm/v3/cmd/helm@v3.19.5
GOFLAGS= go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.0
echo "helm $(helm version --short), kustomize $(kustomize version): $((SECONDS - start))s"

echo "== deploy: the static binary, built as the Dockerfile builds it"
grep -q '^RUN .*sh deploy/build.sh /out/popbridge' deploy/Dockerfile
deploy/build.sh "$work/popbridge"
go version -m "$work/popbridge" | grep -q 'build	CGO_ENABLED=0'
go version -m "$work/popbridge" | grep -q 'build	-trimpath=true'
if ldd "$work/popbridge" >/dev/null 2>&1; then
  echo "deploy/build.sh made a dynamically linked binary"; exit 1
fi
"$work/popbridge" version

echo "== deploy: manifests (kustomize, helm, Kubernetes API types)"
start=$SECONDS
(cd deploy/validate && go vet ./... && staticcheck ./... && go test -count=1 ./... && go build -o "$work/validate" .)
echo "validator built and tested: $((SECONDS - start))s"
kustomize build deploy/kubernetes/base > "$work/kustomize-base.yaml"
kustomize build deploy/kubernetes/sidecar > "$work/kustomize-sidecar.yaml"
chart=deploy/helm/popbridge
helm lint --strict "$chart" -f "$chart/ci/test-values.yaml"
helm template pop "$chart" -f "$chart/ci/test-values.yaml" > "$work/helm-default.yaml"
helm template pop "$chart" --set tls.existingSecret=pop-tls --set pop3s.enabled=false \
  --set pop3.tls=none --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false \
  --set drainTimeoutSeconds=120 --set 'config.trusted_networks={10.0.0.0/8}' > "$work/helm-variant.yaml"
# TLS listeners without a certificate are refused at render time.
if helm template pop "$chart" > /dev/null 2>&1; then
  echo "helm template rendered TLS listeners without a certificate"; exit 1
fi
"$work/validate" -popbridge "$work/popbridge" "$work"/kustomize-*.yaml "$work"/helm-*.yaml

echo "== deploy: Prometheus rules"
promtool check rules deploy/monitoring/popbridge-alerts.yaml
promtool test rules deploy/monitoring/popbridge-alerts_test.yaml

echo "== deploy: systemd unit"
# verify needs ExecStart's binary to exist: point it at the one just built.
sed "s#/usr/local/bin/popbridge#$work/popbridge#g" deploy/systemd/popbridge.service > "$work/popbridge.service"
systemd-analyze verify "$work/popbridge.service"
exposure=$(systemd-analyze security --offline=true "$work/popbridge.service" | awk '/Overall exposure level/ {print $(NF-2)}')
echo "systemd-analyze security: exposure $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || { echo "the unit's exposure rose above 2.0"; exit 1; }
