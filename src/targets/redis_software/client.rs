//! Client for the Redis Software (Redis Enterprise) REST API: password rotation of users and of
//! databases' default users.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;
use url::Url;

use crate::targets::http::{self, TransportFailure, opt};
use crate::targets::{Observed, RequestObserver};
use crate::tls::PresentedCertificate;

/// The `target` label of this client's requests.
pub const TARGET: &str = "redisSoftware";

/// The shape of `/v1/users/password` request bodies, which changed across Redis Software versions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "PascalCase")]
pub enum PasswordBodyShape {
    /// `{username, old_password, new_password}`, understood by every version.
    #[default]
    Legacy,
    /// `{new_password}`, plus `username` when acting on a user other than the caller.
    Caller,
}

#[derive(Clone)]
pub struct ClientConfig {
    pub url: Url,
    pub username: String,
    pub password: SecretString,
    pub ca_pem: Option<Vec<u8>>,
    /// The name the server certificate must be valid for, instead of the URL's host.
    pub server_name: Option<String>,
    pub insecure_http: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub body_shape: PasswordBodyShape,
}

impl ClientConfig {
    pub fn new(url: Url, username: impl Into<String>, password: SecretString) -> Self {
        Self {
            url,
            username: username.into(),
            password,
            ca_pem: None,
            server_name: None,
            insecure_http: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            body_shape: PasswordBodyShape::Legacy,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url.as_str())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len))
            .field("server_name", &self.server_name)
            .field("insecure_http", &self.insecure_http)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("body_shape", &self.body_shape)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    AddUserPassword,
    ReplaceUserPassword,
    DeleteUserPassword,
    AddDatabasePassword,
    ReplaceDatabasePassword,
    DeleteDatabasePassword,
    GetUser,
    ListUsers,
    GetDatabase,
    GetCluster,
    ListNodes,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddUserPassword => "add_user_password",
            Self::ReplaceUserPassword => "replace_user_password",
            Self::DeleteUserPassword => "delete_user_password",
            Self::AddDatabasePassword => "add_database_password",
            Self::ReplaceDatabasePassword => "replace_database_password",
            Self::DeleteDatabasePassword => "delete_database_password",
            Self::GetUser => "get_user",
            Self::ListUsers => "list_users",
            Self::GetDatabase => "get_database",
            Self::GetCluster => "get_cluster",
            Self::ListNodes => "list_nodes",
        }
    }

    fn method(self) -> Method {
        match self {
            Self::AddUserPassword | Self::AddDatabasePassword => Method::POST,
            Self::ReplaceUserPassword | Self::ReplaceDatabasePassword => Method::PUT,
            Self::DeleteUserPassword | Self::DeleteDatabasePassword => Method::DELETE,
            Self::GetUser
            | Self::ListUsers
            | Self::GetDatabase
            | Self::GetCluster
            | Self::ListNodes => Method::GET,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every message and detail is scrubbed of the passwords sent with the request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error(
        "{operation}: HTTP {status}{}{}",
        opt(" ", error_code),
        opt(": ", message)
    )]
    Status {
        operation: Operation,
        status: u16,
        error_code: Option<String>,
        message: Option<String>,
    },
    #[error("{operation}: timed out")]
    Timeout { operation: Operation },
    #[error("{operation}: connection failed: {detail}")]
    Connect {
        operation: Operation,
        detail: String,
    },
    /// The server's certificate is neither pinned in nor signed by `caSecret`, or not valid
    /// for the name checked; `detail` says why and what the server presented.
    #[error("{operation}: TLS certificate refused: {detail}")]
    TlsUntrusted {
        operation: Operation,
        detail: String,
    },
    #[error("invalid Redis Software client configuration: {0}")]
    InvalidConfig(String),
    #[error("{operation}: unexpected response body: {detail}")]
    Decode {
        operation: Operation,
        detail: String,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Status { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Status { operation, .. }
            | Self::Timeout { operation }
            | Self::Connect { operation, .. }
            | Self::TlsUntrusted { operation, .. }
            | Self::Decode { operation, .. } => Some(*operation),
            Self::InvalidConfig(_) => None,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// Transient failures: server errors, timeouts and connection failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500,
            Self::Timeout { .. } | Self::Connect { .. } => true,
            Self::TlsUntrusted { .. } | Self::InvalidConfig(_) | Self::Decode { .. } => false,
        }
    }

    pub fn is_new_password_same_as_current(&self) -> bool {
        self.error_code() == Some("new_password_same_as_current")
    }

    pub fn is_cannot_delete_last_password(&self) -> bool {
        self.error_code() == Some("cannot_delete_last_password")
    }

    /// A short, bounded label, e.g. for a Prometheus label value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { status, .. } => match status {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                406 => "not_acceptable",
                500.. => "server_error",
                _ => "http_error",
            },
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::TlsUntrusted { .. } => "tls_untrusted",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Decode { .. } => "decode",
        }
    }
}

/// A Redis Software user, as far as this operator cares; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub uid: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub password_issue_date: Option<String>,
}

/// A node of the cluster, as far as its version goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub software_version: Option<String>,
}

/// The cluster, as far as this operator cares: its name is its FQDN, the same whichever node
/// or address is asked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Cluster {
    pub name: String,
    /// Days a user's password stays valid after its `password_issue_date`; 0 or absent:
    /// passwords never expire.
    #[serde(default)]
    pub password_expiration_duration: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Database {
    pub uid: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RedisSoftwareClient {
    http: reqwest::Client,
    config: ClientConfig,
    observer: Option<Arc<dyn RequestObserver>>,
    /// The cluster's `password_expiration_duration` and when it was asked, shared by clones.
    expiration_days: Arc<Mutex<Option<AskedAt<Option<u64>>>>>,
    presented: PresentedCertificate,
}

/// An answer and when it was given.
type AskedAt<T> = (Instant, T);

impl RedisSoftwareClient {
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let presented = PresentedCertificate::default();
        let http = http::client(&http::Endpoint {
            url: &config.url,
            ca_pem: config.ca_pem.as_deref(),
            server_name: config.server_name.as_deref(),
            insecure_http: config.insecure_http,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            presented: presented.clone(),
        })
        .map_err(ApiError::InvalidConfig)?;
        Ok(Self {
            http,
            config,
            observer: None,
            expiration_days: Arc::default(),
            presented,
        })
    }

    /// When the certificate the cluster last presented expires; `None` over http.
    pub fn certificate_expires(&self) -> Option<jiff::Timestamp> {
        self.presented.not_after()
    }

    /// Tells `observer` about every request.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// `POST /v1/users/password`: `new` authenticates next to the existing passwords.
    pub async fn add_user_password(
        &self,
        username: &str,
        old: &SecretString,
        new: &SecretString,
    ) -> Result<(), ApiError> {
        let body = self.user_password_body(username, old, new);
        self.write(
            Operation::AddUserPassword,
            USERS_PASSWORD,
            body,
            &[old, new],
        )
        .await
    }

    /// `PUT /v1/users/password`: `new` becomes the only password.
    pub async fn replace_user_password(
        &self,
        username: &str,
        old: &SecretString,
        new: &SecretString,
    ) -> Result<(), ApiError> {
        let body = self.user_password_body(username, old, new);
        self.write(
            Operation::ReplaceUserPassword,
            USERS_PASSWORD,
            body,
            &[old, new],
        )
        .await
    }

    /// `DELETE /v1/users/password`.
    pub async fn delete_user_password(
        &self,
        username: &str,
        old: &SecretString,
    ) -> Result<(), ApiError> {
        let body = json!({"username": username, "old_password": old.expose_secret()});
        self.write(Operation::DeleteUserPassword, USERS_PASSWORD, body, &[old])
            .await
    }

    /// `POST /v1/bdbs/{uid}/passwords`: adds a password to the database's default user.
    pub async fn add_database_password(
        &self,
        uid: u64,
        new: &SecretString,
    ) -> Result<(), ApiError> {
        self.database_password(Operation::AddDatabasePassword, uid, new)
            .await
    }

    /// `PUT /v1/bdbs/{uid}/passwords`: `new` becomes the default user's only password.
    pub async fn replace_database_password(
        &self,
        uid: u64,
        new: &SecretString,
    ) -> Result<(), ApiError> {
        self.database_password(Operation::ReplaceDatabasePassword, uid, new)
            .await
    }

    /// `DELETE /v1/bdbs/{uid}/passwords`.
    pub async fn delete_database_password(
        &self,
        uid: u64,
        old: &SecretString,
    ) -> Result<(), ApiError> {
        self.database_password(Operation::DeleteDatabasePassword, uid, old)
            .await
    }

    pub async fn get_user(&self, uid: u64) -> Result<User, ApiError> {
        self.get(Operation::GetUser, &["v1", "users", &uid.to_string()])
            .await
    }

    pub async fn list_users(&self) -> Result<Vec<User>, ApiError> {
        self.get(Operation::ListUsers, &["v1", "users"]).await
    }

    /// The user whose name is `name_or_email`, or whose email is (case-insensitively).
    pub async fn find_user(&self, name_or_email: &str) -> Result<Option<User>, ApiError> {
        Ok(self
            .list_users()
            .await?
            .into_iter()
            .find(|u| u.name == name_or_email || u.email.eq_ignore_ascii_case(name_or_email)))
    }

    /// `GET /v1/cluster`: what the cluster says it is, whichever node or address answers.
    pub async fn get_cluster(&self) -> Result<Cluster, ApiError> {
        self.get(Operation::GetCluster, &["v1", "cluster"]).await
    }

    /// `GET /v1/nodes`: the software version of the cluster's nodes (the lowest, mid-upgrade).
    pub async fn software_version(&self) -> Result<Option<String>, ApiError> {
        let nodes: Vec<Node> = self.get(Operation::ListNodes, &["v1", "nodes"]).await?;
        Ok(nodes.into_iter().filter_map(|n| n.software_version).min())
    }

    /// The login the client authenticates as.
    pub fn admin_login(&self) -> &str {
        &self.config.username
    }

    /// The cluster's `password_expiration_duration`, asked at most once a minute: the end
    /// of every rotation wants it, and a burst of rotations would ask it once each. A changed
    /// policy is seen within a minute.
    pub async fn password_expiration_days(&self) -> Result<Option<u64>, ApiError> {
        const FRESH_FOR: Duration = Duration::from_secs(60);
        if let Some((at, days)) = *self.expiration_days.lock().expect("not poisoned")
            && at.elapsed() < FRESH_FOR
        {
            return Ok(days);
        }
        let days = self.get_cluster().await?.password_expiration_duration;
        *self.expiration_days.lock().expect("not poisoned") = Some((Instant::now(), days));
        Ok(days)
    }

    pub async fn get_database(&self, uid: u64) -> Result<Database, ApiError> {
        self.get(Operation::GetDatabase, &["v1", "bdbs", &uid.to_string()])
            .await
    }

    fn user_password_body(&self, username: &str, old: &SecretString, new: &SecretString) -> Value {
        match self.config.body_shape {
            PasswordBodyShape::Legacy => json!({
                "username": username,
                "old_password": old.expose_secret(),
                "new_password": new.expose_secret(),
            }),
            PasswordBodyShape::Caller if username == self.config.username => {
                json!({"new_password": new.expose_secret()})
            }
            PasswordBodyShape::Caller => {
                json!({"username": username, "new_password": new.expose_secret()})
            }
        }
    }

    async fn database_password(
        &self,
        operation: Operation,
        uid: u64,
        password: &SecretString,
    ) -> Result<(), ApiError> {
        let path = ["v1", "bdbs", &uid.to_string(), "passwords"];
        let body = json!({"password": password.expose_secret()});
        self.write(operation, &path, body, &[password]).await
    }

    async fn write(
        &self,
        operation: Operation,
        path: &[&str],
        body: Value,
        secrets: &[&SecretString],
    ) -> Result<(), ApiError> {
        self.send(operation, path, Some(body), secrets)
            .await
            .map(drop)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: Operation,
        path: &[&str],
    ) -> Result<T, ApiError> {
        let bytes = self.send(operation, path, None, &[]).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            operation,
            detail: self.scrub(&e.to_string(), &[]),
        })
    }

    /// Sends one request and returns the body of a 2xx response.
    async fn send(
        &self,
        operation: Operation,
        path: &[&str],
        body: Option<Value>,
        secrets: &[&SecretString],
    ) -> Result<Vec<u8>, ApiError> {
        let method = operation.method();
        let mut url = self.config.url.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(path);
        let span = tracing::debug_span!(
            "redis_software_request",
            operation = operation.as_str(),
            method = %method,
            path = url.path(),
            status = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(
                &self.config.username,
                Some(self.config.password.expose_secret()),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &body {
            request = request.json(body);
        }
        let started = Instant::now();
        let mut observed = Observed::start(self.observer.as_deref(), TARGET, operation.as_str());
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        }
        .instrument(span.clone())
        .await;
        span.record("elapsed_ms", started.elapsed().as_millis() as u64);
        let _entered = span.enter();
        match result {
            Ok((status, bytes)) => {
                span.record("status", status.as_u16());
                tracing::debug!("request finished");
                observed.status(status.as_str());
                if status.is_success() {
                    Ok(bytes.to_vec())
                } else {
                    Err(self.status_error(operation, status, &bytes, secrets))
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "request failed");
                let error = self.transport_error(operation, &e, secrets);
                observed.status(error.kind());
                Err(error)
            }
        }
    }

    fn status_error(
        &self,
        operation: Operation,
        status: StatusCode,
        body: &[u8],
        secrets: &[&SecretString],
    ) -> ApiError {
        let (error_code, message) = parse_error_body(body);
        let clean = |s: Option<String>| {
            s.map(|s| http::server_text(&s, secrets.iter().copied().chain([&self.config.password])))
        };
        ApiError::Status {
            operation,
            status: status.as_u16(),
            error_code: clean(error_code),
            message: clean(message),
        }
    }

    fn transport_error(
        &self,
        operation: Operation,
        error: &reqwest::Error,
        secrets: &[&SecretString],
    ) -> ApiError {
        let secrets = secrets.iter().copied().chain([&self.config.password]);
        match http::transport_failure(error, secrets) {
            TransportFailure::Timeout => ApiError::Timeout { operation },
            TransportFailure::TlsUntrusted(detail) => ApiError::TlsUntrusted { operation, detail },
            TransportFailure::Connect(detail) => ApiError::Connect { operation, detail },
        }
    }

    /// Replaces every password sent with the request, and the admin password, by `[redacted]`.
    fn scrub(&self, text: &str, secrets: &[&SecretString]) -> String {
        http::scrub(text, secrets.iter().copied().chain([&self.config.password]))
    }
}

const USERS_PASSWORD: &[&str] = &["v1", "users", "password"];

/// `(error_code, message)` from a JSON error body; any other non-empty body is the message.
fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => (field(&v, "error_code"), field(&v, "message")),
        _ => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            (None, (!text.is_empty()).then_some(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "Sup3r-Secret_pw";

    fn secret(s: &str) -> SecretString {
        s.into()
    }

    fn client() -> RedisSoftwareClient {
        let mut config = ClientConfig::new(
            "http://127.0.0.1:1/".parse().unwrap(),
            "admin@example.com",
            secret("Adm1n-pass"),
        );
        config.insecure_http = true;
        RedisSoftwareClient::new(config).unwrap()
    }

    #[test]
    fn error_bodies_are_parsed_leniently() {
        let parsed = |b: &str| parse_error_body(b.as_bytes());
        assert_eq!(
            parsed(r#"{"error_code":"password_not_complex","message":"too simple"}"#),
            (
                Some("password_not_complex".into()),
                Some("too simple".into())
            )
        );
        assert_eq!(
            parsed(r#"{"error_code":"cannot_delete_last_password"}"#),
            (Some("cannot_delete_last_password".into()), None)
        );
        assert_eq!(parsed(r#"{"other": 1}"#), (None, None));
        assert_eq!(parsed(""), (None, None));
        assert_eq!(parsed("  \n"), (None, None));
        assert_eq!(
            parsed("<html>Bad Gateway</html>"),
            (None, Some("<html>Bad Gateway</html>".into()))
        );
        assert_eq!(
            parse_error_body(&[0xff, b'x']),
            (None, Some("\u{fffd}x".into()))
        );
    }

    #[test]
    fn messages_are_scrubbed_then_truncated() {
        let c = client();
        let body = format!("{{\"error_code\":\"x\",\"message\":\"bad {PW} and Adm1n-pass\"}}");
        let err = c.status_error(
            Operation::AddUserPassword,
            StatusCode::BAD_REQUEST,
            body.as_bytes(),
            &[&secret(PW)],
        );
        assert_eq!(
            err.to_string(),
            "add_user_password: HTTP 400 x: bad [redacted] and [redacted]"
        );

        // A password straddling the cut must not leave a prefix behind.
        let body = format!("{}{PW}", "a".repeat(http::MAX_MESSAGE_CHARS - 3));
        let err = c.status_error(
            Operation::DeleteUserPassword,
            StatusCode::BAD_GATEWAY,
            body.as_bytes(),
            &[&secret(PW)],
        );
        let ApiError::Status {
            message: Some(m), ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(m.chars().count(), http::MAX_MESSAGE_CHARS + 1);
        assert!(m.ends_with("aaa[re…"), "{m}");
        assert!(err.is_retryable());
    }

    #[test]
    fn nothing_formats_a_password() {
        let c = client();
        let body = format!("{PW} {PW}");
        let errors = [
            c.status_error(
                Operation::AddUserPassword,
                StatusCode::UNAUTHORIZED,
                body.as_bytes(),
                &[&secret(PW)],
            ),
            ApiError::Timeout {
                operation: Operation::GetUser,
            },
            ApiError::Connect {
                operation: Operation::ListUsers,
                detail: c.scrub(&body, &[&secret(PW)]),
            },
            ApiError::InvalidConfig("caSecret is required".into()),
            ApiError::TlsUntrusted {
                operation: Operation::AddUserPassword,
                detail: "expired; the server presented subject \"CN=rs\"".into(),
            },
            ApiError::Decode {
                operation: Operation::GetDatabase,
                detail: c.scrub(&body, &[&secret(PW)]),
            },
        ];
        let mut config = ClientConfig::new("https://rs:9443".parse().unwrap(), "admin", secret(PW));
        config.ca_pem = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        let mut texts = vec![format!("{config:?}"), format!("{c:?}")];
        for e in &errors {
            texts.extend([e.to_string(), format!("{e:?}"), e.kind().to_string()]);
        }
        for t in texts {
            assert!(!t.contains(PW) && !t.contains("Adm1n-pass"), "{t}");
        }
        assert!(errors[0].is_unauthorized());
        assert!(!errors[4].is_retryable());
        assert_eq!(
            errors.map(|e| e.kind()),
            [
                "unauthorized",
                "timeout",
                "connect",
                "invalid_config",
                "tls_untrusted",
                "decode"
            ]
        );
    }

    #[test]
    fn insecure_configurations_are_refused() {
        let new = |url: &str, insecure_http| {
            let mut config = ClientConfig::new(url.parse().unwrap(), "a", secret(PW));
            config.insecure_http = insecure_http;
            RedisSoftwareClient::new(config).map(drop)
        };
        let refused = |r: Result<(), ApiError>| match r {
            Err(ApiError::InvalidConfig(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(new("http://rs:8080", false)).contains("insecureHttp"));
        assert!(refused(new("https://rs:9443", false)).contains("caSecret is required"));
        assert!(refused(new("https://rs:9443", true)).contains("caSecret is required"));
        assert!(refused(new("https://u:p@rs:9443", false)).contains("credentials"));
        assert!(refused(new("ftp://rs", true)).contains("scheme"));
        assert!(new("http://rs:8080", true).is_ok());
    }

    #[test]
    fn body_shapes() {
        let mut c = client();
        let (old, new) = (secret("old-1A"), secret("new-1A"));
        assert_eq!(
            c.user_password_body("app", &old, &new),
            json!({"username": "app", "old_password": "old-1A", "new_password": "new-1A"})
        );
        c.config.body_shape = PasswordBodyShape::Caller;
        assert_eq!(
            c.user_password_body("app", &old, &new),
            json!({"username": "app", "new_password": "new-1A"})
        );
        assert_eq!(
            c.user_password_body("admin@example.com", &old, &new),
            json!({"new_password": "new-1A"})
        );
        assert_eq!(
            serde_json::to_value(PasswordBodyShape::Caller).unwrap(),
            json!("Caller")
        );
    }

    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl RequestObserver for Recorder {
        fn started(&self, target: &'static str, operation: &'static str) {
            assert_eq!(target, TARGET);
            self.0.lock().unwrap().push(format!("started {operation}"));
        }
        fn finished(&self, _: &'static str, operation: &'static str, status: &str, _: Duration) {
            self.0.lock().unwrap().push(format!("{operation} {status}"));
        }
    }

    #[tokio::test]
    async fn the_observer_sees_every_request_end() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let recorder = Arc::new(Recorder::default());
        let refused = client().with_observer(recorder.clone());
        assert!(refused.get_user(1).await.is_err());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = ClientConfig::new(
            format!("http://{}", listener.local_addr().unwrap())
                .parse()
                .unwrap(),
            "admin@example.com",
            secret("Adm1n-pass"),
        );
        config.insecure_http = true;
        let c = RedisSoftwareClient::new(config)
            .unwrap()
            .with_observer(recorder.clone());
        // The first connection is answered 401, the second never.
        tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            let _ = first.read(&mut [0; 4096]).await;
            let response = "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n";
            first.write_all(response.as_bytes()).await.unwrap();
            let _silent = listener.accept().await;
            std::future::pending::<()>().await;
        });
        assert!(c.list_users().await.unwrap_err().is_unauthorized());
        let dropped = tokio::time::timeout(Duration::from_millis(100), c.get_database(3)).await;
        assert!(dropped.is_err());

        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "started get_user",
                "get_user connect",
                "started list_users",
                "list_users 401",
                "started get_database",
                "get_database cancelled",
            ]
        );
    }

    #[test]
    fn users_deserialize_leniently() {
        let users: Vec<User> = serde_json::from_str(
            r#"[{"uid": 1, "name": "a", "email": "a@x", "role": "db_member", "password_issue_date": "2024-01-01T00:00:00Z", "extra": true},
                {"uid": 2}]"#,
        )
        .unwrap();
        assert_eq!(
            users[0].password_issue_date.as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            users[1],
            User {
                uid: 2,
                name: String::new(),
                email: String::new(),
                role: String::new(),
                password_issue_date: None
            }
        );
    }
}
