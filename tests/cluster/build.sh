#!/usr/bin/env bash
# Builds (once) the binaries of the local test control plane, all in one go build of the
# wrapper module (go.mod), and caches them outside the work tree, keyed by version:
#
#   $ROTATOR_CACHE/bin/k8s-v1.36.3/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $ROTATOR_CACHE/bin/etcd-v3.6.8/etcd
#   $ROTATOR_CACHE/bin/kwok-v0.8.0/kwok          (+ stages.yaml, kwok's stock stages)
#   $ROTATOR_CACHE/go/{mod,build}        Go module and build caches
#
# ROTATOR_CACHE defaults to ~/.cache/password-rotator. A binary that is already
# there is never rebuilt, so a warm run costs nothing. The binaries are built into
# a temporary directory beside their final places and moved there, so an
# interrupted build never leaves a half-written binary behind.
#
# Prints the path of each binary directory as KEY=DIR lines on stdout when
# called with --print-dirs (used by up.sh). With --check it builds nothing: it fails,
# naming `make deps`, when a binary is missing (what tests use).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${ROTATOR_CACHE:-$HOME/.cache/password-rotator}"

K8S_VERSION="v1.36.3"
# etcd is built from the same wrapper module, at the version Kubernetes itself requires.
ETCD_VERSION="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")"
# kwok is built in the wrapper module too, at the version go.mod pins.
KWOK_VERSION="$(awk '$1=="sigs.k8s.io/kwok"{print $2; exit}' "$here/go.mod")"

K8S_BIN="$CACHE/bin/k8s-$K8S_VERSION"
ETCD_BIN="$CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN="$CACHE/bin/kwok-$KWOK_VERSION"

if [ "${1:-}" = "--print-dirs" ]; then
  echo "K8S_BIN=$K8S_BIN"
  echo "ETCD_BIN=$ETCD_BIN"
  echo "KWOK_BIN=$KWOK_BIN"
  exit 0
fi

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# what_is_missing: sets missing (the k8s commands) and need_etcd/need_kwok/need_stages;
# fails when nothing is.
what_is_missing() {
  missing=()
  for c in "${K8S_CMDS[@]}"; do [ -x "$K8S_BIN/$c" ] || missing+=("$c"); done
  need_etcd=1; [ -x "$ETCD_BIN/etcd" ] && need_etcd=0
  need_kwok=1; [ -x "$KWOK_BIN/kwok" ] && need_kwok=0
  need_stages=1; [ -f "$KWOK_BIN/stages.yaml" ] && need_stages=0
  [ ${#missing[@]} -gt 0 ] || [ $need_etcd = 1 ] || [ $need_kwok = 1 ] || [ $need_stages = 1 ]
}
cached() { echo "build.sh: all control-plane binaries cached under $CACHE/bin" >&2; exit 0; }
what_is_missing || cached
if [ "${1:-}" = "--check" ]; then
  echo "build.sh: the control plane is not built under $CACHE/bin: run \`make deps\`" >&2
  exit 1
fi

command -v go >/dev/null || { echo "build.sh: go is not on PATH" >&2; exit 1; }
mkdir -p "$CACHE/go/mod" "$CACHE/go/build" "$CACHE/bin"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -mod=readonly"
# The compiler collects garbage less often: the cold build is CPU-bound on 2 cores. Compiling
# kube-scheduler with an empty build cache took 200 s at GOGC=100, 166 s at 400, 151 s at 800
# (peak 0.8 GB) and 158 s with no collection at all (peak 1.1 GB).
export GOGC=800

# One build at a time per cache (another shell or test process may be here too).
exec 9>"$CACHE/build.lock"
flock 9
# Whoever held the lock may have built them meanwhile.
what_is_missing || cached

now() { date +%s; }
t_all=$(now)
# Leftovers of interrupted builds (we hold the lock, so nobody else is building).
rm -rf "$CACHE"/bin/.tmp-build.* "$CACHE"/bin/*/.tmp-build.* "$CACHE"/bin/*/.stages.*

# One go build for every missing binary: kube-*, kubectl, etcd and kwok compile against the
# same modules of the wrapper, so their shared packages compile once.
pkgs=(); names=()
for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); names+=("$c"); done
# go.etcd.io/etcd/server/v3 is etcd's server main package; go names the binary "server".
[ $need_etcd = 1 ] && { pkgs+=(go.etcd.io/etcd/server/v3); names+=(server); }
[ $need_kwok = 1 ] && { pkgs+=(sigs.k8s.io/kwok/cmd/kwok); names+=(kwok); }
if [ ${#pkgs[@]} -gt 0 ]; then
  t=$(now)
  echo "build.sh: building ${names[*]} (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION; cold: ~5 min on 2 cores)..." >&2
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  mkdir -p "$CACHE/bin"
  out="$(mktemp -d "$CACHE/bin/.tmp-build.XXXXXX")"
  trap 'rm -rf "$out"' EXIT
  # -dwarf=false: the compiler makes no debug information, which -s -w would strip anyway.
  (cd "$here" && go build -p 2 -trimpath -gcflags=all=-dwarf=false -ldflags "$ld" -o "$out/" "${pkgs[@]}")
  for n in "${names[@]}"; do
    [ -x "$out/$n" ] || { echo "build.sh: $n was not produced" >&2; exit 1; }
    case "$n" in
      server) mkdir -p "$ETCD_BIN"; mv -f "$out/server" "$ETCD_BIN/etcd" ;;
      kwok) mkdir -p "$KWOK_BIN"; mv -f "$out/kwok" "$KWOK_BIN/kwok" ;;
      *) mkdir -p "$K8S_BIN"; mv -f "$out/$n" "$K8S_BIN/$n" ;;
    esac
  done
  echo "build.sh: built in $(( $(now) - t ))s" >&2
fi

if [ $need_stages = 1 ]; then
  # kwok does nothing without Stage configuration. Take the stock "fast" node and
  # pod stages plus the node heartbeat (so the node lifecycle controller never
  # marks the fake node NotReady) from the kwok module source of the same version.
  src="$(cd "$KWOK_BIN" && GOFLAGS=-buildvcs=false go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$src/kustomize/stage" ] || { echo "build.sh: kwok source not found ($src)" >&2; exit 1; }
  tmp="$(mktemp "$KWOK_BIN/.stages.XXXXXX")"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$src/kustomize/stage/$f"
  done > "$tmp"
  mv -f "$tmp" "$KWOK_BIN/stages.yaml"
fi

echo "build.sh: done in $(( $(now) - t_all ))s; binaries under $CACHE/bin" >&2
