//! The ONTAP API test server: every password change is proven by logging in.
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rotator_test_support::{
    certs,
    ontap_server::{
        AccountConfig, FaultKind, FaultRule, OntapServer, OntapServerConfig, OntapTls,
        PasswordPolicy, Svm,
    },
};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin", "Admin-pass-1");
const APP: (&str, &str) = ("app-a", "App-pass-1");
const VSADMIN: (&str, &str) = ("vsadmin", "Vs-pass-1");
const PASSWORD: &str = "/api/security/authentication/password";

fn svm1() -> Svm {
    Svm {
        name: "svm1".into(),
        uuid: "02c9e252-41be-11e9-81d5-00a0986138f7".into(),
    }
}

/// Cluster admin `admin`, cluster account `app-a` (role readonly), and `vsadmin` of svm1.
fn config() -> OntapServerConfig {
    let mut config = OntapServerConfig::new(vec![
        AccountConfig::cluster(ADMIN.0, "admin", ADMIN.1),
        AccountConfig::cluster(APP.0, "readonly", APP.1),
        AccountConfig::svm(&svm1(), VSADMIN.0, "vsadmin", VSADMIN.1),
    ]);
    config.tls = OntapTls::PlainHttp;
    config
}

struct Env {
    api: OntapServer,
    http: reqwest::Client,
}

async fn env(configure: impl FnOnce(&mut OntapServerConfig)) -> Env {
    let mut config = config();
    configure(&mut config);
    let api = OntapServer::start(config).await.expect("server starts");
    Env {
        api,
        http: reqwest::Client::new(),
    }
}

/// Status, and the error's code, target and arguments when the body is an ONTAP error.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: StatusCode,
    code: Option<String>,
    target: Option<String>,
    arguments: Vec<String>,
}

fn ok(status: StatusCode) -> Outcome {
    Outcome {
        status,
        code: None,
        target: None,
        arguments: Vec::new(),
    }
}

fn err(status: u16, code: &str, target: Option<&str>, arguments: &[&str]) -> Outcome {
    Outcome {
        status: StatusCode::from_u16(status).unwrap(),
        code: Some(code.into()),
        target: target.map(Into::into),
        arguments: arguments.iter().map(|a| a.to_string()).collect(),
    }
}

fn outcome(status: StatusCode, body: &Value) -> Outcome {
    let error = &body["error"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Outcome {
        status,
        code: text(&error["code"]),
        target: text(&error["target"]),
        arguments: error["arguments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| text(&a["message"]))
            .collect(),
    }
}

impl Env {
    async fn call(
        &self,
        method: Method,
        path: &str,
        (login, password): (&str, &str),
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api.base_url()))
            .basic_auth(login, Some(password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("a response");
        let status = response.status();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    async fn change(&self, login: (&str, &str), body: Value) -> Outcome {
        let (status, body) = self.call(Method::POST, PASSWORD, login, Some(body)).await;
        if status.is_success() {
            assert_eq!(body, json!({}));
        } else {
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        outcome(status, &body)
    }

    async fn admin_change(&self, name: &str, password: &str) -> Outcome {
        self.change(ADMIN, json!({"name": name, "password": password}))
            .await
    }
}

#[tokio::test]
async fn a_cluster_admin_changes_any_account_and_only_the_new_password_logs_in() {
    let env = env(|_| {}).await;
    assert!(env.api.login_works(APP.0, APP.1));

    assert_eq!(
        env.admin_change(APP.0, "App-pass-2").await,
        ok(StatusCode::CREATED)
    );
    assert!(env.api.login_works(APP.0, "App-pass-2"));
    assert!(!env.api.login_works(APP.0, APP.1));
    let (status, _) = env.call(Method::GET, "/api/cluster", APP, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = env
        .call(Method::GET, "/api/cluster", (APP.0, "App-pass-2"), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // An SVM account, named by its owner's name or uuid.
    for (n, owner) in [json!({"name": "svm1"}), json!({"uuid": svm1().uuid})]
        .into_iter()
        .enumerate()
    {
        let new = format!("Vs-pass-{}", n + 2);
        let body = json!({"name": VSADMIN.0, "owner": owner, "password": new, "password_hash_algorithm": "sha512"});
        assert_eq!(env.change(ADMIN, body).await, ok(StatusCode::CREATED));
        assert!(env.api.login_works(VSADMIN.0, &new));
    }
}

#[tokio::test]
async fn the_location_header_names_the_account() {
    let env = env(|_| {}).await;
    let response = env
        .http
        .post(format!("{}{PASSWORD}", env.api.base_url()))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&json!({"name": VSADMIN.0, "owner": {"name": "svm1"}, "password": "Vs-pass-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        format!("/api/security/accounts/{}/vsadmin", svm1().uuid).as_str()
    );
}

#[tokio::test]
async fn any_account_changes_its_own_password_and_no_other() {
    let env = env(|_| {}).await;
    let own = json!({"name": VSADMIN.0, "password": "Vs-pass-2"});
    assert_eq!(env.change(VSADMIN, own).await, ok(StatusCode::CREATED));
    assert!(env.api.login_works(VSADMIN.0, "Vs-pass-2"));
    // The old password no longer logs in, so self-service needs the current one.
    let again = json!({"name": VSADMIN.0, "password": "Vs-pass-3"});
    assert_eq!(env.change(VSADMIN, again).await, err(401, "6", None, &[]));
    let own = json!({"name": APP.0, "owner": {"name": "cluster1"}, "password": "App-pass-2"});
    assert_eq!(env.change(APP, own).await, ok(StatusCode::CREATED));

    let vsadmin = (VSADMIN.0, "Vs-pass-2");
    for body in [
        json!({"name": APP.0, "password": "Other-pass-1"}),
        json!({"name": ADMIN.0, "password": "Other-pass-1"}),
        json!({"name": "nobody", "password": "Other-pass-1"}),
    ] {
        assert_eq!(env.change(vsadmin, body).await, err(403, "6", None, &[]));
    }
    assert!(env.api.login_works(APP.0, "App-pass-2") && env.api.login_works(ADMIN.0, ADMIN.1));
}

#[tokio::test]
async fn unknown_accounts_and_owners_are_entry_doesnt_exist() {
    let env = env(|_| {}).await;
    assert_eq!(
        env.admin_change("nobody", "Some-pass-1").await,
        err(404, "4", Some("name"), &[])
    );
    // Without an owner only cluster-scoped accounts are found.
    assert_eq!(
        env.admin_change(VSADMIN.0, "Some-pass-1").await,
        err(404, "4", Some("name"), &[])
    );
    let body = json!({"name": VSADMIN.0, "owner": {"name": "svm9"}, "password": "Some-pass-1"});
    assert_eq!(
        env.change(ADMIN, body).await,
        err(404, "4", Some("owner"), &[])
    );
    let mismatch = json!({"name": "svm1", "uuid": "00000000-0000-0000-0000-000000000000"});
    let body = json!({"name": VSADMIN.0, "owner": mismatch, "password": "Some-pass-1"});
    assert_eq!(
        env.change(ADMIN, body).await,
        err(404, "4", Some("owner"), &[])
    );

    let (status, body) = env
        .call(Method::POST, PASSWORD, ADMIN, Some(json!({"name": APP.0})))
        .await;
    assert_eq!(outcome(status, &body), err(400, "262179", None, &[]));
    let body = json!({"name": APP.0, "password": "App-pass-2", "password_hash_algorithm": "md5"});
    assert_eq!(
        env.change(ADMIN, body).await,
        err(400, "262179", Some("password_hash_algorithm"), &[])
    );
    assert!(env.api.login_works(APP.0, APP.1));
}

#[tokio::test]
async fn the_policy_refuses_with_ontaps_codes() {
    let env = env(|_| {}).await;
    let refused = |code, arguments: &[&str]| err(400, code, Some("password"), arguments);
    let cases = [
        ("Short-1", refused("7077919", &["8"])),
        ("my-app-a-pass-1", refused("7077918", &[])),
        ("MY-APP-A-PASS-1", refused("7077918", &[])),
        ("only-letters", refused("7077920", &[])),
        ("1234567890", refused("7077920", &[])),
        (APP.1, refused("7077925", &[])),
    ];
    for (password, expected) in cases {
        assert_eq!(
            env.admin_change(APP.0, password).await,
            expected,
            "{password}"
        );
    }
    let long = format!("Aa1{}", "x".repeat(126));
    assert_eq!(
        env.admin_change(APP.0, &long).await,
        refused("7077940", &["128"])
    );
    assert_eq!(
        env.admin_change(APP.0, &long[..128]).await,
        ok(StatusCode::CREATED)
    );

    env.api.set_policy(PasswordPolicy {
        min_special: 2,
        ..PasswordPolicy::default()
    });
    assert_eq!(
        env.admin_change(APP.0, "One-special1").await,
        refused("7077921", &["2"])
    );
    assert_eq!(
        env.admin_change(APP.0, "Two-special-1").await,
        ok(StatusCode::CREATED)
    );

    env.api.set_policy(PasswordPolicy {
        min_special: 127,
        ..PasswordPolicy::default()
    });
    assert_eq!(
        env.admin_change(APP.0, "Any-pass-1").await,
        refused("7077941", &["129"])
    );
    assert!(env.api.login_works(APP.0, "Two-special-1"));

    env.api.set_policy(PasswordPolicy {
        min_length: 4,
        alphanumeric: false,
        ..PasswordPolicy::default()
    });
    assert_eq!(
        env.admin_change(APP.0, "abcd").await,
        ok(StatusCode::CREATED)
    );
}

#[tokio::test]
async fn the_last_n_passwords_may_not_come_back() {
    let env = env(|c| c.policy.history = 3).await;
    for password in ["Pass-2", "Pass-3"].map(|p| format!("{p}xx")) {
        assert_eq!(
            env.admin_change(APP.0, &password).await,
            ok(StatusCode::CREATED)
        );
    }
    // The last 3 are APP.1, Pass-2xx and Pass-3xx (the current one).
    for recent in [APP.1, "Pass-2xx"] {
        assert_eq!(
            env.admin_change(APP.0, recent).await,
            err(400, "7077924", Some("password"), &["3"]),
        );
    }
    assert_eq!(
        env.admin_change(APP.0, "Pass-4xx").await,
        ok(StatusCode::CREATED)
    );
    assert_eq!(
        env.admin_change(APP.0, APP.1).await,
        ok(StatusCode::CREATED)
    );
}

#[tokio::test]
async fn wrong_logins_are_401_and_lock_the_account_for_a_while() {
    let env = env(|c| {
        c.lockout.max_failures = 3;
        c.lockout.duration_ms = 500;
    })
    .await;
    let (status, body) = env
        .call(Method::GET, "/api/cluster", ("nobody", "x"), None)
        .await;
    assert_eq!(outcome(status, &body), err(401, "6", None, &[]));

    let wrong = (ADMIN.0, "Wrong-pass-1");
    for failures in 1..=3 {
        let (status, _) = env.call(Method::GET, "/api/cluster", wrong, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(env.api.failed_logins(ADMIN.0), failures);
    }
    assert!(env.api.is_locked(ADMIN.0));
    assert_eq!(
        env.admin_change(APP.0, "App-pass-2").await,
        err(401, "6", None, &[])
    );
    // login_works proves the password without logging in: no lockout, no count.
    assert!(env.api.login_works(ADMIN.0, ADMIN.1));
    assert!(!env.api.login_works(APP.0, "App-pass-2"));
    // Other accounts are not locked.
    let (status, _) = env.call(Method::GET, "/api/cluster", APP, None).await;
    assert_eq!(status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!env.api.is_locked(ADMIN.0));
    assert_eq!(
        env.admin_change(APP.0, "App-pass-2").await,
        ok(StatusCode::CREATED)
    );
    assert_eq!(env.api.failed_logins(ADMIN.0), 0);
}

#[tokio::test]
async fn a_successful_login_resets_the_count() {
    let env = env(|c| c.lockout.max_failures = 2).await;
    let wrong = (ADMIN.0, "Wrong-pass-1");
    env.call(Method::GET, "/api/cluster", wrong, None).await;
    env.call(Method::GET, "/api/cluster", ADMIN, None).await;
    env.call(Method::GET, "/api/cluster", wrong, None).await;
    assert!(!env.api.is_locked(ADMIN.0));
    assert_eq!(env.api.failed_logins(ADMIN.0), 1);
}

#[tokio::test]
async fn the_cluster_and_accounts_can_be_read() {
    let env = env(|c| {
        c.cluster_name = "prod-a".into();
        c.lockout.max_failures = 1;
    })
    .await;
    for login in [ADMIN, APP, VSADMIN] {
        let (status, body) = env.call(Method::GET, "/api/cluster", login, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (&body["name"], &body["uuid"], &body["version"]["generation"]),
            (
                &json!("prod-a"),
                &json!("6b3c0f2e-8d7a-11ee-9c4e-005056bb1a2f"),
                &json!(9)
            )
        );
    }

    env.call(Method::GET, "/api/cluster", (VSADMIN.0, "wrong"), None)
        .await;
    let path = format!("/api/security/accounts/{}/vsadmin", svm1().uuid);
    let (status, body) = env.call(Method::GET, &path, ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"name": "vsadmin", "owner": {"name": "svm1", "uuid": svm1().uuid},
               "role": {"name": "vsadmin"}, "scope": "svm", "locked": true})
    );
    let path = "/api/security/accounts/6b3c0f2e-8d7a-11ee-9c4e-005056bb1a2f/app-a";
    let (status, body) = env.call(Method::GET, path, ADMIN, None).await;
    assert_eq!(
        (status, &body["scope"], &body["locked"]),
        (StatusCode::OK, &json!("cluster"), &json!(false))
    );
    let (status, body) = env.call(Method::GET, path, APP, None).await;
    assert_eq!(outcome(status, &body), err(403, "6", None, &[]));
    let path = "/api/security/accounts/6b3c0f2e-8d7a-11ee-9c4e-005056bb1a2f/nobody";
    let (status, body) = env.call(Method::GET, path, ADMIN, None).await;
    assert_eq!(outcome(status, &body), err(404, "4", Some("name"), &[]));
}

#[tokio::test]
async fn status_faults_answer_the_next_requests_and_apply_nothing() {
    let env = env(|_| {}).await;
    env.api
        .inject(FaultRule::status(500, 2).on("POST", PASSWORD));
    for _ in 0..2 {
        let refused = env.admin_change(APP.0, "App-pass-2").await;
        assert_eq!(refused, err(500, "8", None, &[]));
    }
    assert!(env.api.login_works(APP.0, APP.1));
    // Only POSTs match, and the rule is used up.
    let (status, _) = env.call(Method::GET, "/api/cluster", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        env.admin_change(APP.0, "App-pass-2").await,
        ok(StatusCode::CREATED)
    );
    let faults: Vec<_> = env.api.requests().iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [Some(FaultKind::Status), Some(FaultKind::Status), None, None]
    );
}

#[tokio::test]
async fn drop_faults_close_the_connection_before_or_after_applying() {
    let env = env(|_| {}).await;
    let send = |password: &str| {
        env.http
            .post(format!("{}{PASSWORD}", env.api.base_url()))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .json(&json!({"name": APP.0, "password": password}))
            .send()
    };
    env.api.inject(FaultRule::drop(1));
    assert!(send("App-pass-2").await.is_err());
    assert!(env.api.login_works(APP.0, APP.1));

    env.api.inject(FaultRule::drop_after_apply(1));
    assert!(send("App-pass-2").await.is_err());
    assert!(env.api.login_works(APP.0, "App-pass-2"));

    let requests = env.api.requests();
    assert!(
        requests.iter().all(|r| r.dropped && r.status.is_none()),
        "{requests:?}"
    );
}

#[tokio::test]
async fn delay_faults_still_apply_after_the_client_gave_up() {
    let env = env(|_| {}).await;
    env.api.inject(FaultRule::delay(400, 1));
    let started = std::time::Instant::now();
    let gave_up = env
        .http
        .post(format!("{}{PASSWORD}", env.api.base_url()))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&json!({"name": APP.0, "password": "App-pass-2"}))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(env.api.login_works(APP.0, "App-pass-2"));
}

#[tokio::test]
async fn control_calls_over_http_and_requests_hold_no_passwords() {
    let env = env(|_| {}).await;
    let control = |method: Method, path: &str| {
        env.http
            .request(method, format!("{}/test/{path}", env.api.base_url()))
    };
    let rule = json!({"kind": "status", "status": 503, "count": 1});
    let response = control(Method::POST, "faults")
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        env.admin_change(APP.0, "App-pass-2").await,
        err(503, "8", None, &[])
    );
    let policy = json!({"min_length": 12});
    let response = control(Method::PUT, "policy")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        env.admin_change(APP.0, "App-pass-2").await,
        err(400, "7077919", Some("password"), &["12"])
    );
    let policy: Value = control(Method::GET, "policy")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        policy,
        json!({"min_length": 12, "alphanumeric": true, "min_special": 0, "history": 6})
    );
    assert_eq!(
        env.admin_change(APP.0, "App-pass-2-long").await,
        ok(StatusCode::CREATED)
    );

    let requests: Value = control(Method::GET, "requests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.as_array().map(Vec::len), Some(3), "{requests}");
    assert_eq!(requests[2]["status"], 201);
    assert_eq!(requests[2]["login"], "admin");
    let text = requests.to_string();
    for password in [ADMIN.1, APP.1, "App-pass-2"] {
        assert!(!text.contains(password), "{text}");
    }
    control(Method::DELETE, "requests").send().await.unwrap();
    assert!(env.api.requests().is_empty());
}

#[tokio::test]
async fn https_with_a_given_certificate() {
    let (ca_pem, server) =
        certs::ca_signed("localhost", &["DNS:localhost", "IP:127.0.0.1"]).unwrap();
    let api = OntapServer::start(OntapServerConfig {
        tls: OntapTls::Pem {
            cert_pem: server.cert_pem.clone(),
            key_pem: server.key_pem,
        },
        ..config()
    })
    .await
    .unwrap();
    assert!(api.base_url().starts_with("https://127.0.0.1:"));
    assert_eq!(api.ca_pem(), Some(server.cert_pem));
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = http
        .get(format!("{}/api/cluster", api.base_url()))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_default_certificate_is_self_signed_like_a_clusters() {
    let api = OntapServer::start(OntapServerConfig {
        tls: OntapTls::SelfSigned,
        ..config()
    })
    .await
    .unwrap();
    assert!(api.base_url().starts_with("https://"));
    let text = certs::text(&api.ca_pem().unwrap()).unwrap();
    for part in [
        "Subject: CN = cluster1",
        "Issuer: CN = cluster1",
        "CA:TRUE",
        "DNS:cluster1, DNS:localhost, IP Address:127.0.0.1",
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
}

#[test]
fn configurations_are_json_with_defaults() {
    let config: OntapServerConfig = serde_json::from_value(json!({
        "accounts": [
            {"name": "admin", "role": "admin", "password": "Admin-pass-1"},
            {"name": "vsadmin", "owner": {"name": "svm1", "uuid": "u1"}, "role": "vsadmin", "password": "Vs-pass-1"}
        ],
        "policy": {"min_special": 1},
        "tls": "plain_http"
    }))
    .unwrap();
    assert_eq!(config.cluster_name, "cluster1");
    assert_eq!(
        config.policy,
        PasswordPolicy {
            min_special: 1,
            ..PasswordPolicy::default()
        }
    );
    assert_eq!(config.lockout.max_failures, 5);
    assert!(matches!(config.tls, OntapTls::PlainHttp));
}

#[tokio::test]
async fn clashing_accounts_are_refused_at_start() {
    let mut twice = config();
    twice
        .accounts
        .push(AccountConfig::cluster(APP.0, "admin", "x"));
    let mut clash = config();
    let other = Svm {
        uuid: "another-uuid".into(),
        ..svm1()
    };
    clash
        .accounts
        .push(AccountConfig::svm(&other, "x", "vsadmin", "x"));
    for config in [twice, clash] {
        assert!(OntapServer::start(config).await.is_err());
    }
}
