#!/usr/bin/env bash
# Runs an unpacked image's entrypoint the way the kubelet runs the operator's container
# (deploy/base/deployment.yaml), without a container runtime. Used by tests/image.rs.
#
#   run-as-pod.sh --rootfs DIR --user UID:GID [--mount SRC:DST[:ro]]... [--env NAME=VALUE]...
#                 -- PROGRAM [ARG]...
#
# In new mount and PID namespaces (private propagation, so nothing leaks to the host):
#  * DIR is bind-mounted onto itself and remounted read-only (readOnlyRootFilesystem);
#  * /proc (of the new PID namespace), /dev (a tmpfs with null, zero, full, random, urandom
#    and tty, and /dev/shm), /sys (read-only) and every --mount are mounted inside it, as a
#    runtime does; their mount points are created first in DIR, as a runtime creates them in
#    the container's writable layer;
#  * PROGRAM (a path inside DIR) runs chrooted in DIR as UID:GID with GID as its only
#    supplementary group (runAsUser, runAsGroup, fsGroup), no_new_privs
#    (allowPrivilegeEscalation: false), no capability (capabilities: drop ALL: permitted,
#    effective, inheritable and ambient sets empty) and only the --env variables.
# The process is killed when this script is.
set -euo pipefail

if [ "${1:-}" != --inside ]; then
  exec unshare --mount --pid --fork --kill-child --propagation private -- "$0" --inside "$@"
fi
shift

rootfs="" user=""
mounts=() envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rootfs) rootfs="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --mount) mounts+=("$2"); shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "run-as-pod: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$rootfs" ] && [ -n "$user" ] && [ $# -gt 0 ] || { echo "run-as-pod: usage: see the script" >&2; exit 2; }
gid="${user#*:}"

# Mount points (empty directories and files), then the rootfs read-only.
mkdir -p "$rootfs/proc" "$rootfs/dev" "$rootfs/sys"
for spec in "${mounts[@]}"; do
  IFS=: read -r src dst _ <<<"$spec"
  if [ -d "$src" ]; then mkdir -p "$rootfs$dst"; else mkdir -p "$(dirname "$rootfs$dst")"; touch "$rootfs$dst"; fi
done
mount --bind "$rootfs" "$rootfs"
mount -o remount,bind,ro "$rootfs"

mount -t proc -o nosuid,nodev,noexec proc "$rootfs/proc"
mount -t tmpfs -o nosuid,mode=755,size=65536k tmpfs "$rootfs/dev"
for dev in null zero full random urandom tty; do
  touch "$rootfs/dev/$dev"
  mount --bind "/dev/$dev" "$rootfs/dev/$dev"
done
mkdir "$rootfs/dev/shm"
mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm "$rootfs/dev/shm"
mount --rbind /sys "$rootfs/sys"
mount -o remount,bind,ro "$rootfs/sys"
for spec in "${mounts[@]}"; do
  IFS=: read -r src dst mode <<<"$spec"
  mount --bind "$src" "$rootfs$dst"
  if [ "${mode:-}" = ro ]; then mount -o remount,bind,ro "$rootfs$dst"; fi
done

# chroot needs CAP_SYS_CHROOT, CAP_SETGID and CAP_SETUID; everything else leaves the bounding
# set here, and switching from root to UID clears the permitted and effective sets.
exec env -i "${envs[@]}" /usr/bin/setpriv --no-new-privs --inh-caps=-all \
  --bounding-set=-all,+sys_chroot,+setuid,+setgid -- \
  /usr/sbin/chroot --userspec="$user" --groups="$gid" "$rootfs" "$@"
