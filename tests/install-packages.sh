#!/usr/bin/env bash
# The one script that installs Debian packages for the project (make deps, make image).
#
#   tests/install-packages.sh PACKAGE...
#
# Installs those of PACKAGE... that dpkg does not list as installed, in one apt-get run, and
# stops the services a package starts (the tests start their own redis-server and need only
# promtool of prometheus). Callers are serialised by a lock, so two callers never race for
# dpkg's lock; a second caller finds the packages installed and returns at once.
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

sudo_cmd=()
[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)

exec 7>"${TMPDIR:-/tmp}/password-rotator-install-packages.lock"
flock 7

missing=()
for p in "$@"; do installed "$p" || missing+=("$p"); done
[ ${#missing[@]} -gt 0 ] || exit 0

echo "install-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt user on the machine (unattended upgrades) may hold dpkg's lock for a while.
apt=("${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 -y -qq)
"${apt[@]}" update >/dev/null
"${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null

for service in redis-server prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    "${sudo_cmd[@]}" systemctl stop "$service" || true
    "${sudo_cmd[@]}" systemctl disable "$service" 2>/dev/null || true
  elif command -v service >/dev/null && service "$service" status >/dev/null 2>&1; then
    "${sudo_cmd[@]}" service "$service" stop >/dev/null 2>&1 || true
  fi
done
