# Target hooks of the demo for spec.target.redis (sourced by demo.sh): an ACL user of a real
# primary redis-server and its replica. The operator finds the replica from the primary and
# changes the user on both; the proof is a real AUTH on both nodes.

TARGET_TITLE="a redis-server primary and its replica, with an ACL file"
OLD_USER=orders-app
AUTH_WHAT="a real AUTH <user> <password> on the primary and on the replica"
OPERATOR_FLAGS=(--allow-insecure-http)

target_start() {
  ADMIN_PASSWORD="$(gen_password "$OLD_USER")"
  OLD_PASSWORD="$(gen_password "$OLD_USER")"
  PRIMARY_PORT="$(free_port)" REPLICA_PORT="$(free_port)"
  # Users live in each node's ACL file: ACL SAVE keeps a rotation across restarts. The admin
  # has exactly the rights the operator needs.
  for node in primary replica; do
    umask 077
    printf 'user default on nopass ~* &* +@all\nuser rotator-admin on >%s +acl|getuser +acl|setuser +acl|save +config|get +config|rewrite +info +cluster|shards\nuser %s on >%s ~* &* +@all\n' \
      "$ADMIN_PASSWORD" "$OLD_USER" "$OLD_PASSWORD" >"$WORK/$node.acl"
  done
  start_redis redis-server "$PRIMARY_PORT" --aclfile "$WORK/primary.acl"
  start_redis redis-replica "$REPLICA_PORT" --aclfile "$WORK/replica.acl" --replicaof 127.0.0.1 "$PRIMARY_PORT"
  for _ in $(seq 100); do
    rcli "$REPLICA_PORT" INFO replication | grep -q 'master_link_status:up' && break
    sleep 0.1
  done
  rcli "$REPLICA_PORT" INFO replication | grep -q 'master_link_status:up' ||
    fail "the replica did not connect to its primary"
  ok "primary redis-server on 127.0.0.1:$PRIMARY_PORT, replica on 127.0.0.1:$REPLICA_PORT (ACL files)"
  ok "ACL user rotator-admin: +acl|getuser +acl|setuser +acl|save +config|get +config|rewrite +info +cluster|shards"
}

target_admin_secret() {
  printf 'stringData: {username: rotator-admin, password: "%s"}\n' "$ADMIN_PASSWORD"
}

# The platform's part: the connection of the ClusterRotationTarget, and the objects it allows.
target_connection() {
  cat <<YAML
  redis:
    endpoints: ["127.0.0.1:$PRIMARY_PORT"]
    credentialsSecret: target-admin
    insecurePlaintext: true
YAML
}
target_objects() { echo "$OLD_USER"; }
target_modes() { echo AddThenDelete; }
# The tenant's part: the object under the PasswordRotation's spec.target.
target_object() { echo "    user: $OLD_USER"; }

# auth_batch: reads "user password" lines; accepted only where both nodes accept.
auth_batch() {
  local input primary replica i
  input="$(cat)"
  mapfile -t primary < <(printf '%s\n' "$input" | redis_auth_batch "$PRIMARY_PORT")
  mapfile -t replica < <(printf '%s\n' "$input" | redis_auth_batch "$REPLICA_PORT")
  for i in "${!primary[@]}"; do
    if [ "${primary[$i]}" = "${replica[$i]:-}" ]; then echo "${primary[$i]}"; else echo "${primary[$i]}/${replica[$i]:-none}"; fi
  done
}

describe_call() {
  case "$1" in
    Added) echo "ACL SETUSER $OLD_USER >new on both nodes, read back with ACL GETUSER, ACL SAVE: both passwords work" ;;
    Replacing) echo "ACL SETUSER $OLD_USER resetpass >new on both nodes" ;;
    Retired) echo "ACL SETUSER $OLD_USER <old on both nodes, once both accept the new one" ;;
  esac
}

target_prove() {
  local failures=0 port
  for port in "$PRIMARY_PORT" "$REPLICA_PORT"; do
    acl_holds_only "$port" "$ADMIN_PASSWORD" rotator-admin || failures=$((failures + 1))
  done
  if [ "$(kubectl -n "$NS" get passwordrotation "$ROTATION" -o jsonpath='{.status.persistence}')" = AclFile ]; then
    ok "status.persistence: AclFile (ACL SAVE on every node)"
  else
    printf '   %sFAIL%s status.persistence is not AclFile\n' "$RED" "$N"; failures=$((failures + 1))
  fi
  return $failures
}
