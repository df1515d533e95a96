//! The REST client against the API test server, proving every password change with a real
//! `AUTH` on redis-server.

use std::time::Duration;

use password_rotator::password::{PasswordPolicy, generate_os};
use password_rotator::targets::redis_software::client::{
    ApiError, ClientConfig, Operation, PasswordBodyShape, RedisSoftwareClient,
};
use rotator_test_support::api_server::{
    AdminLogin, ApiServer, ApiServerConfig, DatabaseConfig, FaultRule, ServerTls, UserConfig,
};
use rotator_test_support::certs;
use rotator_test_support::redis_server::RedisServer;
use secrecy::{ExposeSecret, SecretString};

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "Admin-Pa55word";
const USER: &str = "orders-app";
const OLD: &str = "Old-Pa55word-1";
const DB_UID: u64 = 3;
const DB_OLD: &str = "Db-Old-Pa55word";

struct Fixture {
    redis: RedisServer,
    api: ApiServer,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(false, ServerTls::GeneratedCa).await
    }

    /// A server presenting this certificate and key.
    async fn serving(certificate: certs::CertifiedKey) -> Self {
        let tls = ServerTls::Pem {
            cert_pem: certificate.cert_pem,
            key_pem: certificate.key_pem,
        };
        Self::start_with(false, tls).await
    }

    async fn start_with(password_complexity: bool, tls: ServerTls) -> Self {
        let redis = RedisServer::start().await.expect("redis-server starts");
        let admin = AdminLogin {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        };
        let mut config = ApiServerConfig::new(&redis, admin);
        config.password_complexity = password_complexity;
        config.tls = tls;
        config.users.push(UserConfig {
            uid: 7,
            name: USER.into(),
            email: "orders@example.com".into(),
            role: "db_member".into(),
            passwords: vec![OLD.into()],
        });
        config.databases.push(DatabaseConfig {
            uid: DB_UID,
            name: "orders".into(),
            acl_user: "default".into(),
            passwords: vec![DB_OLD.into()],
        });
        let api = ApiServer::start(config).await.expect("API server starts");
        Fixture { redis, api }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(
            self.api.url().parse().unwrap(),
            ADMIN_EMAIL,
            ADMIN_PASSWORD.into(),
        );
        config.ca_pem = Some(self.api.ca_pem().into_bytes());
        config
    }

    fn client(&self) -> RedisSoftwareClient {
        RedisSoftwareClient::new(self.config()).unwrap()
    }

    async fn user_auth(&self, password: &str) -> bool {
        self.redis.auth(USER, password).await.unwrap()
    }

    async fn db_auth(&self, password: &str) -> bool {
        self.redis.auth_default(password).await.unwrap()
    }
}

fn secret(s: &str) -> SecretString {
    s.into()
}

/// Every error is checked: no password may show in its Display or Debug.
fn clean(error: ApiError, passwords: &[&str]) -> ApiError {
    for text in [error.to_string(), format!("{error:?}")] {
        for password in passwords.iter().chain(&[ADMIN_PASSWORD, OLD, DB_OLD]) {
            assert!(!text.contains(password), "password in {text}");
        }
    }
    error
}

#[tokio::test]
async fn user_add_then_delete_with_replays() {
    let f = Fixture::start().await;
    let client = f.client();
    let (old, new) = (secret(OLD), secret("New-Pa55word-2"));

    client.add_user_password(USER, &old, &new).await.unwrap();
    assert!(f.user_auth(OLD).await && f.user_auth(new.expose_secret()).await);

    let replay = client
        .add_user_password(USER, &old, &new)
        .await
        .unwrap_err();
    let replay = clean(replay, &[new.expose_secret()]);
    assert!(replay.is_new_password_same_as_current(), "{replay:?}");
    assert_eq!(replay.status(), Some(400));

    client.delete_user_password(USER, &old).await.unwrap();
    assert!(!f.user_auth(OLD).await && f.user_auth(new.expose_secret()).await);

    let replay = clean(
        client.delete_user_password(USER, &old).await.unwrap_err(),
        &[],
    );
    assert!(
        replay.is_unauthorized() && !replay.is_retryable(),
        "{replay:?}"
    );
    assert_eq!(replay.kind(), "unauthorized");
    assert_eq!(replay.operation(), Some(Operation::DeleteUserPassword));
    // The 401 was about old_password: the admin credentials still work.
    assert_eq!(client.get_user(7).await.unwrap().name, USER);

    let last = client.delete_user_password(USER, &new).await.unwrap_err();
    let last = clean(last, &[new.expose_secret()]);
    assert!(last.is_cannot_delete_last_password(), "{last:?}");
    assert!(f.user_auth(new.expose_secret()).await);
}

#[tokio::test]
async fn user_replace_leaves_only_the_new_password() {
    let f = Fixture::start().await;
    let client = f.client();
    let (old, second, third) = (secret(OLD), secret("Second-Pa55"), secret("Third-Pa55"));
    client.add_user_password(USER, &old, &second).await.unwrap();

    client
        .replace_user_password(USER, &old, &third)
        .await
        .unwrap();
    assert!(f.user_auth(third.expose_secret()).await);
    assert!(!f.user_auth(OLD).await && !f.user_auth(second.expose_secret()).await);
}

#[tokio::test]
async fn caller_body_shape_works() {
    let f = Fixture::start().await;
    let mut config = f.config();
    config.body_shape = PasswordBodyShape::Caller;
    let client = RedisSoftwareClient::new(config).unwrap();
    let new = secret("Caller-Pa55word");

    // The old password is not sent in this shape, so a wrong one changes nothing.
    client
        .add_user_password(USER, &secret("not-sent"), &new)
        .await
        .unwrap();
    assert!(f.user_auth(OLD).await && f.user_auth(new.expose_secret()).await);
    client
        .delete_user_password(USER, &secret(OLD))
        .await
        .unwrap();
    assert!(!f.user_auth(OLD).await && f.user_auth(new.expose_secret()).await);
}

#[tokio::test]
async fn generated_passwords_pass_the_cluster_complexity_rules() {
    let f = Fixture::start_with(true, ServerTls::GeneratedCa).await;
    let client = f.client();
    let policy = PasswordPolicy::new(16, vec![USER.into(), "orders@example.com".into()]).unwrap();
    for _ in 0..20 {
        let new = generate_os(&policy);
        client
            .add_user_password(USER, &secret(OLD), &new)
            .await
            .unwrap();
        assert!(f.user_auth(new.expose_secret()).await);
    }
    let weak = secret("weak");
    let err = client.add_user_password(USER, &secret(OLD), &weak).await;
    let err = clean(err.unwrap_err(), &["weak"]);
    assert_eq!(err.error_code(), Some("password_not_complex"));
}

#[tokio::test]
async fn database_add_replace_delete() {
    let f = Fixture::start().await;
    let client = f.client();
    let (old, new, newer) = (
        secret(DB_OLD),
        secret("Db-New-Pa55"),
        secret("Db-Newer-Pa55"),
    );

    assert_eq!(client.get_database(DB_UID).await.unwrap().name, "orders");
    client.add_database_password(DB_UID, &new).await.unwrap();
    assert!(f.db_auth(DB_OLD).await && f.db_auth(new.expose_secret()).await);
    let replay = client
        .add_database_password(DB_UID, &new)
        .await
        .unwrap_err();
    assert!(clean(replay, &[new.expose_secret()]).is_new_password_same_as_current());

    client.delete_database_password(DB_UID, &old).await.unwrap();
    assert!(!f.db_auth(DB_OLD).await && f.db_auth(new.expose_secret()).await);
    let replay = clean(
        client
            .delete_database_password(DB_UID, &old)
            .await
            .unwrap_err(),
        &[],
    );
    assert_eq!(
        (replay.status(), replay.kind()),
        (Some(406), "not_acceptable")
    );
    let last = client
        .delete_database_password(DB_UID, &new)
        .await
        .unwrap_err();
    assert!(clean(last, &[new.expose_secret()]).is_cannot_delete_last_password());

    client
        .replace_database_password(DB_UID, &newer)
        .await
        .unwrap();
    assert!(!f.db_auth(new.expose_secret()).await && f.db_auth(newer.expose_secret()).await);
}

#[tokio::test]
async fn reads_and_not_found() {
    let f = Fixture::start().await;
    let client = f.client();

    let users = client.list_users().await.unwrap();
    assert_eq!(users.len(), 2, "the admin and the one user");
    let user = client
        .find_user("ORDERS@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((user.uid, user.role.as_str()), (7, "db_member"));
    assert!(user.password_issue_date.is_some());
    assert_eq!(client.find_user(USER).await.unwrap(), Some(user));
    assert_eq!(client.find_user("nobody").await.unwrap(), None);

    for err in [
        client.get_user(99).await.unwrap_err(),
        client.get_database(99).await.unwrap_err(),
        client
            .add_user_password("nobody", &secret(OLD), &secret("X-Pa55word"))
            .await
            .unwrap_err(),
        client
            .add_database_password(99, &secret("X-Pa55word"))
            .await
            .unwrap_err(),
    ] {
        let err = clean(err, &["X-Pa55word"]);
        assert_eq!(
            (err.status(), err.kind()),
            (Some(404), "not_found"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn wrong_admin_password_is_unauthorized() {
    let f = Fixture::start().await;
    let mut config = f.config();
    config.password = secret("Wrong-Admin-Pa55");
    let client = RedisSoftwareClient::new(config).unwrap();
    let err = client
        .add_user_password(USER, &secret(OLD), &secret("New-Pa55word"))
        .await
        .unwrap_err();
    let err = clean(err, &["Wrong-Admin-Pa55", "New-Pa55word"]);
    assert!(err.is_unauthorized() && !err.is_retryable(), "{err:?}");
    assert!(!f.user_auth("New-Pa55word").await);
}

#[tokio::test]
async fn tls_is_verified_and_http_needs_opt_in() {
    let f = Fixture::start().await;
    let other = Fixture::start().await;

    let mut config = f.config();
    config.ca_pem = Some(other.api.ca_pem().into_bytes());
    let err = RedisSoftwareClient::new(config)
        .unwrap()
        .list_users()
        .await
        .unwrap_err();
    let err = clean(err, &[]);
    assert!(matches!(err, ApiError::TlsUntrusted { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("not signed by caSecret and not pinned in it"),
        "{err}"
    );

    let mut config = f.config();
    config.url = f.api.url().replace("https:", "http:").parse().unwrap();
    let err = RedisSoftwareClient::new(config).unwrap_err();
    assert!(matches!(&err, ApiError::InvalidConfig(m) if m.contains("insecureHttp")));

    let mut config = f.config();
    config.ca_pem = None;
    let err = RedisSoftwareClient::new(config).unwrap_err();
    assert!(matches!(&err, ApiError::InvalidConfig(m) if m.contains("caSecret")));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let f = Fixture::start().await;
    let client = f.client();
    f.api.inject(FaultRule::status(503, 1));
    let err = clean(client.list_users().await.unwrap_err(), &[]);
    assert_eq!((err.status(), err.kind()), (Some(503), "server_error"));
    assert!(err.is_retryable());
    assert_eq!(client.list_users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn timeout_then_replay() {
    let f = Fixture::start().await;
    let mut config = f.config();
    config.request_timeout = Duration::from_millis(300);
    let client = RedisSoftwareClient::new(config).unwrap();
    let (old, new) = (secret(OLD), secret("Slow-Pa55word"));

    f.api
        .inject(FaultRule::delay(1_000, 1).on("POST", "/v1/users/password"));
    let err = client
        .add_user_password(USER, &old, &new)
        .await
        .unwrap_err();
    let err = clean(err, &[new.expose_secret()]);
    assert!(
        matches!(
            err,
            ApiError::Timeout {
                operation: Operation::AddUserPassword
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // The server finishes the change after the client gave up; the replay then says so.
    for _ in 0..50 {
        if f.user_auth(new.expose_secret()).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replay = client
        .add_user_password(USER, &old, &new)
        .await
        .unwrap_err();
    assert!(clean(replay, &[new.expose_secret()]).is_new_password_same_as_current());
    assert!(f.user_auth(new.expose_secret()).await);
}

#[tokio::test]
async fn dropped_connections_are_connect_errors() {
    let f = Fixture::start().await;
    let client = f.client();
    let (old, new) = (secret(OLD), secret("Dropped-Pa55word"));

    f.api.inject(FaultRule::drop(1));
    let err = client
        .add_user_password(USER, &old, &new)
        .await
        .unwrap_err();
    let err = clean(err, &[new.expose_secret()]);
    assert!(
        matches!(err, ApiError::Connect { .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert!(!f.user_auth(new.expose_secret()).await);

    f.api.inject(FaultRule::drop_after_apply(1));
    let err = client
        .add_user_password(USER, &old, &new)
        .await
        .unwrap_err();
    assert!(matches!(
        clean(err, &[new.expose_secret()]),
        ApiError::Connect { .. }
    ));
    assert!(f.user_auth(new.expose_secret()).await);
    let replay = client
        .add_user_password(USER, &old, &new)
        .await
        .unwrap_err();
    assert!(clean(replay, &[new.expose_secret()]).is_new_password_same_as_current());

    let requests = f.api.requests();
    assert!(
        requests.iter().filter(|r| r.dropped).count() == 2,
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.login.as_deref() == Some(ADMIN_EMAIL))
    );
}

/// A rotation (add, then delete) through `client`, proven with real `AUTH`s.
async fn add_then_delete(f: &Fixture, client: &RedisSoftwareClient) {
    let (old, new) = (secret(OLD), secret("Tls-New-Pa55word"));
    client.add_user_password(USER, &old, &new).await.unwrap();
    assert!(f.user_auth(OLD).await && f.user_auth(new.expose_secret()).await);
    client.delete_user_password(USER, &old).await.unwrap();
    assert!(!f.user_auth(OLD).await && f.user_auth(new.expose_secret()).await);
}

const LOOPBACK_SANS: [&str; 2] = ["DNS:localhost", "IP:127.0.0.1"];

#[tokio::test]
async fn an_openssl_self_signed_ca_certificate_in_ca_secret_is_pinned() {
    let made = certs::self_signed("localhost", &LOOPBACK_SANS).unwrap();
    assert!(certs::text(&made.cert_pem).unwrap().contains("CA:TRUE"));
    let f = Fixture::serving(made.clone()).await;
    assert_eq!(
        f.api.ca_pem(),
        made.cert_pem,
        "caSecret is the certificate itself"
    );
    add_then_delete(&f, &f.client()).await;
}

#[tokio::test]
async fn an_openssl_ca_signed_certificate_is_verified_against_the_ca() {
    let (ca_pem, server) = certs::ca_signed("localhost", &LOOPBACK_SANS).unwrap();
    let f = Fixture::serving(server).await;
    let mut config = f.config();
    config.ca_pem = Some(ca_pem.into_bytes());
    add_then_delete(&f, &RedisSoftwareClient::new(config).unwrap()).await;
}

#[tokio::test]
async fn the_generated_ca_signed_chain_is_verified_against_the_ca() {
    let f = Fixture::start().await;
    add_then_delete(&f, &f.client()).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_described() {
    let presented = certs::self_signed("localhost", &LOOPBACK_SANS).unwrap();
    let f = Fixture::serving(presented.clone()).await;
    let mut config = f.config();
    let other = certs::self_signed("localhost", &LOOPBACK_SANS).unwrap();
    config.ca_pem = Some(other.cert_pem.into_bytes());
    let client = RedisSoftwareClient::new(config).unwrap();
    let new = "Untrusted-Pa55word";

    let err = client
        .add_user_password(USER, &secret(OLD), &secret(new))
        .await
        .unwrap_err();
    let err = clean(err, &[new]);
    let ApiError::TlsUntrusted { operation, detail } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*operation, Operation::AddUserPassword);
    let fingerprint = certs::sha256_fingerprint(&presented.cert_pem).unwrap();
    for part in [
        "a CA certificate (CA:TRUE) that is not pinned in caSecret",
        "subject \"CN=localhost\"",
        "SANs [DNS:localhost, IP:127.0.0.1]",
        &format!("SHA-256 {fingerprint}"),
    ] {
        assert!(detail.contains(part), "{part:?} not in {detail}");
    }
    assert!(detail.chars().count() < 600, "{detail}");
    assert_eq!(err.kind(), "tls_untrusted");
    assert!(!err.is_retryable());
    assert!(f.user_auth(OLD).await && !f.user_auth(new).await);
    assert!(f.api.requests().is_empty(), "{:?}", f.api.requests());
}

#[tokio::test]
async fn a_pinned_certificate_must_be_valid_for_the_host_or_the_server_name() {
    let made = certs::self_signed("rs.example.internal", &["DNS:rs.example.internal"]).unwrap();
    let f = Fixture::serving(made).await;

    let err = clean(f.client().list_users().await.unwrap_err(), &[]);
    let ApiError::TlsUntrusted { detail, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        detail.starts_with("not valid for name 127.0.0.1; "),
        "{detail}"
    );
    assert!(
        detail.contains("SANs [DNS:rs.example.internal]"),
        "{detail}"
    );

    let mut config = f.config();
    config.server_name = Some("rs.example.internal".into());
    add_then_delete(&f, &RedisSoftwareClient::new(config).unwrap()).await;
}
