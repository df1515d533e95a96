#!/usr/bin/env bash
# Runs every test of the workspace and ends with one line that adds them up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p target
log=target/test-output.log
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
read -r passed failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p + 0, f + 0}' "$log")
echo
echo "total: ${passed} passed, ${failed} failed"
exit "$status"
