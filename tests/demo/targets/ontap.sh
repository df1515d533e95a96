# Target hooks of the demo for spec.target.ontap (sourced by demo.sh): the ONTAP API test
# server with two accounts that alternate. An ONTAP account holds one password: the new one goes
# to the standby account, the workloads move to it, then the other account is retired. The
# proof is a real login (HTTPS, Basic auth) on the server.

TARGET_TITLE="the ONTAP API test server, accounts orders-a and orders-b"
OLD_USER=orders-a
STANDBY_USER=orders-b
AUTH_WHAT="a real login <account> <password> on the ONTAP API server"

target_start() {
  ADMIN_PASSWORD="$(gen_password admin)"
  OLD_PASSWORD="$(gen_password "$OLD_USER")"
  STANDBY_PASSWORD="$(gen_password "$STANDBY_USER")"
  cat >"$WORK/ontap-server.json" <<JSON
{
  "accounts": [
    {"name": "admin", "role": "admin", "password": "$ADMIN_PASSWORD"},
    {"name": "$OLD_USER", "role": "readonly", "password": "$OLD_PASSWORD"},
    {"name": "$STANDBY_USER", "role": "readonly", "password": "$STANDBY_PASSWORD"}
  ],
  "lockout": {"max_failures": 1000000, "duration_ms": 1000}
}
JSON
  chmod 600 "$WORK/ontap-server.json"
  self_signed_certificate api
  start_server ontap-server "$ROOT_BIN/ontap-api-server" --config "$WORK/ontap-server.json" \
    --tls-cert "$WORK/api-cert.pem" --tls-key "$WORK/api-key.pem"
  ok "ONTAP API test server at $SERVER_URL (the demo's checks never lock an account out)"
  ok "accounts $OLD_USER (in use) and $STANDBY_USER (standby), both role readonly; caSecret target-ca pins the certificate"
}

target_admin_secret() {
  printf 'stringData: {username: admin, password: "%s"}\n' "$ADMIN_PASSWORD"
}

# The platform's part: the connection of the ClusterRotationTarget, and the objects it allows.
target_connection() {
  cat <<YAML
  ontap:
    url: $SERVER_URL
    credentialsSecret: target-admin
    caSecret: {name: target-ca, key: ca.crt}
YAML
}
target_objects() { echo "$OLD_USER, $STANDBY_USER"; }
target_modes() { echo AddThenDelete; }
# The tenant's part: the object under the PasswordRotation's spec.target.
target_object() { echo "    alternatingAccounts: [$OLD_USER, $STANDBY_USER]"; }

# auth_batch: reads "user password" lines; one HTTPS login each (GET /api/cluster). The
# credentials reach curl through its config on stdin, never as arguments.
auth_batch() {
  local user password code
  while read -r user password; do
    code="$(printf 'user = "%s:%s"\n' "$user" "$password" |
      curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/api-cert.pem" -K - "$SERVER_URL/api/cluster" || true)"
    if [ "$code" = 200 ]; then echo accepted; else echo rejected; fi
  done
}

describe_call() {
  case "$1" in
    Added) echo "standby account $STANDBY_USER gets the new password (POST /api/security/authentication/password): both accounts work" ;;
    Replacing) echo "the account's only password is replaced" ;;
    Retired) echo "account $OLD_USER retired with a fresh password that only the state Secret holds" ;;
  esac
}

target_prove() {
  local failures=0 user
  user="$(secret_value "$USER_SECRET" username)"
  if [ "$user" = "$STANDBY_USER" ]; then
    ok "Secret $USER_SECRET names account $STANDBY_USER now (user name and password written together)"
  else
    printf '   %sFAIL%s Secret %s names %s, not %s\n' "$RED" "$N" "$USER_SECRET" "$user" "$STANDBY_USER"; failures=$((failures + 1))
  fi
  if [ "$(printf '%s %s\n' "$STANDBY_USER" "$STANDBY_PASSWORD" | auth_batch)" = rejected ]; then
    ok "the standby account's initial password -> login $(shown rejected)"
  else
    printf '   %sFAIL%s the standby account still accepts its initial password\n' "$RED" "$N"; failures=$((failures + 1))
  fi
  return $failures
}
