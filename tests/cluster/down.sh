#!/usr/bin/env bash
# Stops what tests/cluster/up.sh started (by the pids it recorded), waits for the
# processes to exit and removes the state directory ($ROTATOR_CLUSTER_DIR,
# default <repo>/target/cluster). Safe to run when nothing is running.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DIR="${ROTATOR_CLUSTER_DIR:-$root/target/cluster}"
case "$DIR" in /*) ;; *) DIR="$root/$DIR" ;; esac   # relative to the repo root
[ -d "$(dirname "$DIR")" ] || exit 0
DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"

if [ "${ROTATOR_CLUSTER_LOCKED:-}" != 1 ]; then   # up.sh calls us holding the lock
  exec 8>"$DIR.lock"
  flock 8
fi

# Is PID still the process we started (and not a recycled pid)? Its command
# line must mention the state directory or the cached binary.
ours() {
  local pid="$1" name="$2"
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -e "$DIR" -e "/$name "
}

# Running (a zombie left to an init that does not reap counts as gone)?
running() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }

pids=()
# Reverse start order: kwok and controllers first, etcd last.
for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$DIR/pids/$c.pid"
  [ -f "$f" ] || continue
  pid="$(cat "$f")"
  if ours "$pid" "$c"; then
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  fi
done

deadline=$(( $(date +%s) + 15 ))
for pid in "${pids[@]}"; do
  while running "$pid"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    if [ "$(date +%s)" -ge $(( deadline + 10 )) ]; then echo "down.sh: pid $pid will not exit" >&2; break; fi
    sleep 0.1
  done
done

rm -rf "$DIR"
echo "down.sh: stopped ${#pids[@]} process(es), removed $DIR" >&2
