//! The API test server against a real redis-server: every outcome is proven with a real `AUTH`.
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rotator_test_support::{
    api_server::{
        AdminLogin, ApiServer, ApiServerConfig, DatabaseConfig, FaultKind, FaultRule,
        RequestRecord, UserConfig,
    },
    redis_server::RedisServer,
};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin@example.com", "Admin-pass-1");
const APP: (&str, &str) = ("app@example.com", "Old-pass-1");
const OPS: (&str, &str) = ("ops@example.com", "Ops-pass-1");
const DB_PASS: &str = "Db-pass-1";
const USERS: &str = "/v1/users/password";
const DB: &str = "/v1/bdbs/1/passwords";

struct Env {
    redis: RedisServer,
    api: ApiServer,
    http: reqwest::Client,
}

/// redis-server plus the API server: user `app` (db_member), user `ops` (admin), database 1 on
/// the `default` user.
async fn env(configure: impl FnOnce(&mut ApiServerConfig)) -> Env {
    let redis = RedisServer::start().await.expect("redis-server starts");
    let admin = AdminLogin {
        email: ADMIN.0.into(),
        password: ADMIN.1.into(),
    };
    let mut config = ApiServerConfig::new(&redis, admin);
    let user = |uid, name: &str, (email, password): (&str, &str), role: &str| UserConfig {
        uid,
        name: name.into(),
        email: email.into(),
        role: role.into(),
        passwords: vec![password.into()],
    };
    config.users = vec![
        user(1, "app", APP, "db_member"),
        user(2, "ops", OPS, "admin"),
    ];
    config.databases = vec![DatabaseConfig {
        uid: 1,
        name: "db1".into(),
        acl_user: "default".into(),
        passwords: vec![DB_PASS.into()],
    }];
    configure(&mut config);
    let api = ApiServer::start(config).await.expect("API server starts");
    let http = api.client().expect("client");
    Env { redis, api, http }
}

/// Status and `error_code` (parsed leniently: empty and non-JSON bodies have none).
type Outcome = (StatusCode, Option<String>);

impl Env {
    fn request(
        &self,
        method: Method,
        path: &str,
        (login, password): (&str, &str),
        body: Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api.url()))
            .basic_auth(login, Some(password))
            .header("Accept", "application/json")
            .json(&body)
    }

    async fn call(&self, method: Method, path: &str, login: (&str, &str), body: Value) -> Outcome {
        let response = self
            .request(method, path, login, body)
            .send()
            .await
            .expect("a response");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let code = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error_code"].as_str().map(String::from));
        (status, code)
    }

    async fn admin(&self, method: Method, path: &str, body: Value) -> Outcome {
        self.call(method, path, ADMIN, body).await
    }

    async fn auth(&self, user: &str, password: &str) -> bool {
        self.redis
            .auth(user, password)
            .await
            .expect("redis-server answers")
    }

    async fn auth_default(&self, password: &str) -> bool {
        self.redis
            .auth_default(password)
            .await
            .expect("redis-server answers")
    }
}

fn ok() -> Outcome {
    (StatusCode::OK, None)
}

fn err(status: StatusCode, code: &str) -> Outcome {
    (status, Some(code.to_owned()))
}

fn add(new: &str) -> Value {
    json!({ "username": "app", "old_password": APP.1, "new_password": new })
}

#[tokio::test]
async fn start_creates_the_acl_users() {
    let env = env(|_| {}).await;
    assert!(env.auth("app", APP.1).await);
    assert!(env.auth("ops", OPS.1).await);
    assert!(!env.auth("app", "Other-pass-1").await);
    assert!(env.auth_default(DB_PASS).await);
    assert!(!env.auth_default("Other-pass-1").await);
}

#[tokio::test]
async fn add_keeps_both_and_a_replay_is_new_password_same_as_current() {
    let env = env(|_| {}).await;
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        ok()
    );
    assert!(env.auth("app", APP.1).await);
    assert!(env.auth("app", "New-pass-2").await);
    let replay = env.admin(Method::POST, USERS, add("New-pass-2")).await;
    assert_eq!(
        replay,
        err(StatusCode::BAD_REQUEST, "new_password_same_as_current")
    );
}

#[tokio::test]
async fn delete_retires_the_old_password_but_never_the_last() {
    let env = env(|_| {}).await;
    env.admin(Method::POST, USERS, add("New-pass-2")).await;
    let delete_old = json!({ "username": "app", "old_password": APP.1 });
    assert_eq!(
        env.admin(Method::DELETE, USERS, delete_old.clone()).await,
        ok()
    );
    assert!(!env.auth("app", APP.1).await);
    assert!(env.auth("app", "New-pass-2").await);
    // A replay: the old password is not one of the user's any more.
    assert_eq!(
        env.admin(Method::DELETE, USERS, delete_old).await,
        (StatusCode::UNAUTHORIZED, None)
    );

    let delete_last = json!({ "username": "app", "old_password": "New-pass-2" });
    let outcome = env.admin(Method::DELETE, USERS, delete_last).await;
    assert_eq!(
        outcome,
        err(StatusCode::BAD_REQUEST, "cannot_delete_last_password")
    );
    assert!(env.auth("app", "New-pass-2").await);
}

#[tokio::test]
async fn replace_leaves_only_the_new_password() {
    let env = env(|_| {}).await;
    env.admin(Method::POST, USERS, add("Second-pass-2")).await;
    assert_eq!(
        env.admin(Method::PUT, USERS, add("Third-pass-3")).await,
        ok()
    );
    assert!(env.auth("app", "Third-pass-3").await);
    assert!(!env.auth("app", APP.1).await);
    assert!(!env.auth("app", "Second-pass-2").await);
    let same = json!({ "username": "app", "old_password": "Third-pass-3", "new_password": "Third-pass-3" });
    assert_eq!(
        env.admin(Method::PUT, USERS, same).await,
        err(StatusCode::BAD_REQUEST, "new_password_same_as_current")
    );
}

#[tokio::test]
async fn users_are_listed_without_passwords_and_the_issue_date_moves() {
    let env = env(|_| {}).await;
    let get = |path: &'static str| env.request(Method::GET, path, ADMIN, Value::Null).send();
    let before: Value = get("/v1/users/1").await.unwrap().json().await.unwrap();
    assert_eq!(
        (before["uid"].clone(), before["name"].clone()),
        (json!(1), json!("app"))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.admin(Method::POST, USERS, add("New-pass-2")).await;
    let after: Value = get("/v1/users/1").await.unwrap().json().await.unwrap();
    assert_ne!(before["password_issue_date"], after["password_issue_date"]);
    let list = get("/v1/users").await.unwrap().text().await.unwrap();
    assert!(list.contains("ops@example.com"), "{list}");
    assert!(
        ![APP.1, OPS.1, "New-pass-2"]
            .iter()
            .any(|p| list.contains(p)),
        "{list}"
    );
    assert_eq!(
        get("/v1/users/9").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn wrong_credentials_are_401_with_an_empty_body() {
    let env = env(|_| {}).await;
    let response = env
        .request(
            Method::POST,
            USERS,
            (ADMIN.0, "Wrong-pass-1"),
            add("New-pass-2"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.text().await.unwrap(), "");
    assert!(!env.auth("app", "New-pass-2").await);
    assert_eq!(env.api.failed_logins(ADMIN.0), 1);
    let anonymous = env
        .http
        .get(format!("{}/v1/users", env.api.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_old_password_is_401_changes_nothing_and_counts_against_the_user() {
    let env = env(|_| {}).await;
    let body =
        json!({ "username": "app", "old_password": "Wrong-pass-1", "new_password": "New-pass-2" });
    assert_eq!(
        env.admin(Method::POST, USERS, body).await,
        (StatusCode::UNAUTHORIZED, None)
    );
    assert!(!env.auth("app", "New-pass-2").await);
    assert!(env.auth("app", APP.1).await);
    assert_eq!(env.api.failed_logins("app"), 1);
    assert_eq!(
        env.api.failed_logins(APP.0),
        1,
        "name and email are one account"
    );
    assert_eq!(env.api.failed_logins(ADMIN.0), 0);
}

#[tokio::test]
async fn unknown_users_and_missing_parameters() {
    let env = env(|_| {}).await;
    let unknown =
        json!({ "username": "nobody", "old_password": "x", "new_password": "New-pass-2" });
    assert_eq!(
        env.admin(Method::POST, USERS, unknown).await,
        err(StatusCode::NOT_FOUND, "user_not_found")
    );
    let no_new = json!({ "username": "app", "old_password": APP.1 });
    assert_eq!(
        env.admin(Method::POST, USERS, no_new).await.0,
        StatusCode::BAD_REQUEST
    );
    let no_old = json!({ "username": "app" });
    assert_eq!(
        env.admin(Method::DELETE, USERS, no_old).await.0,
        StatusCode::BAD_REQUEST
    );
    let not_json = env
        .request(Method::POST, USERS, ADMIN, Value::Null)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    // The configured admin is no user: it must name one.
    let no_username = json!({ "new_password": "New-pass-2" });
    assert_eq!(
        env.admin(Method::POST, USERS, no_username).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_non_admin_changes_only_its_own_password() {
    let env = env(|_| {}).await;
    let others = json!({ "username": "ops", "old_password": OPS.1, "new_password": "New-pass-2" });
    assert_eq!(
        env.call(Method::POST, USERS, APP, others).await,
        (StatusCode::FORBIDDEN, None)
    );
    assert!(!env.auth("ops", "New-pass-2").await);
    let db = env
        .call(
            Method::POST,
            DB,
            APP,
            json!({ "password": "New-db-pass-2" }),
        )
        .await;
    assert_eq!(db, (StatusCode::FORBIDDEN, None));
    assert_eq!(
        env.call(Method::POST, USERS, APP, add("New-pass-2")).await,
        ok()
    );
    assert!(env.auth("app", "New-pass-2").await);
    // A user with role admin may change others', like the configured admin.
    let by_ops = json!({ "username": "app", "new_password": "Ops-set-3" });
    assert_eq!(env.call(Method::POST, USERS, OPS, by_ops).await, ok());
    assert!(env.auth("app", "Ops-set-3").await);
}

#[tokio::test]
async fn the_newer_body_shape() {
    let env = env(|_| {}).await;
    // The caller itself (login by name works as well as by email).
    let own = json!({ "new_password": "Own-pass-2" });
    assert_eq!(
        env.call(Method::POST, USERS, ("app", APP.1), own).await,
        ok()
    );
    assert!(env.auth("app", "Own-pass-2").await);
    // An admin naming the user, without old_password.
    let named = json!({ "username": "app", "new_password": "Admin-set-3" });
    assert_eq!(env.admin(Method::PUT, USERS, named).await, ok());
    assert!(env.auth("app", "Admin-set-3").await);
    assert!(!env.auth("app", "Own-pass-2").await && !env.auth("app", APP.1).await);
}

#[tokio::test]
async fn database_passwords_on_the_default_user() {
    let env = env(|_| {}).await;
    let body = |password: &str| json!({ "password": password });
    assert_eq!(env.admin(Method::POST, DB, body("Db-pass-2")).await, ok());
    assert!(env.auth_default(DB_PASS).await && env.auth_default("Db-pass-2").await);
    let replay = env.admin(Method::POST, DB, body("Db-pass-2")).await;
    assert_eq!(
        replay,
        err(StatusCode::BAD_REQUEST, "new_password_same_as_current")
    );

    assert_eq!(env.admin(Method::DELETE, DB, body(DB_PASS)).await, ok());
    assert!(!env.auth_default(DB_PASS).await && env.auth_default("Db-pass-2").await);
    let unknown = env.admin(Method::DELETE, DB, body(DB_PASS)).await;
    assert_eq!(
        unknown,
        err(StatusCode::NOT_ACCEPTABLE, "password_not_found")
    );
    let last = env.admin(Method::DELETE, DB, body("Db-pass-2")).await;
    assert_eq!(
        last,
        err(StatusCode::BAD_REQUEST, "cannot_delete_last_password")
    );
    assert!(env.auth_default("Db-pass-2").await);

    env.admin(Method::POST, DB, body("Db-pass-3")).await;
    assert_eq!(env.admin(Method::PUT, DB, body("Db-pass-4")).await, ok());
    assert!(env.auth_default("Db-pass-4").await);
    assert!(!env.auth_default("Db-pass-2").await && !env.auth_default("Db-pass-3").await);

    let missing = env.admin(Method::POST, DB, json!({})).await;
    assert_eq!(missing.0, StatusCode::BAD_REQUEST);
    let nowhere = env
        .admin(Method::POST, "/v1/bdbs/7/passwords", body("Db-pass-5"))
        .await;
    assert_eq!(nowhere, err(StatusCode::NOT_FOUND, "bdb_not_found"));
    // The admin connections of the servers still work with a password on `default`.
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        ok()
    );
}

#[tokio::test]
async fn complexity_when_enabled() {
    let env = env(|config| config.password_complexity = true).await;
    for weak in [
        "Sh0rt!",
        "no-upper-1",
        "NO-LOWER-1",
        "No-digits!",
        "NoSpecial12",
        "Abc-1111-x",
        "My-app-pass-1",
        "My-ppa-pass-1",
        "x-App@Example.com-1",
    ] {
        let outcome = env.admin(Method::POST, USERS, add(weak)).await;
        assert_eq!(
            outcome,
            err(StatusCode::BAD_REQUEST, "password_not_complex"),
            "{weak}"
        );
        assert!(!env.auth("app", weak).await, "{weak}");
    }
    assert_eq!(
        env.admin(Method::POST, USERS, add("Str0ng-Pa55-111")).await,
        ok()
    );
    assert!(env.auth("app", "Str0ng-Pa55-111").await);
}

#[tokio::test]
async fn without_complexity_weak_passwords_pass() {
    let env = env(|_| {}).await;
    assert_eq!(env.admin(Method::POST, USERS, add("weak")).await, ok());
    assert!(env.auth("app", "weak").await);
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_until_the_duration_passed() {
    let env = env(|config| config.lockout.duration_ms = 1500).await;
    let list = |login| {
        env.request(Method::GET, "/v1/users", login, Value::Null)
            .send()
    };
    for attempt in 1..=5 {
        assert_eq!(
            list(("app", "Wrong-pass-1")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            env.api.is_locked("app"),
            attempt == 5,
            "after {attempt} failures"
        );
    }
    let locked_out = env.call(Method::GET, "/v1/users", APP, Value::Null).await;
    assert_eq!(locked_out, err(StatusCode::UNAUTHORIZED, "user_locked"));
    assert!(env.api.is_locked(APP.0));
    // Locking the API login does not touch the database: the password still AUTHs.
    assert!(env.auth("app", APP.1).await);
    let lockouts: Value = env
        .http
        .get(format!("{}/test/lockouts", env.api.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        lockouts,
        json!([{ "login": "app", "failed_logins": 5, "locked": true }])
    );
    assert_eq!(
        env.call(Method::GET, "/v1/users", ADMIN, Value::Null).await,
        ok()
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(!env.api.is_locked("app"));
    assert_eq!(
        env.call(Method::GET, "/v1/users", APP, Value::Null).await,
        ok()
    );
    assert_eq!(env.api.failed_logins("app"), 0);
}

#[tokio::test]
async fn wrong_old_passwords_lock_the_target_user() {
    let env = env(|_| {}).await;
    let wrong =
        json!({ "username": "app", "old_password": "Wrong-pass-1", "new_password": "New-pass-2" });
    for _ in 0..5 {
        env.admin(Method::POST, USERS, wrong.clone()).await;
    }
    assert!(env.api.is_locked("app"));
    assert!(!env.api.is_locked(ADMIN.0));
}

#[tokio::test]
async fn status_faults_answer_a_burst_of_errors_and_apply_nothing() {
    let env = env(|_| {}).await;
    env.api.inject(FaultRule::status(503, 2).on("POST", USERS));
    for _ in 0..2 {
        let outcome = env.admin(Method::POST, USERS, add("New-pass-2")).await;
        assert_eq!(
            outcome,
            err(StatusCode::SERVICE_UNAVAILABLE, "injected_fault")
        );
        assert!(!env.auth("app", "New-pass-2").await);
    }
    assert_eq!(
        env.admin(Method::GET, "/v1/users", Value::Null).await,
        ok(),
        "other requests pass"
    );
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        ok()
    );
    assert!(env.auth("app", "New-pass-2").await);
    let seen: Vec<_> = env
        .api
        .requests()
        .into_iter()
        .map(|r| (r.status, r.fault))
        .collect();
    let injected = Some(FaultKind::Status);
    assert_eq!(
        seen,
        [
            (Some(503), injected),
            (Some(503), injected),
            (Some(200), None),
            (Some(200), None)
        ]
    );
}

#[tokio::test]
async fn delay_faults_delay_and_still_apply_after_the_client_gave_up() {
    let env = env(|_| {}).await;
    env.api.inject(FaultRule::delay(600, 1));
    let started = Instant::now();
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        ok()
    );
    assert!(started.elapsed() >= Duration::from_millis(600));

    env.api.inject(FaultRule::delay(800, 1));
    let request = env
        .request(Method::POST, USERS, ADMIN, add("New-pass-3"))
        .timeout(Duration::from_millis(200));
    let timed_out = request.send().await.expect_err("the client times out");
    assert!(timed_out.is_timeout(), "{timed_out}");
    assert!(!env.auth("app", "New-pass-3").await, "not yet applied");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        env.auth("app", "New-pass-3").await,
        "applied after the delay"
    );
}

#[tokio::test]
async fn drop_faults_close_the_connection_and_apply_nothing() {
    let env = env(|_| {}).await;
    env.api.inject(FaultRule::drop(1).on("POST", USERS));
    let dropped = env
        .request(Method::POST, USERS, ADMIN, add("New-pass-2"))
        .send()
        .await;
    let error = dropped.expect_err("no response");
    assert!(error.status().is_none() && !error.is_timeout(), "{error}");
    assert!(!env.auth("app", "New-pass-2").await);
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        ok(),
        "a retry is not a replay"
    );
    assert!(env.auth("app", "New-pass-2").await);
    let first = &env.api.requests()[0];
    assert_eq!(
        (first.status, first.dropped, first.fault),
        (None, true, Some(FaultKind::Drop))
    );
}

#[tokio::test]
async fn drop_after_apply_faults_lose_the_response_of_an_applied_change() {
    let env = env(|_| {}).await;
    env.api
        .inject(FaultRule::drop_after_apply(1).on("POST", USERS));
    let lost = env
        .request(Method::POST, USERS, ADMIN, add("New-pass-2"))
        .send()
        .await;
    assert!(lost.is_err(), "the client saw no response");
    assert!(
        env.auth("app", "New-pass-2").await,
        "the change was applied"
    );
    let replay = env.admin(Method::POST, USERS, add("New-pass-2")).await;
    assert_eq!(
        replay,
        err(StatusCode::BAD_REQUEST, "new_password_same_as_current")
    );

    assert_eq!(
        env.admin(Method::POST, DB, json!({ "password": "Db-pass-2" }))
            .await,
        ok()
    );
    env.api
        .inject(FaultRule::drop_after_apply(1).on("DELETE", DB));
    let lost = env
        .request(Method::DELETE, DB, ADMIN, json!({ "password": DB_PASS }))
        .send()
        .await;
    assert!(lost.is_err());
    assert!(!env.auth_default(DB_PASS).await, "the delete was applied");
    assert!(env.auth_default("Db-pass-2").await);
    let replay = env
        .admin(Method::DELETE, DB, json!({ "password": DB_PASS }))
        .await;
    assert_eq!(
        replay,
        err(StatusCode::NOT_ACCEPTABLE, "password_not_found")
    );
}

#[tokio::test]
async fn faults_are_controlled_over_http_and_requests_hold_no_passwords() {
    let env = env(|_| {}).await;
    let control = |method, path: &str| env.http.request(method, format!("{}{path}", env.api.url()));
    let rule = json!({ "kind": "status", "count": 5, "status": 500, "path_prefix": "/v1/bdbs" });
    assert!(
        control(Method::POST, "/test/faults")
            .json(&rule)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(
        env.admin(Method::POST, DB, json!({ "password": "Db-pass-2" }))
            .await
            .0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    control(Method::DELETE, "/test/faults")
        .send()
        .await
        .unwrap();
    assert_eq!(
        env.admin(Method::POST, DB, json!({ "password": "Db-pass-2" }))
            .await,
        ok()
    );

    env.admin(Method::POST, USERS, add("New-pass-2")).await;
    env.call(
        Method::POST,
        USERS,
        (ADMIN.0, "Wrong-admin-1"),
        add("New-pass-3"),
    )
    .await;
    let text = control(Method::GET, "/test/requests")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in [
        ADMIN.1,
        APP.1,
        DB_PASS,
        "Db-pass-2",
        "New-pass-2",
        "New-pass-3",
        "Wrong-admin-1",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let records: Vec<RequestRecord> = serde_json::from_str(&text).unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[3].login.as_deref(), Some(ADMIN.0));
    assert_eq!(
        (
            records[3].method.as_str(),
            records[3].path.as_str(),
            records[3].status
        ),
        ("POST", USERS, Some(401))
    );
    control(Method::DELETE, "/test/requests")
        .send()
        .await
        .unwrap();
    assert!(env.api.requests().is_empty());
}

#[tokio::test]
async fn a_failed_apply_is_500_and_leaves_the_lists_unchanged() {
    let redis = RedisServer::start().await.unwrap();
    redis
        .acl(&[
            "SETUSER",
            "api-admin",
            "on",
            ">Api-admin-1",
            "~*",
            "&*",
            "+@all",
        ])
        .await
        .unwrap();
    let env = env(|config| {
        config.redis_admin.user = "api-admin".into();
        config.redis_admin.password = "Api-admin-1".into();
        config.redis_addr = redis.addr();
    })
    .await;
    // The API server's redis-server is now `redis`; the helper's own is unused.
    redis.acl(&["SETUSER", "api-admin", "-@all"]).await.unwrap();
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        err(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
    );
    assert!(!redis.auth("app", "New-pass-2").await.unwrap());
    redis.acl(&["SETUSER", "api-admin", "+@all"]).await.unwrap();
    assert_eq!(
        env.admin(Method::POST, USERS, add("New-pass-2")).await,
        ok(),
        "not in the list after the failure"
    );
    assert!(redis.auth("app", "New-pass-2").await.unwrap());
}

#[tokio::test]
async fn the_binary_serves_a_config_file() {
    let redis = RedisServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ApiServerConfig::new(
        &redis,
        AdminLogin {
            email: ADMIN.0.into(),
            password: ADMIN.1.into(),
        },
    );
    config.users = vec![UserConfig {
        uid: 1,
        name: "app".into(),
        email: APP.0.into(),
        role: "db_member".into(),
        passwords: vec![APP.1.into()],
    }];
    let (config_path, ca_path) = (dir.path().join("config.json"), dir.path().join("ca.pem"));
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_redis-software-api-server"))
        .arg("--config")
        .arg(&config_path)
        .arg("--ca-out")
        .arg(&ca_path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line)
        .await
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the listening line")
        .to_owned();

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_path).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let response = http
        .post(format!("{url}{USERS}"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&add("New-pass-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(redis.auth("app", "New-pass-2").await.unwrap());

    // SIGTERM ends it cleanly.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
