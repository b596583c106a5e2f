#!/usr/bin/env bash
# govulncheck with a vulnerability database built from the golang.org/x/vulndb
# module (through the Go module proxy), because vuln.go.dev is not reachable
# from CI. Fails on any called vulnerability, in a module or in the standard
# library of the Go toolchain in use (.ci/run selects a patched one).
set -euo pipefail
cd "$(dirname "$0")/.."
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
db="${VULNDB_DIR:-${TMPDIR:-/tmp}/popbridge-vulndb-$VULNDB_VERSION}"
if [ ! -f "$db/index/modules.json" ]; then
  src=$(cd "$(mktemp -d)" && GOFLAGS= go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$db.tmp"
  GOFLAGS= go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$db.tmp"
  mv "$db.tmp" "$db"
fi
out=$(mktemp)
govulncheck -db "file://$db" -format json ./... > "$out"
python3 - "$out" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
dec, i, called = json.JSONDecoder(), 0, {}
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    msg, i = dec.raw_decode(text, i)
    f = msg.get("finding")
    if f and f.get("trace") and f["trace"][0].get("function"):
        top = f["trace"][0]
        called.setdefault(f["osv"], (top.get("module"), top.get("package"), f.get("fixed_version", "")))
bad = 0
for osv, (mod, pkg, fixed) in sorted(called.items()):
    print(f"govulncheck: {osv} in {mod} {pkg} is called (fixed in {fixed})")
    bad += 1
print(f"govulncheck: {bad} called vulnerabilities")
sys.exit(1 if bad else 0)
PY
