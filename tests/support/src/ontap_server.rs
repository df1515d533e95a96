//! A NetApp ONTAP REST API test server for account passwords: HTTPS (or plain HTTP) with Basic
//! auth checked against each account's current password, the cluster's password policy with
//! ONTAP's error codes, lockout after failed logins, and fault injection. See `routes` for the
//! endpoints and the `/test/` control calls.
//!
//! Every error body has ONTAP's shape `{"error": {"message", "code", "target"?, "arguments"?}}`;
//! a policy error carries the number the policy asks for as its first argument.
//!
//! A Basic-auth login names a cluster-scoped account, or else the only SVM-scoped account of
//! that name (a real cluster tells them apart by the management interface logged in to).
mod model;
mod routes;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

pub use crate::api_server::{FaultKind, FaultRule, RequestRecord};

use crate::certs;

#[derive(Clone, Serialize, Deserialize)]
pub struct OntapServerConfig {
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Also the owner uuid of cluster-scoped accounts (the admin SVM's, on a real cluster).
    #[serde(default = "default_cluster_uuid")]
    pub cluster_uuid: String,
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub policy: PasswordPolicy,
    #[serde(default)]
    pub lockout: LockoutPolicy,
    #[serde(default)]
    pub tls: OntapTls,
}

impl OntapServerConfig {
    pub fn new(accounts: Vec<AccountConfig>) -> Self {
        OntapServerConfig {
            cluster_name: default_cluster_name(),
            cluster_uuid: default_cluster_uuid(),
            accounts,
            policy: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            tls: OntapTls::default(),
        }
    }
}

fn default_cluster_name() -> String {
    "cluster1".to_owned()
}

fn default_cluster_uuid() -> String {
    "6b3c0f2e-8d7a-11ee-9c4e-005056bb1a2f".to_owned()
}

/// An account with its password at start; `owner` absent means cluster-scoped.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccountConfig {
    pub name: String,
    #[serde(default)]
    pub owner: Option<Svm>,
    /// `admin` on a cluster-scoped account may change every account's password.
    pub role: String,
    pub password: String,
}

impl AccountConfig {
    pub fn cluster(name: &str, role: &str, password: &str) -> Self {
        AccountConfig {
            name: name.to_owned(),
            owner: None,
            role: role.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn svm(svm: &Svm, name: &str, role: &str, password: &str) -> Self {
        AccountConfig {
            owner: Some(svm.clone()),
            ..Self::cluster(name, role, password)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Svm {
    pub name: String,
    pub uuid: String,
}

/// The cluster's password rules (`security login role config`). A password longer than 128
/// characters is always refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasswordPolicy {
    pub min_length: usize,
    /// Both letters and digits.
    pub alphanumeric: bool,
    pub min_special: usize,
    /// A new password must differ from this many most recent ones, the current one included.
    pub history: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 8,
            alphanumeric: true,
            min_special: 0,
            history: 6,
        }
    }
}

/// `max_failures` failed logins in a row lock an account for `duration_ms`; every login of a
/// locked account is refused, with its right password too.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub duration_ms: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            duration_ms: 60 * 60_000,
        }
    }
}

/// How the server listens.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OntapTls {
    /// HTTPS with a self-signed certificate made by `openssl req -x509` (CA:TRUE) for the
    /// cluster name, localhost and 127.0.0.1, like the one a cluster makes for itself.
    #[default]
    SelfSigned,
    /// HTTPS with this certificate (or chain, leaf first) and private key, PEM.
    Pem { cert_pem: String, key_pem: String },
    /// Plain HTTP.
    PlainHttp,
}

/// A running server; clones share it, and the last one dropped stops it.
#[derive(Clone)]
pub struct OntapServer {
    inner: Arc<Inner>,
    base_url: String,
    ca_pem: Option<String>,
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    model: Mutex<model::Model>,
    faults: Mutex<Vec<FaultRule>>,
    requests: Mutex<Vec<RequestRecord>>,
}

impl OntapServer {
    pub async fn start(config: OntapServerConfig) -> anyhow::Result<OntapServer> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(
        config: OntapServerConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<OntapServer> {
        let model = model::Model::new(&config)?;
        let tls = tls_config(&config)?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            model: Mutex::new(model),
            faults: Mutex::default(),
            requests: Mutex::default(),
        });
        let (acceptor, ca_pem) = tls.unzip();
        let task = tokio::spawn(accept_loop(listener, acceptor, inner.clone()));
        Ok(OntapServer {
            inner,
            base_url,
            ca_pem,
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// "https://127.0.0.1:PORT" (or http with [`OntapTls::PlainHttp`]).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The certificate the server presents, which a client pins; `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Whether `password` is the current password of the account `login` names. Neither
    /// counts as a login nor looks at lockouts, so tests can ask freely.
    pub fn login_works(&self, login: &str, password: &str) -> bool {
        self.inner
            .model
            .lock()
            .unwrap()
            .password_is(login, password)
    }

    /// Failed logins in a row of the account `login` names.
    pub fn failed_logins(&self, login: &str) -> u32 {
        self.inner.model.lock().unwrap().status(login).failed_logins
    }

    pub fn is_locked(&self, login: &str) -> bool {
        self.inner.model.lock().unwrap().status(login).locked
    }

    /// Applies to every password change from now on.
    pub fn set_policy(&self, policy: PasswordPolicy) {
        self.inner.model.lock().unwrap().policy = policy;
    }

    pub fn inject(&self, rule: FaultRule) {
        self.inner.faults.lock().unwrap().push(rule);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.lock().unwrap().clear();
    }

    /// The /api requests so far, without bodies or passwords.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.inner.requests.lock().unwrap().clear();
    }
}

/// The TLS acceptor and the certificate PEM a client pins, unless plain HTTP.
fn tls_config(config: &OntapServerConfig) -> anyhow::Result<Option<(TlsAcceptor, String)>> {
    let (cert_pem, key_pem) = match &config.tls {
        OntapTls::PlainHttp => return Ok(None),
        OntapTls::Pem { cert_pem, key_pem } => (cert_pem.clone(), key_pem.clone()),
        OntapTls::SelfSigned => {
            let dns = format!("DNS:{}", config.cluster_name);
            let made = certs::self_signed(
                &config.cluster_name,
                &[&dns, "DNS:localhost", "IP:127.0.0.1"],
            )?;
            (made.cert_pem, made.key_pem)
        }
    };
    let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the certificate PEM")?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in the certificate PEM");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .context("parsing the key PEM")?
        .context("no private key in the key PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some((TlsAcceptor::from(Arc::new(server)), cert_pem)))
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, inner: Arc<Inner>) {
    // Owning the connection tasks here aborts them all when the server stops.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let (acceptor, inner) = (acceptor.clone(), inner.clone());
        connections.spawn(async move {
            match acceptor {
                None => serve_connection(stream, inner).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => serve_connection(tls, inner).await,
                    Err(e) => tracing::debug!("TLS handshake failed: {e}"),
                },
            }
        });
    }
}

async fn serve_connection(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    inner: Arc<Inner>,
) {
    let service = service_fn(move |req: Request<Incoming>| serve(inner.clone(), req));
    // A service error makes hyper close the connection without a response: that is how the
    // drop faults work.
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::debug!("connection ended: {e}");
    }
}

type Resp = Response<Full<Bytes>>;

async fn serve(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Resp, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts.uri.path().to_owned();
    if path.starts_with("/test/") {
        return Ok(routes::control(&inner, &parts.method, &path, &body));
    }

    let fault = take_fault(&inner, &parts.method, &path);
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        status: None,
        dropped: false,
        login: basic_auth(&parts.headers).map(|(login, _)| login),
        fault: fault.as_ref().map(|f| f.kind),
    };
    let log = |record: RequestRecord| {
        let RequestRecord {
            method,
            path,
            status,
            login,
            fault,
            ..
        } = &record;
        tracing::info!(method, path, status, login, ?fault, "request");
        inner.requests.lock().unwrap().push(record);
    };
    let dropped = || std::io::Error::other("connection dropped by fault injection");

    match fault.as_ref().map(|f| (f.kind, f.status, f.millis)) {
        Some((FaultKind::Status, status, _)) => {
            let status = StatusCode::from_u16(status.unwrap_or(503))
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            record.status = Some(status.as_u16());
            log(record);
            let message = "fault injected by the test server";
            return Ok(routes::error(status, "8", message, None, &[]));
        }
        Some((FaultKind::Drop, ..)) => {
            record.dropped = true;
            log(record);
            return Err(dropped());
        }
        // A task of its own, so that a client that gives up does not stop the change.
        Some((FaultKind::Delay, _, millis)) => {
            let handler = inner.clone();
            let response = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(millis.unwrap_or(0))).await;
                routes::handle(&handler, &parts.method, &path, &parts.headers, &body)
            })
            .await
            .map_err(std::io::Error::other)?;
            record.status = Some(response.status().as_u16());
            log(record);
            return Ok(response);
        }
        _ => {}
    }
    let response = routes::handle(&inner, &parts.method, &path, &parts.headers, &body);
    if record.fault == Some(FaultKind::DropAfterApply) {
        record.dropped = true;
        log(record);
        return Err(dropped());
    }
    record.status = Some(response.status().as_u16());
    log(record);
    Ok(response)
}

/// The Basic-auth login and password.
fn basic_auth(headers: &hyper::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (login, password) = decoded.split_once(':')?;
    Some((login.to_owned(), password.to_owned()))
}

/// Takes one use of the first rule matching the request.
fn take_fault(inner: &Inner, method: &hyper::Method, path: &str) -> Option<FaultRule> {
    let mut faults = inner.faults.lock().unwrap();
    let index = faults.iter().position(|rule| {
        rule.count > 0
            && rule
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && rule
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    })?;
    faults[index].count -= 1;
    let rule = faults[index].clone();
    if rule.count == 0 {
        faults.remove(index);
    }
    Some(rule)
}
