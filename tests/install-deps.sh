#!/usr/bin/env bash
# Installs, once and before anything runs, what the demo or the tests need that a fresh machine
# lacks. No test installs anything: a test that finds a tool missing fails naming `make deps`.
#
#   tests/install-deps.sh demo   # make demo: redis-server, redis-cli, openssl, curl, the control plane
#   tests/install-deps.sh        # make deps / make test: that, and promtool, buildah, Helm
#
# Debian packages come from tests/install-packages.sh; the Go-built binaries (control plane,
# Helm) are cached outside the work tree, keyed by version (tests/cluster/build.sh, helm.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
profile="${1:-test}"

# Debian package for each command the demo and the tests run.
demo_packages=(redis-server redis-tools openssl curl)
test_packages=("${demo_packages[@]}" prometheus buildah)

case "$profile" in
  demo) packages=("${demo_packages[@]}") ;;
  test) packages=("${test_packages[@]}") ;;
  *) echo "install-deps: unknown profile '$profile' (demo or test)" >&2; exit 2 ;;
esac

start=$SECONDS
# apt waits on the network and dpkg, the Go builds on the CPU: side by side.
"$here/install-packages.sh" "${packages[@]}" &
packages=$!
"$here/cluster/build.sh"
if [ "$profile" = test ]; then
  "$here/cluster/helm.sh" --build >/dev/null
fi
wait "$packages"
echo "install-deps: $profile dependencies ready in $((SECONDS - start)) s" >&2
