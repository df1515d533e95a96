#!/usr/bin/env bash
# Prints the path of promtool (tests/alerts.rs checks the alert rules with it). Installs
# Debian's `prometheus` package, which ships it, only when promtool is missing, and stops
# the Prometheus server the package may start: the tests need the tool, not the server.
#
# Prints the path of promtool on stdout (and nothing else).
set -euo pipefail

if ! command -v promtool >/dev/null; then
  echo "promtool.sh: installing Debian's prometheus package (for promtool)" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo_cmd systemctl stop prometheus >&2 || true
    $sudo_cmd systemctl disable prometheus >&2 2>/dev/null || true
  elif command -v service >/dev/null && service prometheus status >/dev/null 2>&1; then
    $sudo_cmd service prometheus stop >&2 || true
  fi
fi
command -v promtool
