#!/usr/bin/env bash
# Starts the local Kubernetes control plane used by password-rotator's tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which
# fakes the kubelet of one Node, kwok-node-0), all on 127.0.0.1 only, built from
# source by build.sh (cached outside the work tree).
#
#   tests/cluster/up.sh      # or: make cluster-up
#   export KUBECONFIG=$PWD/target/cluster/kubeconfig
#   tests/cluster/down.sh    # or: make cluster-down
#
# State lives in $ROTATOR_CLUSTER_DIR (default <repo>/target/cluster):
#   kubeconfig            admin kubeconfig (group system:masters, absolute paths)
#   ports.env             the ports chosen at start (free ports, picked at random)
#   pids/<component>.pid  logs/<component>.log  pki/  etcd/
#
# Idempotent: when the recorded processes are alive and /readyz answers, it
# returns at once. Concurrent calls are serialised by a lock file beside the
# state directory (<dir>.lock), so parallel test binaries share one cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DIR="${ROTATOR_CLUSTER_DIR:-$root/target/cluster}"
case "$DIR" in /*) ;; *) DIR="$root/$DIR" ;; esac   # relative to the repo root
mkdir -p "$(dirname "$DIR")"
DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODE=kwok-node-0

ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(ms)
elapsed() { local d=$(( $(ms) - t0 )); printf '%d.%01ds' $(( d / 1000 )) $(( d % 1000 / 100 )); }
log() { echo "up.sh: $*" >&2; }

# Serialise up/down. fd 8 is closed for every daemon started below (8>&-), so the
# lock is released when this script exits.
exec 8>"$DIR.lock"
flock 8

eval "$("$here/build.sh" --print-dirs)"   # K8S_BIN ETCD_BIN KWOK_BIN
KUBECTL="$K8S_BIN/kubectl"
KCFG="$DIR/kubeconfig"

# alive COMPONENT: its recorded pid runs (a zombie counts as dead).
alive() {
  local f="$DIR/pids/$1.pid" pid
  [ -f "$f" ] || return 1; pid="$(cat "$f")"
  [ -r "/proc/$pid/stat" ] && [ "$(sed 's/^.*) //' "/proc/$pid/stat" | cut -c1)" != Z ]
}
readyz() { [ -x "$KUBECTL" ] && [ -f "$KCFG" ] && "$KUBECTL" --kubeconfig "$KCFG" --request-timeout=3s get --raw /readyz >/dev/null 2>&1; }

# ---- already running? ----------------------------------------------------
if [ -d "$DIR/pids" ]; then
  all=1; any=0
  for c in "${COMPONENTS[@]}"; do if alive "$c"; then any=1; else all=0; fi; done
  if [ $all = 1 ] && readyz; then
    log "cluster already up ($(grep API_PORT "$DIR/ports.env")); KUBECONFIG=$KCFG"
    exit 0
  fi
  log "stale or partial cluster in $DIR (some process dead or /readyz failing): tearing it down first"
  ROTATOR_CLUSTER_LOCKED=1 "$here/down.sh"
fi

# ---- binaries -----------------------------------------------------------
# ROTATOR_NO_BUILD=1 (what the tests set): only look, and name `make deps` when one is missing.
if [ "${ROTATOR_NO_BUILD:-}" = 1 ]; then "$here/build.sh" --check; else "$here/build.sh"; fi
t0=$(ms)

rm -rf "$DIR/etcd" "$DIR/pki" "$DIR/pids" "$DIR/logs"
mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/pki" "$DIR/etcd"
chmod 700 "$DIR/etcd"

# ---- ports --------------------------------------------------------------
# Ask the kernel for free loopback ports (bound all at once so they differ).
read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT KWOK_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
cat > "$DIR/ports.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
KWOK_PORT=$KWOK_PORT
EOF

# ---- PKI ------------------------------------------------------------------
PKI="$DIR/pki"
(
  cd "$PKI"
  ossl() { openssl "$@" 2>/dev/null; }
  ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=password-rotator-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  # cert NAME SUBJECT EXTENDED_KEY_USAGE [SAN]
  cert() {
    ossl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$3"; [ -n "${4:-}" ] && echo "subjectAltName=$4"; } > "$1.ext"
    ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile "$1.ext" -out "$1.crt"
    rm -f "$1.csr" "$1.ext"
  }
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=rotator-admin" clientAuth
  cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  ossl genrsa -out sa.key 2048
  ossl rsa -in sa.key -pubout -out sa.pub
) || { log "openssl failed"; exit 1; }

# kubeconfig FILE USER: a kubeconfig with absolute paths to the PKI files.
kubeconfig() {
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rotator-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: rotator-test
  context:
    cluster: rotator-test
    user: $2
    namespace: default
current-context: rotator-test
EOF
}
kubeconfig "$DIR/kube-controller-manager.kubeconfig" kube-controller-manager
kubeconfig "$DIR/kube-scheduler.kubeconfig" kube-scheduler
kubeconfig "$DIR/kwok.kubeconfig" admin
kubeconfig "$KCFG.tmp" admin   # published (renamed) only once the cluster is ready

# ---- processes --------------------------------------------------------------
# start NAME CMD...: detached (own session, no tty, fd 8 closed), survives this script.
start() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 8>&- &
  echo $! > "$DIR/pids/$name.pid"
}

start etcd "$ETCD_BIN/etcd" \
  --name=rotator --data-dir="$DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="rotator=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level=warn

start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --endpoint-reconciler-type=none \
  --profiling=false

fail() {
  log "$*"
  for c in "${COMPONENTS[@]}"; do
    [ -f "$DIR/pids/$c.pid" ] || continue
    alive "$c" || { log "$c is not running; last lines of $DIR/logs/$c.log:"; tail -n 20 "$DIR/logs/$c.log" >&2 || true; }
  done
  # Stop what was started (logs stay in $DIR/logs; the next up.sh or down.sh clears them).
  for c in "${COMPONENTS[@]}"; do
    [ -f "$DIR/pids/$c.pid" ] && kill -TERM "$(cat "$DIR/pids/$c.pid")" 2>/dev/null || true
  done
  log "stopped the partial cluster; logs are in $DIR/logs"
  exit 1
}

# wait_for SECONDS WHAT CMD...: polls CMD every 0.2 s.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    for c in "${COMPONENTS[@]}"; do
      [ -f "$DIR/pids/$c.pid" ] || continue
      alive "$c" || fail "$c exited while waiting for $what"
    done
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}

k() { "$KUBECTL" --kubeconfig "$KCFG.tmp" --request-timeout=5s "$@"; }

wait_for 60 "kube-apiserver /readyz" k get --raw /readyz
log "apiserver ready on https://127.0.0.1:$API_PORT after $(elapsed)"

# The rest start once RBAC's bootstrap policy is in place (the controller manager
# exits if it cannot read its delegated-authentication configmap yet).
for c in kube-controller-manager kube-scheduler; do mkdir -p "$PKI/$c-serving"; done
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$PKI/kube-controller-manager-serving" \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=true --controllers='*' --leader-elect=false \
  --service-cluster-ip-range=10.0.0.0/24 --allocate-node-cidrs=false \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --profiling=false

start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$DIR/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$PKI/kube-scheduler-serving" \
  --leader-elect=false --profiling=false

start kwok "$KWOK_BIN/kwok" \
  --kubeconfig="$DIR/kwok.kubeconfig" --config="$KWOK_BIN/stages.yaml" \
  --manage-all-nodes=true --node-lease-duration-seconds=40 \
  --server-address="127.0.0.1:$KWOK_PORT" --cidr=10.244.0.0/16 --node-ip=127.0.0.1


# The fake node. kwok (--manage-all-nodes) fills in its status and keeps it Ready.
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $NODE
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo:
    architecture: amd64
    kubeletVersion: fake
    kubeProxyVersion: fake
    operatingSystem: linux
EOF

node_ready() { [ "$(k get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for 60 "node $NODE Ready" node_ready
wait_for 60 "serviceaccount default/default" k -n default get serviceaccount default

mv -f "$KCFG.tmp" "$KCFG"
log "cluster up in $(elapsed) (excluding build): KUBECONFIG=$KCFG, apiserver https://127.0.0.1:$API_PORT, logs in $DIR/logs"
