#!/usr/bin/env bash
# Prints the path of promtool (tests/alerts.rs checks the alert rules with it), which Debian's
# `prometheus` package ships and `make deps` installs. Installs nothing itself: a test that
# installed it would race another test for dpkg's lock.
set -euo pipefail
command -v promtool || { echo "promtool not found: run \`make deps\` (it installs Debian's prometheus package)" >&2; exit 1; }
