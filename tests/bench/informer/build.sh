#!/usr/bin/env bash
# Builds (once) the client-go informer the bench measures beside the operator
# (tests/bench/informer.rs) and caches it outside the work tree, keyed by the client-go
# version and a hash of the module's sources, so an edit of main.go, go.mod or go.sum
# builds anew:
#
#   $ROTATOR_CACHE/bin/informer-client-go-v0.36.3-<sha256 prefix>/informer
#   $ROTATOR_CACHE/go/{mod,build}        Go module and build caches (shared with
#                                        tests/cluster/build.sh)
#
# ROTATOR_CACHE defaults to ~/.cache/password-rotator. A binary already there is never
# rebuilt. The binary is built into a temporary directory next to its final place and moved
# there, so an interrupted build never leaves a half-written binary behind.
#
# Prints the path of the informer binary on stdout (and nothing else).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${ROTATOR_CACHE:-$HOME/.cache/password-rotator}"
CLIENT_GO_VERSION="$(awk '$1=="k8s.io/client-go"{print $2; exit}' "$here/go.mod")"
[ -n "$CLIENT_GO_VERSION" ] || { echo "informer/build.sh: no k8s.io/client-go in go.mod" >&2; exit 1; }
SOURCES_HASH="$(cd "$here" && cat main.go go.mod go.sum | sha256sum | cut -c1-12)"
INFORMER_DIR="$CACHE/bin/informer-client-go-$CLIENT_GO_VERSION-$SOURCES_HASH"
INFORMER="$INFORMER_DIR/informer"

if [ -x "$INFORMER" ]; then
  echo "$INFORMER"
  exit 0
fi

command -v go >/dev/null || { echo "informer/build.sh: go is not on PATH" >&2; exit 1; }
mkdir -p "$CACHE/go/mod" "$CACHE/go/build" "$INFORMER_DIR"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -mod=readonly"

# One build at a time per binary (another shell or bench process may be here too).
exec 9>"$INFORMER_DIR/.lock"
flock 9
if [ -x "$INFORMER" ]; then
  echo "$INFORMER"
  exit 0
fi
rm -rf "$INFORMER_DIR"/.tmp-build.*

t=$(date +%s)
echo "informer/build.sh: building the informer (client-go $CLIENT_GO_VERSION)..." >&2
tmp="$(mktemp -d "$INFORMER_DIR/.tmp-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/informer" .) >&2
[ -x "$tmp/informer" ] || { echo "informer/build.sh: informer was not produced" >&2; exit 1; }
mv -f "$tmp/informer" "$INFORMER"
echo "informer/build.sh: informer built in $(( $(date +%s) - t ))s" >&2
echo "$INFORMER"
