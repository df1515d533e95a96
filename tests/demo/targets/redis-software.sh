# Target hooks of the demo for a redisSoftware target (sourced by demo.sh).
# A real redis-server, and the Redis Software REST API test server in front of it, which
# applies every password change to redis-server with ACL SETUSER; the proof is a real AUTH.

TARGET_TITLE="redis-server and the Redis Software API test server"
OLD_USER=orders-app
AUTH_WHAT="a real AUTH <user> <password> on redis-server"

target_start() {
  REDIS_PORT="$(free_port)"
  start_redis redis-server "$REDIS_PORT"
  REDIS_ADMIN_PASSWORD="$(gen_password "$OLD_USER")"
  RS_ADMIN_PASSWORD="$(gen_password "$OLD_USER")"
  OLD_PASSWORD="$(gen_password "$OLD_USER")"
  # The API server changes passwords through this ACL user.
  [ "$(printf 'ACL SETUSER rotator-admin reset on >%s ~* &* +@all\n' "$REDIS_ADMIN_PASSWORD" | rcli "$REDIS_PORT")" = OK ] ||
    fail "could not create the ACL user rotator-admin"
  ok "redis-server on 127.0.0.1:$REDIS_PORT (ACL user rotator-admin for the API server)"

  # The API server creates the ACL user orders-app with exactly the initial password.
  cat >"$WORK/api-server.json" <<JSON
{
  "admin": {"email": "admin@demo.test", "password": "$RS_ADMIN_PASSWORD"},
  "users": [
    {"uid": 2, "name": "$OLD_USER", "email": "$OLD_USER@demo.test", "role": "db_member",
     "passwords": ["$OLD_PASSWORD"]}
  ],
  "databases": [],
  "redis_addr": "127.0.0.1:$REDIS_PORT",
  "redis_admin": {"user": "rotator-admin", "password": "$REDIS_ADMIN_PASSWORD"},
  "password_complexity": true
}
JSON
  chmod 600 "$WORK/api-server.json"
  self_signed_certificate api
  start_server api-server "$ROOT_BIN/redis-software-api-server" --config "$WORK/api-server.json" \
    --tls-cert "$WORK/api-cert.pem" --tls-key "$WORK/api-key.pem"
  ok "Redis Software API test server at $SERVER_URL"
  ok "its certificate: self-signed CA:TRUE by openssl req -x509, as Redis Software ships it; caSecret target-ca holds it (pinned)"
}

target_admin_secret() {
  printf 'stringData: {username: "admin@demo.test", password: "%s"}\n' "$RS_ADMIN_PASSWORD"
}

# The platform's part: the connection of the ClusterRotationTarget, and the objects it allows.
target_connection() {
  cat <<YAML
  redisSoftware:
    url: $SERVER_URL
    credentialsSecret: target-admin
    caSecret: {name: target-ca, key: ca.crt}
YAML
}
target_objects() { echo "$OLD_USER"; }
target_modes() { echo AddThenDelete; }
# The tenant's part: the object under the PasswordRotation's spec.target.
target_object() { echo "    user: $OLD_USER"; }

# auth_batch: reads "user password" lines, prints accepted/rejected for each, in one fork.
auth_batch() { redis_auth_batch "$REDIS_PORT"; }

describe_call() {
  case "$1" in
    Added) echo "new password added beside the old one (POST /v1/users/password): both work" ;;
    Replacing) echo "replacing every password with the new one (PUT /v1/users/password)" ;;
    Retired) echo "deleting the old password (DELETE /v1/users/password)" ;;
  esac
}

# target_prove: what only this target can show; prints ok/FAIL lines, returns the failures.
target_prove() {
  acl_holds_only "$REDIS_PORT" "$REDIS_ADMIN_PASSWORD" rotator-admin
}
