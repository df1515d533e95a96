#!/usr/bin/env bash
# Runs every check of `make test` and ends with one line that adds them all up. One failure
# never hides another: the lint, the demo of each target, then every test binary
# (--no-fail-fast), all run whatever failed before, and what failed is listed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p target
log=target/test-output.log
failed_checks=()
checks_passed=0
checks_run=0

# check NAME CMD...: one counted check whose output shows only when it fails.
check() {
  local name="$1" out; shift
  checks_run=$((checks_run + 1))
  if out="$("$@" 2>&1)"; then
    checks_passed=$((checks_passed + 1))
    echo "$name: ok"
  else
    printf '%s\n' "$out" | tail -60
    echo "$name: FAILED"
    failed_checks+=("$name")
  fi
}

check "cargo fmt --check" cargo fmt --all --check
check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings

for target in redis-software redis ontap; do
  checks_run=$((checks_run + 1))
  if TARGET=$target tests/demo/demo.sh >"target/demo-$target.log" 2>&1; then
    checks_passed=$((checks_passed + 1))
    echo "demo $target: $(grep -m1 "Password rotated" "target/demo-$target.log" || echo ok)"
  else
    tail -40 "target/demo-$target.log"
    echo "demo $target: FAILED (target/demo-$target.log)"
    failed_checks+=("make demo TARGET=$target")
  fi
done

status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?

# Per test binary ("Running tests/x.rs", "Doc-tests y"): its passed and failed counts, the
# names of its failed tests, and the binaries that ended without a result line (a crash).
summary="$(awk '
  function close_binary() {
    if (binary != "" && !has_result) crashed[++ncrashed] = binary
  }
  /^ *Running / { close_binary(); binary = ($2 == "unittests") ? $3 : $2; has_result = 0; next }
  /^ *Doc-tests / { close_binary(); binary = "doc-tests " $2; has_result = 0; next }
  /^test .* \.\.\. FAILED$/ { failed_names[++nfailed] = binary ": " $2; next }
  /^test result:/ { passed += $4; failed += $6; has_result = 1; next }
  END {
    close_binary()
    print passed + 0, failed + ncrashed
    for (i = 1; i <= nfailed; i++) print failed_names[i]
    for (i = 1; i <= ncrashed; i++) print crashed[i] ": ended without a result (crashed or killed)"
  }' "$log")"
read -r passed failed <<<"$(head -n1 <<<"$summary")"
while IFS= read -r name; do
  [ -n "$name" ] && failed_checks+=("$name")
done < <(tail -n +2 <<<"$summary")

if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
  failed_checks+=("cargo test exited with $status before any test failed (a build error? see $log)")
  failed=1
fi
passed=$((passed + checks_passed))
failed=$((failed + checks_run - checks_passed))
echo
if [ ${#failed_checks[@]} -gt 0 ]; then
  echo "failed:"
  printf '  %s\n' "${failed_checks[@]}"
fi
echo "total: ${passed} passed, ${failed} failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
