#!/usr/bin/env bash
# Builds (once) the Helm CLI the chart tests use (tests/helm.rs) from the Go module proxy,
# like build.sh builds the control plane, and caches it outside the work tree, keyed by
# version:
#
#   $ROTATOR_CACHE/bin/helm-v3.22.0/helm
#   $ROTATOR_CACHE/go/{mod,build}        Go module and build caches (shared with build.sh)
#
# ROTATOR_CACHE defaults to ~/.cache/password-rotator. A binary already there is never
# rebuilt. The binary is built into a temporary directory next to its final place and moved
# there, so an interrupted build never leaves a half-written binary behind.
#
# Prints the path of the helm binary on stdout (and nothing else). Builds it only with --build
# (make deps); without, a missing binary is an error that names `make deps`, so no test
# builds it.
set -euo pipefail

CACHE="${ROTATOR_CACHE:-$HOME/.cache/password-rotator}"
HELM_VERSION="v3.22.0"
HELM_DIR="$CACHE/bin/helm-$HELM_VERSION"
HELM="$HELM_DIR/helm"

if [ -x "$HELM" ]; then
  echo "$HELM"
  exit 0
fi
if [ "${1:-}" != "--build" ]; then
  echo "helm.sh: $HELM not found: run \`make deps\` (it builds Helm $HELM_VERSION)" >&2
  exit 1
fi

command -v go >/dev/null || { echo "helm.sh: go is not on PATH" >&2; exit 1; }
mkdir -p "$CACHE/go/mod" "$CACHE/go/build" "$HELM_DIR"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export CGO_ENABLED=0
# go install pkg@version runs outside any module: no -mod=readonly here.
export GOFLAGS="-buildvcs=false"
export GOGC=800   # fewer collections in the compiler: faster cold builds (see build.sh)

# One build at a time per binary (another shell or test process may be here too).
exec 9>"$HELM_DIR/.lock"
flock 9
if [ -x "$HELM" ]; then
  echo "$HELM"
  exit 0
fi
rm -rf "$HELM_DIR"/.tmp-build.*

t=$(date +%s)
echo "helm.sh: building helm $HELM_VERSION (cold: ~6-7 min on 2 cores, 59 MB)..." >&2
tmp="$(mktemp -d "$HELM_DIR/.tmp-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# -dwarf=false: no debug information, which -s -w strips anyway (as build.sh).
(cd "$tmp" && GOBIN="$tmp" go install -p 2 -trimpath -gcflags=all=-dwarf=false \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2
[ -x "$tmp/helm" ] || { echo "helm.sh: helm was not produced" >&2; exit 1; }
mv -f "$tmp/helm" "$HELM"
echo "helm.sh: helm built in $(( $(date +%s) - t ))s" >&2
echo "$HELM"
