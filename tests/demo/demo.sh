#!/usr/bin/env bash
# A full password rotation on the local control plane, shown step by step.
#
#   make demo                  # Redis Software (= make cluster-up, then this script)
#   make demo TARGET=redis     # an open-source Redis primary and its replica
#   make demo TARGET=ontap     # NetApp ONTAP, with alternating accounts
#   tests/demo/demo.sh         # when the cluster is already up (TARGET from the environment)
#
# What runs (all on 127.0.0.1, stopped again when this script exits): what the target needs
# (tests/demo/targets/<TARGET>.sh: redis-server(s), an API test server) and password-rotator,
# the operator, watching only the namespace `demo`. As the platform team would: a
# ClusterRotationTarget `demo-<TARGET>` allowed to the namespace `demo` for the demo's user only,
# its Secrets target-admin and target-ca (when the target speaks TLS) in the namespace
# `demo-platform` (the operator's --cluster-target-namespace), where no tenant reads. As the
# tenant would, in the namespace `demo`: Secret orders-credentials, a Deployment `orders`
# (2 replicas, faked by kwok) that reads it, and a PasswordRotation `orders-cache` naming the
# target and the user.
#
# At every step it shows whether the OLD and the NEW password authenticate right now, with a
# real AUTH on redis-server (or a real login on the ONTAP server). Passwords are never printed:
# only a short SHA-256 prefix. Exit 0 only if, at the end, the old password is rejected and
# the new one accepted.
#
# Re-runnable: the namespace `demo` and the work dir target/demo are recreated; leftovers of
# a previous run are stopped by their pid files. The namespace is left in place at the end
# for inspection (the operator is stopped, so deleting it by hand hangs on the finalizer;
# the next run strips it).
#
# Environment: TARGET (redis-software, redis or ontap; default redis-software), DEMO_TIMEOUT
# (seconds for the rotation, default 120).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

NS=demo
PLATFORM_NS=demo-platform
WORK="$root/target/demo"
KCFG="${ROTATOR_CLUSTER_DIR:-$root/target/cluster}/kubeconfig"
TIMEOUT="${DEMO_TIMEOUT:-120}"
ROTATION=orders-cache
STATE_SECRET="$ROTATION-rotation"
USER_SECRET=orders-credentials
DEPLOYMENT=orders
TARGET="${TARGET:-redis-software}"
OPERATOR_FLAGS=()
[ -f "$here/targets/$TARGET.sh" ] ||
  { echo "TARGET=$TARGET: no tests/demo/targets/$TARGET.sh (redis-software, redis or ontap)" >&2; exit 2; }
# shellcheck source=targets/redis-software.sh
. "$here/targets/$TARGET.sh"

# ---- output -------------------------------------------------------------------------------
if [ -t 1 ]; then
  B=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GREEN=$'\e[32m' YELLOW=$'\e[33m' CYAN=$'\e[36m' N=$'\e[0m'
else
  B='' DIM='' RED='' GREEN='' YELLOW='' CYAN='' N=''
fi
section() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
info() { printf '   %s\n' "$*"; }
ok() { printf '   %sok%s  %s\n' "$GREEN" "$N" "$*"; }
fail() {
  printf '\n%sdemo FAILED:%s %s\n' "$RED$B" "$N" "$*" >&2
  for f in operator.log api-server.log ontap-server.log; do
    if [ -s "$WORK/$f" ]; then
      printf '%s--- last lines of target/demo/%s ---%s\n' "$DIM" "$f" "$N" >&2
      tail -n 25 "$WORK/$f" >&2
    fi
  done
  exit 1
}

# Microseconds since the epoch, without forking (bash 5). The decimal point may be a comma.
now_us() { local t="${EPOCHREALTIME//[.,]/}"; echo "$t"; }
# elapsed US: "[ 12.3s]" since the PasswordRotation was applied.
# (Negative for what the watches show before it: the state they start from.)
elapsed() {
  local d=$(( ($1 - T0) / 100000 )) sign=""
  if [ "$d" -lt 0 ]; then sign=-; d=$(( -d )); fi
  printf '[%4s.%ds]' "$sign$(( d / 10 ))" $(( d % 10 ))
}

# short_hash SECRET: the first 8 hex digits of its SHA-256, to tell passwords apart.
short_hash() { printf '%s' "$1" | sha256sum | cut -c1-8; }

# ---- tools -----------------------------------------------------------------------------------
eval "$("$here/../cluster/build.sh" --print-dirs)"   # K8S_BIN=... (kubectl v1.36)
KUBECTL="$K8S_BIN/kubectl"
kubectl() { "$KUBECTL" --kubeconfig "$KCFG" "$@"; }
for tool in redis-server redis-cli python3 sha256sum base64 openssl curl; do
  command -v "$tool" >/dev/null || fail "$tool not found: run tests/install-deps.sh (make deps)"
done
[ -f "$KCFG" ] && kubectl --request-timeout=5s get --raw /readyz >/dev/null 2>&1 ||
  fail "the local control plane is not running: run make cluster-up (or use make demo)"

# ---- leftovers of a previous run --------------------------------------------------------
# stop_pidfile NAME EXPECTED: stop the process recorded in target/demo/NAME.pid, but only if
# its command line still names EXPECTED (a pid may have been reused since).
stop_pidfile() {
  local f="$WORK/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"; rm -f "$f"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
stop_all() {
  stop_pidfile watch-rotation kubectl
  stop_pidfile watch-deployment kubectl
  stop_pidfile watch-secrets kubectl
  stop_pidfile operator password-rotator
  stop_pidfile api-server redis-software-api-server
  stop_pidfile ontap-server ontap-api-server
  stop_pidfile redis-server redis-server
  stop_pidfile redis-replica redis-server
}
stop_all

section "Build"
cargo build --workspace --quiet
ok "cargo build --workspace"
ROOT_BIN="$root/target/debug"
OPERATOR="$ROOT_BIN/password-rotator"

# The namespace of a previous run: the PasswordRotation in it carries the operator's
# finalizer and no operator runs any more, so strip it, or the namespace never goes away.
if kubectl get namespace "$NS" >/dev/null 2>&1; then
  info "deleting namespace $NS of a previous run"
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  for rot in $(kubectl -n "$NS" get passwordrotations -o name 2>/dev/null); do
    kubectl -n "$NS" patch "$rot" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  kubectl wait --for=delete "namespace/$NS" --timeout=120s >/dev/null 2>&1 ||
    fail "namespace $NS of a previous run is still there after 120 s: $(kubectl get namespace "$NS" -o jsonpath='{.status.conditions}' 2>&1)"
fi
kubectl delete namespace "$PLATFORM_NS" --ignore-not-found --timeout=120s >/dev/null 2>&1 ||
  fail "namespace $PLATFORM_NS of a previous run is still there after 120 s"

rm -rf "$WORK"
mkdir -p "$WORK"
chmod 700 "$WORK"   # it holds the API server's config, with passwords

# From here on every process started is stopped when the script ends, however it ends.
cleanup() {
  local rc=$?
  stop_all
  if [ $rc = 0 ]; then
    printf '\n%s%s%s\n' "$DIM" "processes stopped; logs in target/demo/; namespace $NS kept for inspection" "$N"
  elif [ $rc = 130 ]; then
    printf '\ninterrupted: processes stopped (the next run starts afresh)\n' >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the target ------------------------------------------------------------------------
section "1. $TARGET_TITLE"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# gen_password USER: 24 random characters from letters, digits and "-_."; upper, lower, digit
# and special present, no character 3 times in a row, not containing USER (or reversed):
# Redis Software's complexity rules, which the API test server enforces.
gen_password() {
  python3 - "$1" <<'EOF'
import secrets, string, sys
alphabet = string.ascii_letters + string.digits + "-_."
user = sys.argv[1].lower()
while True:
    pw = "".join(secrets.choice(alphabet) for _ in range(24))
    if (any(c.isupper() for c in pw) and any(c.islower() for c in pw)
            and any(c.isdigit() for c in pw) and any(c in "-_." for c in pw)
            and not any(pw[i] == pw[i + 1] == pw[i + 2] for i in range(len(pw) - 2))
            and user not in pw.lower() and user[::-1] not in pw.lower()):
        print(pw)
        break
EOF
}

# rcli PORT ARGS...: redis-cli on a redis-server of the demo. Commands that carry a password
# are fed on stdin, never as arguments (which any local user could read in the process list).
rcli() { local port="$1"; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# start_redis NAME PORT ARGS...: a redis-server, its pid in target/demo/NAME.pid.
start_redis() {
  local name="$1" port="$2"; shift 2
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
    --dir "$WORK" --dbfilename "$name.rdb" --logfile "$WORK/$name.log" "$@" </dev/null >/dev/null 2>&1 &
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 50); do [ "$(rcli "$port" PING 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  [ "$(rcli "$port" PING 2>/dev/null)" = PONG ] || fail "redis-server $name did not start on port $port (target/demo/$name.log)"
}

# self_signed_certificate NAME: NAME-cert.pem and NAME-key.pem the way vendors ship their
# default certificates: self-signed, and CA:TRUE as `openssl req -x509` marks it. The operator
# gets the certificate itself as caSecret (pinned).
self_signed_certificate() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/$1-key.pem" -out "$WORK/$1-cert.pem" >"$WORK/openssl.log" 2>&1 ||
    fail "openssl req -x509 failed (target/demo/openssl.log)"
  openssl x509 -noout -text -in "$WORK/$1-cert.pem" | grep -q 'CA:TRUE' ||
    fail "the openssl certificate is not CA:TRUE"
}

# start_server NAME BINARY ARGS...: an API test server on a free port; SERVER_URL its URL.
start_server() {
  local name="$1" binary="$2"; shift 2
  "$binary" --listen 127.0.0.1:0 --url-out "$WORK/url.txt" "$@" \
    </dev/null >"$WORK/$name.out" 2>"$WORK/$name.log" &
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 100); do
    [ -s "$WORK/url.txt" ] && break
    kill -0 "$(cat "$WORK/$name.pid")" 2>/dev/null || fail "$name exited (target/demo/$name.log)"
    sleep 0.1
  done
  [ -s "$WORK/url.txt" ] || fail "$name did not start within 10 s"
  SERVER_URL="$(cat "$WORK/url.txt")"
}

# redis_auth_batch PORT: reads "user password" lines, prints accepted/rejected for each, with
# one redis-cli connection (one fork: fast enough to run while a step still holds).
redis_auth_batch() {
  local user password reply
  while read -r user password; do printf 'AUTH %s %s\n' "$user" "${password:-none}"; done |
    rcli "$1" 2>&1 |
    while IFS= read -r reply; do
      # redis-cli follows an error reply (WRONGPASS ...) with an empty line: skip it.
      [ -n "$reply" ] || continue
      if [ "$reply" = OK ]; then echo accepted; else echo rejected; fi
    done
}

# acl_holds_only PORT ADMIN_PASSWORD ADMIN_USER: ACL GETUSER lists the SHA-256 of every
# password the user has: exactly the new one must be left on that node.
acl_holds_only() {
  local hashes full_new_hash
  hashes="$(printf 'AUTH %s %s\nACL GETUSER %s\n' "$3" "$2" "$OLD_USER" | rcli "$1" | grep -E '^[0-9a-f]{64}$' || true)"
  full_new_hash="$(printf '%s' "$NEW_PASSWORD" | sha256sum | cut -d' ' -f1)"
  if [ "$hashes" = "$full_new_hash" ]; then
    ok "redis-server 127.0.0.1:$1 holds exactly one password for $OLD_USER: sha256 $NEW_HASH..."
  else
    printf '   %sFAIL%s redis-server 127.0.0.1:%s holds %s password(s) for %s: %s\n' "$RED" "$N" "$1" \
      "$(printf '%s' "$hashes" | grep -c . || true)" "$OLD_USER" "$(printf '%s' "$hashes" | cut -c1-8 | tr '\n' ' ')"
    return 1
  fi
}

# auth USER PASSWORD: accepted/rejected, as the target says right now.
auth() { printf '%s %s\n' "$1" "$2" | auth_batch; }
# shown WORD: accepted in green, anything else in red.
shown() { if [ "$1" = accepted ]; then printf '%s%s%s' "$GREEN" "$1" "$N"; else printf '%s%s%s' "$RED" "$1" "$N"; fi; }

target_start
OLD_HASH="$(short_hash "$OLD_PASSWORD")"
[ "$(auth "$OLD_USER" "$OLD_PASSWORD")" = accepted ] || fail "the initial password of $OLD_USER is not accepted"
ok "$OLD_USER has its initial password, sha256 $OLD_HASH...: $(shown accepted)"

# ---- 2. Kubernetes: the CRD, the namespace, the Secrets and the workload -------------------
section "2. CRDs; the platform's target; namespace $NS, its Secret and Deployment $DEPLOYMENT"
"$OPERATOR" crd | kubectl apply --server-side -f - >/dev/null
for crd in passwordrotations rotationtargets clusterrotationtargets; do
  kubectl wait --for=condition=Established "crd/$crd.rotator.dev" --timeout=60s >/dev/null
done
ok "CRDs passwordrotations, rotationtargets, clusterrotationtargets (rotator.dev) established"

# The platform team's part: the admin Secrets where no tenant reads, and the target with its
# policy. Secrets through stdin (a heredoc), so no password is ever a command-line argument.
kubectl create namespace "$PLATFORM_NS" >/dev/null
kubectl -n "$PLATFORM_NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata: {name: target-admin}
$(target_admin_secret)
EOF
secrets="target-admin (the admin login)"
if [ -f "$WORK/api-cert.pem" ]; then
  kubectl -n "$PLATFORM_NS" create secret generic target-ca --from-file=ca.crt="$WORK/api-cert.pem" >/dev/null
  secrets="$secrets, target-ca (the server's certificate)"
fi
ok "namespace $PLATFORM_NS (the platform's): Secrets $secrets"
CLUSTER_TARGET="demo-$TARGET"
TARGET_YAML="apiVersion: rotator.dev/v1alpha2
kind: ClusterRotationTarget
metadata: {name: $CLUSTER_TARGET}
spec:
$(target_connection)
  allow:
    namespaces: {names: [$NS]}
    objects: [$(target_objects)]
    modes: [$(target_modes)]"
printf '%s\n' "$TARGET_YAML" | sed "s/^/   ${DIM}|${N} /"
printf '%s\n' "$TARGET_YAML" | kubectl apply --server-side -f - >/dev/null
ok "ClusterRotationTarget $CLUSTER_TARGET: the connection, and who may use it for what"

kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata: {name: $USER_SECRET, annotations: {rotator.dev/allowed-rotations: orders-cache}}
stringData: {username: "$OLD_USER", password: "$OLD_PASSWORD"}
EOF
ok "namespace $NS (the tenant's): Secret $USER_SECRET (what the app reads; it allows PasswordRotation orders-cache to write it)"

# Pods run nowhere: kwok marks them Running and Ready on its fake node, so any image will do.
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $DEPLOYMENT}
spec:
  replicas: 2
  selector: {matchLabels: {app: $DEPLOYMENT}}
  template:
    metadata: {labels: {app: $DEPLOYMENT}}
    spec:
      containers:
      - name: app
        image: orders:demo
        env:
        - name: REDIS_USERNAME
          valueFrom: {secretKeyRef: {name: $USER_SECRET, key: username}}
        - name: REDIS_PASSWORD
          valueFrom: {secretKeyRef: {name: $USER_SECRET, key: password}}
EOF
kubectl -n "$NS" rollout status "deployment/$DEPLOYMENT" --timeout=120s >/dev/null ||
  fail "Deployment $DEPLOYMENT did not become available"
OLD_RS="$(kubectl -n "$NS" get rs -l "app=$DEPLOYMENT" -o jsonpath='{.items[0].metadata.name}')"
ok "Deployment $DEPLOYMENT available: 2/2 replicas (ReplicaSet $OLD_RS)"

# ---- 3. the operator and the PasswordRotation ------------------------------------------------
section "3. Operator and PasswordRotation $ROTATION"
LOG_FORMAT=text "$OPERATOR" run --kubeconfig "$KCFG" --namespace "$NS" --cluster-target-namespace "$PLATFORM_NS" ${OPERATOR_FLAGS[@]+"${OPERATOR_FLAGS[@]}"} \
  </dev/null >"$WORK/operator.log" 2>&1 &
echo $! >"$WORK/operator.pid"
ok "password-rotator running (namespace $NS; ClusterRotationTargets' Secrets in $PLATFORM_NS; log in target/demo/operator.log)"

# Three watches feed one FIFO, each line stamped on arrival with its source and the time, so
# that no change is missed (a poll could miss a step that lasts a few milliseconds) and the
# times shown are those of the changes. The loop below makes no API call while the rotation
# runs: a kubectl call takes longer than some steps do (Added -> Published: ~20 ms), and the
# AUTH checks must run while the step they describe still holds.
# The Secret watch carries the two passwords (base64) through the FIFO, in memory only.
mkfifo "$WORK/changes.fifo"
exec 3<>"$WORK/changes.fifo"   # read-write: opening does not block, no EOF if a watch ends
# (EPOCHREALTIME inline rather than $(now_us): no fork per line.)
stamp() { local line; while IFS= read -r line; do printf '%s|%s|%s\n' "$1" "${EPOCHREALTIME//[.,]/}" "$line"; done; }
# (kubectl itself, not the function: $! must be the kubectl process, for its pid file.)
"$KUBECTL" --kubeconfig "$KCFG" -n "$NS" get passwordrotations --field-selector "metadata.name=$ROTATION" --watch \
  -o jsonpath='{.status.phase}|{.status.step}|{.status.rotationId}|{.status.lastRotationTime}{"\n"}' \
  > >(stamp rotation >&3) 2>"$WORK/watch-rotation.log" &
echo $! >"$WORK/watch-rotation.pid"
"$KUBECTL" --kubeconfig "$KCFG" -n "$NS" get deployments --field-selector "metadata.name=$DEPLOYMENT" --watch \
  -o jsonpath='{.metadata.generation}|{.status.observedGeneration}|{.status.updatedReplicas}|{.status.availableReplicas}|{.status.replicas}|{.spec.template.metadata.annotations.rotation\.rotator\.dev/orders-cache}|{.status.conditions[?(@.type=="Progressing")].message}{"\n"}' \
  > >(stamp deployment >&3) 2>"$WORK/watch-deployment.log" &
echo $! >"$WORK/watch-deployment.pid"
"$KUBECTL" --kubeconfig "$KCFG" -n "$NS" get secrets --watch --output-watch-events \
  -o jsonpath='{.type}|{.object.metadata.name}|{.object.data.pending}|{.object.data.password}|{.object.data.username}|{.object.data.pendingAccount}{"\n"}' \
  > >(stamp secret >&3) 2>"$WORK/watch-secrets.log" &
echo $! >"$WORK/watch-secrets.pid"
sleep 1   # let the watches start before anything changes

REQUEST="demo-$(date -u +%Y%m%dT%H%M%SZ)"
ROTATION_YAML="apiVersion: rotator.dev/v1alpha2
kind: PasswordRotation
metadata: {name: $ROTATION, namespace: $NS}
spec:
  target:
    ref: {kind: ClusterRotationTarget, name: $CLUSTER_TARGET}
$(target_object)
  secret: {name: $USER_SECRET, passwordKey: password, usernameKey: username}
  rollout:
    workloads: [{kind: Deployment, name: $DEPLOYMENT}]
    overlap: 3s
    timeout: 5m
  rotationRequest: $REQUEST"
printf '%s\n' "$ROTATION_YAML" | sed "s/^/   ${DIM}|${N} /"
T0="$(now_us)"
printf '%s\n' "$ROTATION_YAML" | kubectl apply -f - >/dev/null

# ---- 4. the rotation, step by step -------------------------------------------------------------
section "4. The rotation, step by step (AUTH = $AUTH_WHAT)"
printf '%s %s\n' "$(elapsed "$T0")" "PasswordRotation $ROTATION applied (rotationRequest $REQUEST)"

describe() {
  case "$1/$2" in
    Rotating/Staged) echo "new password generated and stored in Secret $STATE_SECRET" ;;
    Rotating/Added | Rotating/Replacing | Rotating/Retired) describe_call "$2" ;;
    Rotating/Verified) echo "new password verified by a login" ;;
    Rotating/Published) echo "new password written to Secret $USER_SECRET; Deployment $DEPLOYMENT restarting" ;;
    Rotating/RolledOut) echo "Deployment $DEPLOYMENT rolled out and overlap (3s) passed" ;;
    Idle/) if [ -n "$3" ]; then echo "rotation complete: state Secret removed, lastRotationTime $3"; else echo "waiting"; fi ;;
    Blocked/*) echo "BLOCKED" ;;
    *) echo "" ;;
  esac
}

# secret_value NAME KEY: a Secret's value, decoded ("" if absent).
secret_value() {
  kubectl -n "$NS" get secret "$1" -o jsonpath="{.data.$2}" 2>/dev/null | base64 -d 2>/dev/null || true
}
decode() { printf '%s' "$1" | base64 -d 2>/dev/null || true; }
# which_password PASSWORD: old / new / other, for the Secret the workloads read.
which_password() {
  if [ "$1" = "$OLD_PASSWORD" ]; then echo old
  elif [ -n "$NEW_PASSWORD" ] && [ "$1" = "$NEW_PASSWORD" ]; then echo new
  else echo "other (sha256 $(short_hash "$1"))"; fi
}

NEW_PASSWORD=""    # from the state Secret's `pending`, as soon as the watch shows it
NEW_HASH=""
NEW_USER="$OLD_USER"   # the state Secret's `pendingAccount`: another one for alternating accounts
PUBLISHED="$OLD_PASSWORD"   # what Secret orders-credentials holds, as the watch shows it
PUBLISHED_USER="$OLD_USER"
VIOLATIONS=0
# check_now: which passwords redis-server accepts right now, and what the workloads read.
check_now() {
  local results old new published new_text
  mapfile -t results < <(printf '%s %s\n' "$OLD_USER" "$OLD_PASSWORD" "$NEW_USER" "${NEW_PASSWORD:-none}" \
    "$PUBLISHED_USER" "$PUBLISHED" | auth_batch)
  old="${results[0]:-rejected}" new="${results[1]:-rejected}" published="${results[2]:-rejected}"
  if [ -n "$NEW_PASSWORD" ]; then new_text="new $NEW_USER $NEW_HASH: $(shown "$new")"; else new_text="new: not generated yet"; fi
  # Stamped with the time of the check: a step may already be over when its line is read.
  printf '%s %s  old %s %s: %s%s   %s%s   Secret %s holds: %s%s\n' "$(elapsed "$(now_us)")" "$DIM" "$OLD_USER" "$OLD_HASH" \
    "$(shown "$old")" "$DIM" "$new_text" "$DIM" "$USER_SECRET" "$(which_password "$PUBLISHED")" "$N"
  # The invariant that matters to the workloads: what they read is always accepted.
  if [ "$published" != accepted ]; then
    printf '           %sINVARIANT BROKEN: the password in Secret %s is rejected%s\n' "$RED" "$USER_SECRET" "$N"
    VIOLATIONS=$((VIOLATIONS + 1))
  fi
}

last_state="" last_deployment="" last_progress="" last_annotation="" seen_rotating=0 done=0
deadline=$(( T0 + TIMEOUT * 1000000 ))
while [ $done = 0 ]; do
  if [ "$(now_us)" -gt "$deadline" ]; then
    kubectl -n "$NS" get passwordrotation "$ROTATION" -o yaml | sed -n '/^status:/,$p' >&2 || true
    fail "no complete rotation within ${TIMEOUT} s (set DEMO_TIMEOUT to wait longer)"
  fi
  kill -0 "$(cat "$WORK/operator.pid")" 2>/dev/null || fail "the operator exited"
  IFS='|' read -r -t 1 source ts f1 f2 f3 f4 f5 f6 f7 f8 <&3 || continue
  case "$source" in
    rotation)
      phase="$f1" step="$f2" rotation_id="$f3" last_rotation="$f4"
      [ -n "$phase" ] || continue                 # not yet seen by the operator
      [ "$phase/$step" != "$last_state" ] || continue
      last_state="$phase/$step"
      [ "$phase" = Rotating ] && seen_rotating=1
      color="$CYAN"; [ "$phase" = Idle ] && color="$GREEN"; [ "$phase" = Blocked ] && color="$RED"
      printf '%s %s%-9s %-10s%s %s\n' "$(elapsed "$ts")" "$color$B" "$phase" "$step" "$N" \
        "$(describe "$phase" "$step" "$last_rotation")"
      [ "$step" = Staged ] && printf '           %srotation id %s%s\n' "$DIM" "$rotation_id" "$N"
      if [ "$phase" = Blocked ]; then
        kubectl -n "$NS" get passwordrotation "$ROTATION" \
          -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
        fail "the rotation is Blocked (see the conditions above)"
      fi
      check_now
      if [ "$phase" = Idle ] && [ -n "$last_rotation" ] && { [ $seen_rotating = 1 ] || [ -n "$NEW_PASSWORD" ]; }; then
        done=1
      fi
      ;;
    secret)
      type="$f1" name="$f2"
      if [ "$name" = "$STATE_SECRET" ]; then
        if [ "$type" = DELETED ]; then
          printf '%s %s  Secret %s deleted (the rotation is over)%s\n' "$(elapsed "$ts")" "$DIM" "$STATE_SECRET" "$N"
        elif [ -z "$NEW_PASSWORD" ] && [ -n "$f3" ]; then
          NEW_PASSWORD="$(decode "$f3")"; NEW_HASH="$(short_hash "$NEW_PASSWORD")"
          [ -z "$f6" ] || NEW_USER="$(decode "$f6")"
          printf '%s %s  Secret %s created: pending = new password, sha256 %s (stored before any other effect)%s\n' \
            "$(elapsed "$ts")" "$DIM" "$STATE_SECRET" "$NEW_HASH" "$N"
          check_now   # the earliest moment the new password is known: not yet added
        fi
      elif [ "$name" = "$USER_SECRET" ] && [ "$type" != DELETED ]; then
        value="$(decode "$f4")"
        if [ "$value" != "$PUBLISHED" ]; then
          PUBLISHED="$value" PUBLISHED_USER="$(decode "$f5")"
          result="$(auth "$PUBLISHED_USER" "$PUBLISHED")"
          printf '%s %s  Secret %s now holds %s and the %s password: %s%s\n' "$(elapsed "$ts")" "$DIM" "$USER_SECRET" \
            "$PUBLISHED_USER" "$(which_password "$PUBLISHED")" "$(shown "$result")" "$N"
          if [ "$result" != accepted ]; then
            printf '           %sINVARIANT BROKEN: the password in Secret %s is rejected%s\n' "$RED" "$USER_SECRET" "$N"
            VIOLATIONS=$((VIOLATIONS + 1))
          fi
        fi
      fi
      ;;
    deployment)
      # generation|observedGeneration|updated|available|replicas|rotation annotation|Progressing message
      if [ "$f6" != "$last_annotation" ]; then
        last_annotation="$f6"
        printf '%s %s  deployment/%s: pod template annotated rotation.rotator.dev/orders-cache=%s (generation %s)%s\n' \
          "$(elapsed "$ts")" "$DIM" "$DEPLOYMENT" "$f6" "$f1" "$N"
      fi
      # Counts only once the controller has seen the current generation.
      if [ "${f2:-0}" = "$f1" ]; then
        state="updated ${f3:-0}/2, available ${f4:-0}, pods ${f5:-0}"
        if [ "$state" != "$last_deployment" ]; then
          last_deployment="$state"
          printf '%s %s  deployment/%s: %s%s\n' "$(elapsed "$ts")" "$DIM" "$DEPLOYMENT" "$state" "$N"
        fi
      fi
      if [ -n "$f7" ] && [ "$f7" != "$last_progress" ]; then
        last_progress="$f7"
        printf '%s %s  deployment/%s: %s%s\n' "$(elapsed "$ts")" "$DIM" "$DEPLOYMENT" "$f7" "$N"
      fi
      ;;
  esac
done

# ---- 5. result and proof ---------------------------------------------------------------------
section "5. Result"
kubectl -n "$NS" get passwordrotations
echo
kubectl -n "$NS" get replicasets -l "app=$DEPLOYMENT" \
  -o custom-columns='REPLICASET:.metadata.name,DESIRED:.spec.replicas,READY:.status.readyReplicas,ROTATION:.spec.template.metadata.annotations.rotation\.rotator\.dev/orders-cache'

section "Events of PasswordRotation $ROTATION"
# The Rotated event is sent right after the last status write: give it a moment to land.
for _ in $(seq 50); do
  kubectl -n "$NS" get events --field-selector "involvedObject.name=$ROTATION,reason=Rotated" -o name 2>/dev/null | grep -q . && break
  sleep 0.1
done
# eventTime has microseconds (events.k8s.io/v1); creationTimestamp only seconds.
kubectl -n "$NS" get events --field-selector "involvedObject.name=$ROTATION" --sort-by=.eventTime \
  -o custom-columns='TIME:.eventTime,TYPE:.type,REASON:.reason,MESSAGE:.message'

section "Proof ($AUTH_WHAT)"
failures=0
published="$(secret_value "$USER_SECRET" password)"
if [ -z "$NEW_PASSWORD" ]; then   # the state Secret was gone before it could be read
  NEW_PASSWORD="$published"; NEW_HASH="$(short_hash "$NEW_PASSWORD")"
  NEW_USER="$(secret_value "$USER_SECRET" username)"
fi
if [ "$NEW_PASSWORD" = "$OLD_PASSWORD" ]; then
  printf '   %sFAIL%s the new password equals the old one\n' "$RED" "$N"; failures=$((failures + 1))
fi
if [ "$published" = "$NEW_PASSWORD" ]; then
  ok "Secret $USER_SECRET holds the new password (sha256 $NEW_HASH...)"
else
  printf '   %sFAIL%s Secret %s holds %s, not the new password\n' "$RED" "$N" "$USER_SECRET" "$(which_password "$published")"
  failures=$((failures + 1))
fi
result="$(auth "$OLD_USER" "$OLD_PASSWORD")"
if [ "$result" = rejected ]; then ok "old password of $OLD_USER (sha256 $OLD_HASH...) -> $(shown rejected)"
else printf '   %sFAIL%s old password of %s (sha256 %s...) -> %s\n' "$RED" "$N" "$OLD_USER" "$OLD_HASH" "$(shown "$result")"; failures=$((failures + 1)); fi
result="$(auth "$NEW_USER" "$NEW_PASSWORD")"
if [ "$result" = accepted ]; then ok "new password of $NEW_USER (sha256 $NEW_HASH...) -> $(shown accepted)"
else printf '   %sFAIL%s new password of %s (sha256 %s...) -> %s\n' "$RED" "$N" "$NEW_USER" "$NEW_HASH" "$(shown "$result")"; failures=$((failures + 1)); fi
target_prove || failures=$((failures + 1))
if [ $VIOLATIONS -gt 0 ]; then
  printf '   %sFAIL%s the Secret %s held a rejected password at %d step(s)\n' "$RED" "$N" "$USER_SECRET" "$VIOLATIONS"
  failures=$((failures + 1))
else
  ok "at every step, the password in Secret $USER_SECRET was accepted"
fi
[ $failures = 0 ] || fail "$failures check(s) failed"

total=$(( ($(now_us) - T0) / 100000 ))
printf '\n%sPassword rotated in %d.%d s, and Secret %s never held a password the target rejected.%s\n' \
  "$GREEN$B" $(( total / 10 )) $(( total % 10 )) "$USER_SECRET" "$N"
