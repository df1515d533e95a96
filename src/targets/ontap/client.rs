//! Client for the NetApp ONTAP REST API: changing an account's password
//! (`POST /api/security/authentication/password`) and asking the cluster who it is.
//!
//! ONTAP keeps one password per account. Both a cluster administrator and the account itself
//! (self-service, logged in with its current password) can change it; either is a [`Login`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;
use url::Url;

use crate::rotation::CallFailure;
use crate::targets::http::{self, TransportFailure, opt};
use crate::targets::{Observed, RequestObserver};
use crate::tls::PresentedCertificate;

/// The `target` label of this client's requests.
pub const TARGET: &str = "ontap";

const MAX_ARGUMENTS: usize = 4;
const PASSWORD_PATH: &[&str] = &["api", "security", "authentication", "password"];
const CLUSTER_PATH: &[&str] = &["api", "cluster"];

#[derive(Clone)]
pub struct OntapConfig {
    pub url: Url,
    /// What the cluster's certificate must be signed by or pinned as (PEM); required for https.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the server certificate must be valid for, instead of the URL's host.
    pub server_name: Option<String>,
    pub insecure_http: bool,
    /// For connecting and for each whole request.
    pub timeout: Duration,
}

impl OntapConfig {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            ca_pem: None,
            server_name: None,
            insecure_http: false,
            timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for OntapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OntapConfig")
            .field("url", &self.url.as_str())
            .field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len))
            .field("server_name", &self.server_name)
            .field("insecure_http", &self.insecure_http)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The account a request logs in as (Basic auth).
#[derive(Clone, Debug)]
pub struct Login {
    pub username: String,
    pub password: SecretString,
}

impl Login {
    pub fn new(username: impl Into<String>, password: SecretString) -> Self {
        Self {
            username: username.into(),
            password,
        }
    }
}

/// The account whose password changes: cluster-scoped, or owned by the SVM named `owner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRef {
    pub name: String,
    pub owner: Option<String>,
}

impl AccountRef {
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            owner: None,
        }
    }

    pub fn svm(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            owner: Some(owner.into()),
        }
    }
}

/// What the cluster says about itself: the same through any of its addresses.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub uuid: String,
    #[serde(default)]
    pub version: Option<ClusterVersion>,
}

/// `version` of `GET /api/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterVersion {
    /// e.g. `NetApp Release 9.15.1: Wed Jun 26 2024`.
    pub full: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ChangePassword,
    GetCluster,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChangePassword => "change_password",
            Self::GetCluster => "get_cluster",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The password rules behind ONTAP's documented error codes of a password change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRefusal {
    /// 7077918
    ContainsUsername,
    /// 7077919
    TooShort,
    /// 7077920
    LettersAndDigits,
    /// 7077921
    SpecialCharacters,
    /// 7077924
    RecentlyUsed,
    /// 7077925
    SameAsOld,
    /// 7077940
    TooLong,
    /// 7077941
    CompositionTooLong,
}

impl PolicyRefusal {
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "7077918" => Self::ContainsUsername,
            "7077919" => Self::TooShort,
            "7077920" => Self::LettersAndDigits,
            "7077921" => Self::SpecialCharacters,
            "7077924" => Self::RecentlyUsed,
            "7077925" => Self::SameAsOld,
            "7077940" => Self::TooLong,
            "7077941" => Self::CompositionTooLong,
            _ => return None,
        })
    }

    /// What the cluster wants, in plain words; `n` is the number the error names, if any.
    fn reason(self, n: Option<u32>) -> String {
        let policy = "the cluster's password policy";
        match (self, n) {
            (Self::ContainsUsername, _) => {
                format!("{policy} forbids a password that contains the account name")
            }
            (Self::TooShort, Some(n)) => format!("{policy} requires at least {n} characters"),
            (Self::TooShort, None) => format!("{policy} requires a longer password"),
            (Self::LettersAndDigits, _) => format!("{policy} requires both letters and digits"),
            (Self::SpecialCharacters, Some(n)) => {
                format!("{policy} requires at least {n} special characters")
            }
            (Self::SpecialCharacters, None) => {
                format!("{policy} requires more special characters")
            }
            (Self::RecentlyUsed, Some(n)) => {
                format!("{policy} forbids reusing any of the last {n} passwords")
            }
            (Self::RecentlyUsed, None) => format!("{policy} forbids reusing a recent password"),
            (Self::SameAsOld, _) => "the new password is the account's current password".into(),
            (Self::TooLong, _) => "ONTAP accepts passwords of at most 128 characters".into(),
            (Self::CompositionTooLong, _) => format!(
                "{policy} asks for more characters than the 128 a password may have; the \
                 policy must be fixed on the cluster"
            ),
        }
    }
}

/// Every message, argument and detail is scrubbed of the passwords sent with the request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OntapError {
    #[error(
        "{operation}: HTTP {status}{}{}",
        opt(" code ", code),
        opt(": ", message)
    )]
    Status {
        operation: Operation,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        target: Option<String>,
        arguments: Vec<String>,
    },
    #[error("{operation}: timed out")]
    Timeout { operation: Operation },
    #[error("{operation}: connection failed: {detail}")]
    Connect {
        operation: Operation,
        detail: String,
    },
    /// The server's certificate is neither pinned in nor signed by the configured PEM, or
    /// not valid for the name checked; `detail` says why and what the server presented.
    #[error("{operation}: TLS certificate refused: {detail}")]
    TlsUntrusted {
        operation: Operation,
        detail: String,
    },
    #[error("invalid ONTAP client configuration: {0}")]
    InvalidConfig(String),
    #[error("{operation}: unexpected response body: {detail}")]
    Decode {
        operation: Operation,
        detail: String,
    },
}

impl OntapError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// ONTAP's error code, e.g. "7077921" or "4".
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub fn refusal(&self) -> Option<PolicyRefusal> {
        self.code().and_then(PolicyRefusal::from_code)
    }

    /// For a refused password, what the cluster's policy wants, in plain words.
    pub fn reason(&self) -> Option<String> {
        let Self::Status { arguments, .. } = self else {
            return None;
        };
        let n = arguments.iter().find_map(|a| a.trim().parse().ok());
        self.refusal().map(|refusal| refusal.reason(n))
    }

    /// A short, bounded label, e.g. for a Prometheus label value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { status, .. } => match status {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
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

/// What a failed call means for a rotation. A 401 is taken as the login refused; in
/// self-service that login is the account with its current password, which the caller knows.
pub fn classify(error: &OntapError) -> CallFailure {
    let detail = error.to_string();
    match error {
        OntapError::TlsUntrusted { detail, .. } => CallFailure::TlsUntrusted {
            detail: detail.clone(),
        },
        OntapError::Timeout { .. } | OntapError::Connect { .. } => {
            CallFailure::Transient { detail }
        }
        OntapError::Status { status, .. } => match (status, error.refusal()) {
            (500.., _) => CallFailure::Transient { detail },
            (_, Some(PolicyRefusal::SameAsOld)) => CallFailure::AlreadyPresent,
            (_, Some(PolicyRefusal::RecentlyUsed)) => CallFailure::Other {
                detail: error.reason().unwrap_or(detail),
            },
            (_, Some(_)) => CallFailure::NotComplex {
                detail: error.reason().unwrap_or(detail),
            },
            (401, None) => CallFailure::AdminUnauthorized { detail },
            (403, None) => CallFailure::Forbidden { detail },
            (404, None) => CallFailure::NotFound { detail },
            _ => CallFailure::Other { detail },
        },
        OntapError::InvalidConfig(_) | OntapError::Decode { .. } => CallFailure::Other { detail },
    }
}

#[derive(Debug, Clone)]
pub struct OntapClient {
    http: reqwest::Client,
    url: Url,
    observer: Option<Arc<dyn RequestObserver>>,
    presented: PresentedCertificate,
}

impl OntapClient {
    pub fn new(config: OntapConfig) -> Result<Self, OntapError> {
        let presented = PresentedCertificate::default();
        let http = http::client(&http::Endpoint {
            url: &config.url,
            ca_pem: config.ca_pem.as_deref(),
            server_name: config.server_name.as_deref(),
            insecure_http: config.insecure_http,
            connect_timeout: config.timeout,
            request_timeout: config.timeout,
            presented: presented.clone(),
        })
        .map_err(OntapError::InvalidConfig)?;
        Ok(Self {
            http,
            url: config.url,
            observer: None,
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

    /// Sets `account`'s password to `new`. `login` is a cluster administrator, or the account
    /// itself with its current password.
    pub async fn change_password(
        &self,
        login: &Login,
        account: &AccountRef,
        new: &SecretString,
    ) -> Result<(), OntapError> {
        let body = password_body(account, new);
        self.send(Operation::ChangePassword, login, Some(body), &[new])
            .await
            .map(drop)
    }

    /// `GET /api/cluster`: any account that may log in can read it.
    pub async fn cluster(&self, login: &Login) -> Result<ClusterInfo, OntapError> {
        let operation = Operation::GetCluster;
        let bytes = self.send(operation, login, None, &[]).await?;
        serde_json::from_slice(&bytes).map_err(|e| OntapError::Decode {
            operation,
            detail: http::scrub(&e.to_string(), [&login.password]),
        })
    }

    /// Sends one request and returns the body of a 2xx response.
    async fn send(
        &self,
        operation: Operation,
        login: &Login,
        body: Option<Value>,
        secrets: &[&SecretString],
    ) -> Result<Vec<u8>, OntapError> {
        let (method, path) = match operation {
            Operation::ChangePassword => (Method::POST, PASSWORD_PATH),
            Operation::GetCluster => (Method::GET, CLUSTER_PATH),
        };
        let mut url = self.url.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(path);
        let span = tracing::debug_span!(
            "ontap_request",
            operation = operation.as_str(),
            method = %method,
            path = url.path(),
            status = tracing::field::Empty,
        );
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(&login.username, Some(login.password.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &body {
            request = request.json(body);
        }
        let mut observed = Observed::start(self.observer.as_deref(), TARGET, operation.as_str());
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        }
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        let secrets = secrets.iter().copied().chain([&login.password]);
        match result {
            Ok((status, bytes)) => {
                span.record("status", status.as_u16());
                tracing::debug!("request finished");
                observed.status(status.as_str());
                if status.is_success() {
                    Ok(bytes.to_vec())
                } else {
                    Err(status_error(operation, status, &bytes, secrets))
                }
            }
            Err(e) => {
                let error = transport_error(operation, &e, secrets);
                tracing::debug!(error = %error, "request failed");
                observed.status(error.kind());
                Err(error)
            }
        }
    }
}

fn password_body(account: &AccountRef, new: &SecretString) -> Value {
    let mut body = json!({"name": account.name, "password": new.expose_secret()});
    if let Some(owner) = &account.owner {
        body["owner"] = json!({"name": owner});
    }
    body
}

fn status_error<'a>(
    operation: Operation,
    status: StatusCode,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'a SecretString> + Clone,
) -> OntapError {
    let parsed = parse_error_body(body);
    let clean = |s: String| http::server_text(&s, secrets.clone());
    OntapError::Status {
        operation,
        status: status.as_u16(),
        code: parsed.code.map(clean),
        message: parsed.message.map(clean),
        target: parsed.target.map(clean),
        arguments: parsed.arguments.into_iter().map(clean).collect(),
    }
}

fn transport_error<'a>(
    operation: Operation,
    error: &reqwest::Error,
    secrets: impl IntoIterator<Item = &'a SecretString>,
) -> OntapError {
    match http::transport_failure(error, secrets) {
        TransportFailure::Timeout => OntapError::Timeout { operation },
        TransportFailure::TlsUntrusted(detail) => OntapError::TlsUntrusted { operation, detail },
        TransportFailure::Connect(detail) => OntapError::Connect { operation, detail },
    }
}

#[derive(Debug, Default, PartialEq)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    target: Option<String>,
    arguments: Vec<String>,
}

/// ONTAP's `{"error": {code, message, target, arguments: [{code, message}]}}`, parsed
/// leniently; any other non-empty body is the message.
fn parse_error_body(body: &[u8]) -> ErrorBody {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut object)) => {
            let error = object.remove("error").unwrap_or_default();
            ErrorBody {
                code: text(&error["code"]),
                message: text(&error["message"]),
                target: text(&error["target"]),
                arguments: error["arguments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| text(&a["message"]))
                    .take(MAX_ARGUMENTS)
                    .collect(),
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            ErrorBody {
                message: (!text.is_empty()).then_some(text),
                ..ErrorBody::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "Sup3r-\"Secret\"_pw";
    const LOGIN_PW: &str = "Adm1n-pass";

    fn secret(s: &str) -> SecretString {
        s.into()
    }

    fn refused(code: &str, arguments: &[&str]) -> OntapError {
        OntapError::Status {
            operation: Operation::ChangePassword,
            status: 400,
            code: Some(code.into()),
            message: None,
            target: Some("password".into()),
            arguments: arguments.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn error_bodies_are_parsed_leniently() {
        let parsed = |b: &str| parse_error_body(b.as_bytes());
        assert_eq!(
            parsed(
                r#"{"error": {"code": "7077921", "message": "too few", "target": "password",
                    "arguments": [{"code": "", "message": "3"}, {"message": 4}]}}"#
            ),
            ErrorBody {
                code: Some("7077921".into()),
                message: Some("too few".into()),
                target: Some("password".into()),
                arguments: vec!["3".into()],
            }
        );
        assert_eq!(
            parsed(r#"{"error": {"code": "4"}}"#).code.as_deref(),
            Some("4")
        );
        assert_eq!(parsed(r#"{"other": 1}"#), ErrorBody::default());
        assert_eq!(parsed("  \n"), ErrorBody::default());
        assert_eq!(
            parsed("<html>Bad Gateway</html>").message.as_deref(),
            Some("<html>Bad Gateway</html>")
        );
    }

    #[test]
    fn messages_and_arguments_are_scrubbed_then_truncated() {
        let (new, login) = (secret(PW), secret(LOGIN_PW));
        let body = json!({"error": {
            "code": "7077918",
            "message": format!("{PW} contains the name; {LOGIN_PW}"),
            "arguments": [{"message": PW}],
        }});
        let err = status_error(
            Operation::ChangePassword,
            StatusCode::BAD_REQUEST,
            body.to_string().as_bytes(),
            [&new, &login],
        );
        assert_eq!(
            err.to_string(),
            "change_password: HTTP 400 code 7077918: [redacted] contains the name; [redacted]"
        );
        let OntapError::Status { arguments, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(arguments, &["[redacted]"]);

        // As JSON escapes it, in a body that is not JSON.
        let raw = format!("refused {}", serde_json::to_string(PW).unwrap());
        let err = status_error(
            Operation::ChangePassword,
            StatusCode::BAD_GATEWAY,
            raw.as_bytes(),
            [&new],
        );
        assert_eq!(
            err.to_string(),
            "change_password: HTTP 502: refused \"[redacted]\""
        );

        let long = format!("{}{PW}", "a".repeat(http::MAX_MESSAGE_CHARS - 3));
        let err = status_error(
            Operation::GetCluster,
            StatusCode::BAD_GATEWAY,
            long.as_bytes(),
            [&new],
        );
        assert!(err.to_string().ends_with("aaa[re…"), "{err}");
    }

    #[test]
    fn every_policy_code_has_a_reason() {
        let reason = |code, arguments: &[&str]| refused(code, arguments).reason().unwrap();
        let policy = "the cluster's password policy";
        let cases = [
            (
                "7077918",
                &[][..],
                format!("{policy} forbids a password that contains the account name"),
            ),
            (
                "7077919",
                &["12"],
                format!("{policy} requires at least 12 characters"),
            ),
            (
                "7077919",
                &[],
                format!("{policy} requires a longer password"),
            ),
            (
                "7077920",
                &[],
                format!("{policy} requires both letters and digits"),
            ),
            (
                "7077921",
                &["3"],
                format!("{policy} requires at least 3 special characters"),
            ),
            (
                "7077921",
                &[],
                format!("{policy} requires more special characters"),
            ),
            (
                "7077924",
                &["6"],
                format!("{policy} forbids reusing any of the last 6 passwords"),
            ),
            (
                "7077924",
                &["x"],
                format!("{policy} forbids reusing a recent password"),
            ),
            (
                "7077925",
                &[],
                "the new password is the account's current password".into(),
            ),
            (
                "7077940",
                &["128"],
                "ONTAP accepts passwords of at most 128 characters".into(),
            ),
        ];
        for (code, arguments, expected) in cases {
            assert_eq!(reason(code, arguments), expected);
        }
        assert!(reason("7077941", &[]).contains("must be fixed on the cluster"));
        assert_eq!(refused("4", &[]).reason(), None);
        assert_eq!(
            OntapError::Timeout {
                operation: Operation::GetCluster
            }
            .reason(),
            None
        );
    }

    #[test]
    fn classification() {
        let status = |status: u16, code: Option<&str>| OntapError::Status {
            operation: Operation::ChangePassword,
            status,
            code: code.map(Into::into),
            message: None,
            target: None,
            arguments: Vec::new(),
        };
        let detail = |e: &OntapError| e.to_string();
        for code in [
            "7077918", "7077919", "7077920", "7077921", "7077940", "7077941",
        ] {
            let err = refused(code, &[]);
            assert_eq!(
                classify(&err),
                CallFailure::NotComplex {
                    detail: err.reason().unwrap()
                },
                "{code}"
            );
        }
        assert_eq!(
            classify(&refused("7077925", &[])),
            CallFailure::AlreadyPresent
        );
        assert_eq!(
            classify(&refused("7077924", &["6"])),
            CallFailure::Other {
                detail: "the cluster's password policy forbids reusing any of the last 6 \
                         passwords"
                    .into()
            }
        );
        let cases = [
            status(401, Some("6")),
            status(403, Some("6")),
            status(404, Some("4")),
            status(500, None),
            status(503, Some("8")),
            status(400, Some("262179")),
            OntapError::Timeout {
                operation: Operation::GetCluster,
            },
            OntapError::Connect {
                operation: Operation::GetCluster,
                detail: "refused".into(),
            },
            OntapError::TlsUntrusted {
                operation: Operation::GetCluster,
                detail: "expired".into(),
            },
        ];
        let expected = [
            CallFailure::AdminUnauthorized {
                detail: detail(&cases[0]),
            },
            CallFailure::Forbidden {
                detail: detail(&cases[1]),
            },
            CallFailure::NotFound {
                detail: detail(&cases[2]),
            },
            CallFailure::Transient {
                detail: detail(&cases[3]),
            },
            CallFailure::Transient {
                detail: detail(&cases[4]),
            },
            CallFailure::Other {
                detail: detail(&cases[5]),
            },
            CallFailure::Transient {
                detail: detail(&cases[6]),
            },
            CallFailure::Transient {
                detail: detail(&cases[7]),
            },
            CallFailure::TlsUntrusted {
                detail: "expired".into(),
            },
        ];
        for (case, expected) in cases.iter().zip(expected) {
            assert_eq!(classify(case), expected, "{case:?}");
        }
    }

    #[test]
    fn nothing_formats_a_password() {
        let mut config = OntapConfig::new("https://ontap:443".parse().unwrap());
        config.ca_pem = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        let login = Login::new("admin", secret(LOGIN_PW));
        let texts = [
            format!("{config:?}"),
            format!("{login:?}"),
            format!("{:?}", secret(PW)),
        ];
        for t in texts {
            assert!(!t.contains(PW) && !t.contains(LOGIN_PW), "{t}");
        }
    }

    #[test]
    fn request_bodies() {
        let new = secret("New-pass-1");
        assert_eq!(
            password_body(&AccountRef::cluster("app"), &new),
            json!({"name": "app", "password": "New-pass-1"})
        );
        assert_eq!(
            password_body(&AccountRef::svm("svm1", "vsadmin"), &new),
            json!({"name": "vsadmin", "owner": {"name": "svm1"}, "password": "New-pass-1"})
        );
    }

    #[test]
    fn insecure_configurations_are_refused() {
        let new = |url: &str, insecure_http| {
            let mut config = OntapConfig::new(url.parse().unwrap());
            config.insecure_http = insecure_http;
            OntapClient::new(config).map(drop)
        };
        let refused = |r: Result<(), OntapError>| match r {
            Err(OntapError::InvalidConfig(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(new("http://ontap", false)).contains("insecureHttp"));
        assert!(refused(new("https://ontap", true)).contains("caSecret is required"));
        assert!(refused(new("https://u:p@ontap", false)).contains("credentials"));
        assert!(refused(new("ftp://ontap", true)).contains("scheme"));
        assert!(new("http://ontap", true).is_ok());
    }
}
