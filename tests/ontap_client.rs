//! The ONTAP client against the ONTAP API test server, proving every password change by
//! logging in.

use std::time::Duration;

use password_rotator::rotation::CallFailure;
use password_rotator::targets::ontap::client::{
    AccountRef, ClusterInfo, ClusterVersion, Login, OntapClient, OntapConfig, OntapError,
    Operation, PolicyRefusal, classify,
};
use rotator_test_support::certs;
use rotator_test_support::ontap_server::{
    AccountConfig, FaultRule, OntapServer, OntapServerConfig, OntapTls, PasswordPolicy, Svm,
};
use secrecy::SecretString;

const ADMIN: (&str, &str) = ("admin", "Admin-Pa55word");
const APP: (&str, &str) = ("orders-a", "Old-Pa55word-1");
const VSADMIN: (&str, &str) = ("vsadmin", "Vs-Pa55word-1");
const CLUSTER_UUID: &str = "6b3c0f2e-8d7a-11ee-9c4e-005056bb1a2f";

/// Every password the tests use, none of which may show in an error.
const PASSWORDS: &[&str] = &[
    ADMIN.1,
    APP.1,
    VSADMIN.1,
    "New-Pa55word-2",
    "Wrong-Pa55word",
];

fn svm1() -> Svm {
    Svm {
        name: "svm1".into(),
        uuid: "02c9e252-41be-11e9-81d5-00a0986138f7".into(),
    }
}

/// A cluster admin, a cluster account `orders-a` and `vsadmin` of svm1, behind the default
/// self-signed (CA:TRUE) certificate, which the client pins.
async fn server(configure: impl FnOnce(&mut OntapServerConfig)) -> OntapServer {
    let mut config = OntapServerConfig::new(vec![
        AccountConfig::cluster(ADMIN.0, "admin", ADMIN.1),
        AccountConfig::cluster(APP.0, "readonly", APP.1),
        AccountConfig::svm(&svm1(), VSADMIN.0, "vsadmin", VSADMIN.1),
    ]);
    configure(&mut config);
    OntapServer::start(config).await.expect("server starts")
}

fn config(server: &OntapServer) -> OntapConfig {
    let mut config = OntapConfig::new(server.base_url().parse().unwrap());
    config.ca_pem = server.ca_pem().map(String::into_bytes);
    config
}

fn client(server: &OntapServer) -> OntapClient {
    OntapClient::new(config(server)).unwrap()
}

fn secret(s: &str) -> SecretString {
    s.into()
}

fn login((name, password): (&str, &str)) -> Login {
    Login::new(name, secret(password))
}

fn app() -> AccountRef {
    AccountRef::cluster(APP.0)
}

/// Every error is checked: no password may show in its Display or Debug.
fn clean(error: OntapError, passwords: &[&str]) -> OntapError {
    for text in [error.to_string(), format!("{error:?}")] {
        for password in passwords.iter().chain(PASSWORDS) {
            assert!(!text.contains(password), "password in {text}");
        }
    }
    error
}

#[tokio::test]
async fn an_admin_change_makes_the_new_password_the_only_one() {
    let server = server(|_| {}).await;
    let client = client(&server);
    let new = "New-Pa55word-2";
    client
        .change_password(&login(ADMIN), &app(), &secret(new))
        .await
        .unwrap();
    assert!(server.login_works(APP.0, new));
    assert!(!server.login_works(APP.0, APP.1));

    let svm = AccountRef::svm("svm1", VSADMIN.0);
    client
        .change_password(&login(ADMIN), &svm, &secret(new))
        .await
        .unwrap();
    assert!(server.login_works(VSADMIN.0, new) && !server.login_works(VSADMIN.0, VSADMIN.1));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.status == Some(201)
        && r.path == "/api/security/authentication/password"
        && r.login.as_deref() == Some(ADMIN.0)));
}

#[tokio::test]
async fn an_account_changes_its_own_password_with_its_current_one() {
    let server = server(|_| {}).await;
    let client = client(&server);
    let new = "New-Pa55word-2";
    client
        .change_password(&login(APP), &app(), &secret(new))
        .await
        .unwrap();
    assert!(server.login_works(APP.0, new) && !server.login_works(APP.0, APP.1));
    // An SVM account names itself without its owner.
    let vsadmin = AccountRef::cluster(VSADMIN.0);
    client
        .change_password(&login(VSADMIN), &vsadmin, &secret(new))
        .await
        .unwrap();
    assert!(server.login_works(VSADMIN.0, new));

    // The current password is the login: once changed, the old one is refused.
    let again = "Newer-Pa55word-3";
    let err = client
        .change_password(&login(APP), &app(), &secret(again))
        .await
        .unwrap_err();
    let err = clean(err, &[again]);
    assert_eq!(err.status(), Some(401));
    assert!(matches!(
        classify(&err),
        CallFailure::AdminUnauthorized { .. }
    ));
    assert!(server.login_works(APP.0, new));
}

#[tokio::test]
async fn others_accounts_are_forbidden_and_unknown_ones_not_found() {
    let server = server(|_| {}).await;
    let client = client(&server);
    let new = secret("New-Pa55word-2");
    let err = client
        .change_password(&login(APP), &AccountRef::svm("svm1", VSADMIN.0), &new)
        .await
        .unwrap_err();
    let err = clean(err, &[]);
    assert!(
        matches!(classify(&err), CallFailure::Forbidden { .. }),
        "{err:?}"
    );

    for account in [
        AccountRef::cluster("nobody"),
        AccountRef::svm("svm9", VSADMIN.0),
    ] {
        let err = client
            .change_password(&login(ADMIN), &account, &new)
            .await
            .unwrap_err();
        let err = clean(err, &[]);
        assert_eq!(err.code(), Some("4"));
        assert!(
            matches!(classify(&err), CallFailure::NotFound { .. }),
            "{err:?}"
        );
    }
    assert!(server.login_works(VSADMIN.0, VSADMIN.1));
}

#[tokio::test]
async fn every_policy_refusal_is_classified_with_its_reason() {
    let server = server(|_| {}).await;
    let client = client(&server);
    let policy = "the cluster's password policy";
    let special = PasswordPolicy {
        min_special: 3,
        ..PasswordPolicy::default()
    };
    let broken = PasswordPolicy {
        min_special: 200,
        ..PasswordPolicy::default()
    };
    let long = format!("Aa1-{}", "x".repeat(125));
    let cases = [
        (
            None,
            "Sh0rt-",
            PolicyRefusal::TooShort,
            format!("{policy} requires at least 8 characters"),
        ),
        (
            None,
            "my-orders-a-1",
            PolicyRefusal::ContainsUsername,
            format!("{policy} forbids a password that contains the account name"),
        ),
        (
            None,
            "no-digits-here",
            PolicyRefusal::LettersAndDigits,
            format!("{policy} requires both letters and digits"),
        ),
        (
            Some(special),
            "One-special-1",
            PolicyRefusal::SpecialCharacters,
            format!("{policy} requires at least 3 special characters"),
        ),
        (
            None,
            long.as_str(),
            PolicyRefusal::TooLong,
            "ONTAP accepts passwords of at most 128 characters".into(),
        ),
        (
            Some(broken),
            "Any-Pa55word",
            PolicyRefusal::CompositionTooLong,
            format!(
                "{policy} asks for more characters than the 128 a password may have; the policy must be fixed on the cluster"
            ),
        ),
    ];
    for (set, password, refusal, reason) in cases {
        server.set_policy(set.unwrap_or_default());
        let err = client
            .change_password(&login(ADMIN), &app(), &secret(password))
            .await
            .unwrap_err();
        let err = clean(err, &[password]);
        assert_eq!(err.refusal(), Some(refusal), "{err:?}");
        assert_eq!(err.reason().as_ref(), Some(&reason));
        assert_eq!(classify(&err), CallFailure::NotComplex { detail: reason });
        assert!(server.login_works(APP.0, APP.1) && !server.login_works(APP.0, password));
    }
}

#[tokio::test]
async fn a_replayed_change_is_already_present() {
    let server = server(|_| {}).await;
    let client = client(&server);
    let new = secret("New-Pa55word-2");
    client
        .change_password(&login(ADMIN), &app(), &new)
        .await
        .unwrap();
    let err = client
        .change_password(&login(ADMIN), &app(), &new)
        .await
        .unwrap_err();
    let err = clean(err, &[]);
    assert_eq!(err.refusal(), Some(PolicyRefusal::SameAsOld));
    assert_eq!(classify(&err), CallFailure::AlreadyPresent);
    assert!(server.login_works(APP.0, "New-Pa55word-2"));
}

#[tokio::test]
async fn the_history_rule_refuses_a_recent_password() {
    let server = server(|_| {}).await;
    let client = client(&server);
    for password in ["New-Pa55word-2", APP.1] {
        let result = client
            .change_password(&login(ADMIN), &app(), &secret(password))
            .await;
        if password == APP.1 {
            let err = clean(result.unwrap_err(), &[]);
            assert_eq!(err.refusal(), Some(PolicyRefusal::RecentlyUsed));
            let reason =
                "the cluster's password policy forbids reusing any of the last 6 passwords";
            assert_eq!(
                classify(&err),
                CallFailure::Other {
                    detail: reason.into()
                }
            );
        } else {
            result.unwrap();
        }
    }
    assert!(server.login_works(APP.0, "New-Pa55word-2"));
}

#[tokio::test]
async fn repeated_wrong_admin_logins_lock_the_admin() {
    let server = server(|c| c.lockout.max_failures = 3).await;
    let client = client(&server);
    let wrong = login((ADMIN.0, "Wrong-Pa55word"));
    for _ in 0..3 {
        let err = client.cluster(&wrong).await.unwrap_err();
        let err = clean(err, &[]);
        assert!(matches!(
            classify(&err),
            CallFailure::AdminUnauthorized { .. }
        ));
    }
    assert!(server.is_locked(ADMIN.0));
    let err = client
        .change_password(&login(ADMIN), &app(), &secret("New-Pa55word-2"))
        .await
        .unwrap_err();
    let err = clean(err, &[]);
    assert!(matches!(
        classify(&err),
        CallFailure::AdminUnauthorized { .. }
    ));
    assert!(server.login_works(APP.0, APP.1));
}

#[tokio::test]
async fn server_errors_drops_and_timeouts_are_transient() {
    let server = server(|_| {}).await;
    let mut config = config(&server);
    config.timeout = Duration::from_millis(300);
    let client = OntapClient::new(config).unwrap();
    let new = secret("New-Pa55word-2");
    server.inject(FaultRule::status(500, 1));
    server.inject(FaultRule::drop(1));
    server.inject(FaultRule::delay(1000, 1));
    for expected_kind in ["server_error", "connect", "timeout"] {
        let err = client
            .change_password(&login(ADMIN), &app(), &new)
            .await
            .unwrap_err();
        let err = clean(err, &[]);
        assert_eq!(err.kind(), expected_kind, "{err:?}");
        assert!(
            matches!(classify(&err), CallFailure::Transient { .. }),
            "{err:?}"
        );
        if expected_kind != "timeout" {
            assert!(server.login_works(APP.0, APP.1));
        }
    }
    // The delayed change still lands after the client gave up: a replay finds it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(server.login_works(APP.0, "New-Pa55word-2"));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_any_request() {
    let server = server(|_| {}).await;
    let mut config = config(&server);
    let other = certs::self_signed("cluster1", &["DNS:localhost", "IP:127.0.0.1"]).unwrap();
    config.ca_pem = Some(other.cert_pem.into_bytes());
    let client = OntapClient::new(config).unwrap();
    let err = client
        .change_password(&login(ADMIN), &app(), &secret("New-Pa55word-2"))
        .await
        .unwrap_err();
    let err = clean(err, &[]);
    let OntapError::TlsUntrusted { operation, detail } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*operation, Operation::ChangePassword);
    let fingerprint = certs::sha256_fingerprint(&server.ca_pem().unwrap()).unwrap();
    assert!(detail.contains(&fingerprint), "{detail}");
    assert!(matches!(classify(&err), CallFailure::TlsUntrusted { .. }));
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(server.login_works(APP.0, APP.1));
}

#[tokio::test]
async fn a_certificate_for_another_name_needs_server_name() {
    let made =
        certs::self_signed("ontap.example.internal", &["DNS:ontap.example.internal"]).unwrap();
    let server = server(|c| {
        c.tls = OntapTls::Pem {
            cert_pem: made.cert_pem,
            key_pem: made.key_pem,
        }
    })
    .await;
    let err = client(&server).cluster(&login(ADMIN)).await.unwrap_err();
    assert!(matches!(err, OntapError::TlsUntrusted { .. }), "{err:?}");
    let mut config = config(&server);
    config.server_name = Some("ontap.example.internal".into());
    let cluster = OntapClient::new(config)
        .unwrap()
        .cluster(&login(ADMIN))
        .await;
    assert_eq!(cluster.unwrap().uuid, CLUSTER_UUID);
}

#[tokio::test]
async fn the_cluster_identifies_itself_to_any_account() {
    let server = server(|c| c.cluster_name = "prod-a".into()).await;
    let client = client(&server);
    let expected = ClusterInfo {
        name: "prod-a".into(),
        uuid: CLUSTER_UUID.into(),
        version: Some(ClusterVersion {
            full: "NetApp Release 9.15.1: Wed Jun 26 19:15:36 UTC 2024".into(),
        }),
    };
    for account in [ADMIN, APP, VSADMIN] {
        assert_eq!(client.cluster(&login(account)).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn plain_http_only_when_allowed() {
    let server = server(|c| c.tls = OntapTls::PlainHttp).await;
    assert!(matches!(
        OntapClient::new(config(&server)),
        Err(OntapError::InvalidConfig(_))
    ));
    let mut config = config(&server);
    config.insecure_http = true;
    let client = OntapClient::new(config).unwrap();
    client
        .change_password(&login(ADMIN), &app(), &secret("New-Pa55word-2"))
        .await
        .unwrap();
    assert!(server.login_works(APP.0, "New-Pa55word-2"));
}
