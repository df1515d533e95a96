//! A Redis Software REST API test server (HTTPS, Basic auth) for the password endpoints, which
//! applies every password change to a real redis-server through `ACL SETUSER`, and injects
//! faults on request. See `routes` for the endpoints and the `/test/` control calls.
//!
//! Deterministic error bodies: 401 and 403 are empty (except 401 `user_locked` while a login is
//! locked out); every other error is JSON `{"error_code": "...", "message": "..."}`.
mod faults;
mod model;
mod routes;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_rustls::TlsAcceptor;

pub use faults::{FaultKind, FaultRule, RequestRecord};
pub use model::LoginStatus;

use crate::redis_server::{RedisAdmin, RedisServer};

#[derive(Clone, Serialize, Deserialize)]
pub struct ApiServerConfig {
    /// The cluster administrator (role admin); not an ACL user on redis-server.
    pub admin: AdminLogin,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub databases: Vec<DatabaseConfig>,
    /// The redis-server the password changes are applied to, e.g. "127.0.0.1:6390".
    pub redis_addr: String,
    /// An ACL user of that redis-server allowed to run `ACL SETUSER`.
    pub redis_admin: RedisAdmin,
    #[serde(default)]
    pub password_complexity: bool,
    #[serde(default)]
    pub lockout: LockoutPolicy,
    #[serde(default)]
    pub tls: ServerTls,
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// The cluster's password expiration policy, in days (`password_expiration_duration`);
    /// 0: passwords never expire.
    #[serde(default)]
    pub password_expiration_days: u64,
    /// `password_issue_date` of users at start (RFC 3339), by user name (the admin by its
    /// email); now for the others.
    #[serde(default)]
    pub password_issue_dates: std::collections::BTreeMap<String, String>,
    /// What `GET /v1/nodes` says each node runs.
    #[serde(default = "default_software_version")]
    pub software_version: String,
}

impl ApiServerConfig {
    /// A cluster without users or databases yet, applying changes to `redis`.
    pub fn new(redis: &RedisServer, admin: AdminLogin) -> Self {
        ApiServerConfig {
            admin,
            users: Vec::new(),
            databases: Vec::new(),
            redis_addr: redis.addr(),
            redis_admin: redis.admin(),
            password_complexity: false,
            lockout: LockoutPolicy::default(),
            tls: ServerTls::default(),
            cluster_name: default_cluster_name(),
            password_expiration_days: 0,
            password_issue_dates: Default::default(),
            software_version: default_software_version(),
        }
    }
}

/// The certificate the server presents.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerTls {
    /// A fresh CA and a server certificate for 127.0.0.1 and localhost that it signs.
    #[default]
    GeneratedCa,
    /// This certificate (or chain, leaf first) and private key, PEM: e.g. one made by
    /// `openssl req -x509`, self-signed and CA:TRUE like Redis Software's default one.
    Pem { cert_pem: String, key_pem: String },
}

impl From<&crate::certs::CertifiedKey> for ServerTls {
    /// Presents `certificate`, e.g. one [`crate::certs::self_signed`] made with openssl.
    fn from(certificate: &crate::certs::CertifiedKey) -> Self {
        ServerTls::Pem {
            cert_pem: certificate.cert_pem.clone(),
            key_pem: certificate.key_pem.clone(),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct AdminLogin {
    pub email: String,
    pub password: String,
}

/// An internal user; created at start as the ACL user `name` with exactly `passwords`.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserConfig {
    pub uid: u64,
    pub name: String,
    pub email: String,
    #[serde(default = "default_role")]
    pub role: String,
    pub passwords: Vec<String>,
}

fn default_software_version() -> String {
    "7.8.4-95".to_owned()
}

/// What `GET /v1/cluster` says the cluster is called: its FQDN, on a real cluster.
fn default_cluster_name() -> String {
    "cluster.test".to_owned()
}

fn default_role() -> String {
    "db_member".to_owned()
}

/// A database; its `acl_user` (the `default` user: `AUTH <password>`) gets exactly `passwords`.
#[derive(Clone, Serialize, Deserialize)]
pub struct DatabaseConfig {
    pub uid: u64,
    pub name: String,
    #[serde(default = "default_acl_user")]
    pub acl_user: String,
    pub passwords: Vec<String>,
}

fn default_acl_user() -> String {
    "default".to_owned()
}

/// `max_failures` failed logins within `window_ms` lock the login for `duration_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window_ms: u64,
    pub duration_ms: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window_ms: 15 * 60_000,
            duration_ms: 30 * 60_000,
        }
    }
}

/// A running server; clones share it, and the last one dropped stops it.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
    url: String,
    ca_pem: String,
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    config: ApiServerConfig,
    model: tokio::sync::Mutex<model::Model>,
    logins: Mutex<model::Logins>,
    faults: Mutex<Vec<FaultRule>>,
    requests: Mutex<Vec<RequestRecord>>,
    /// /v1 requests being handled now, and the most at once since start or `reset_peak`.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// When the server started (RFC 3339): the admin's `password_issue_date` by default.
    started: String,
}

/// Counts one /v1 request as in flight from the moment its head is read until its response
/// is handed back (or the client goes away), so the peak is what a client-side cap allows.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ApiServer {
    pub async fn start(config: ApiServerConfig) -> anyhow::Result<ApiServer> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(
        config: ApiServerConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<ApiServer> {
        let model = model::Model::create(&config).await?;
        let (tls, ca_pem) = tls_config(&config.tls)?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let url = format!("https://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            model: tokio::sync::Mutex::new(model),
            logins: Mutex::default(),
            faults: Mutex::default(),
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            started: model::now_rfc3339(),
            config,
        });
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            inner.clone(),
        ));
        Ok(ApiServer {
            inner,
            url,
            ca_pem,
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// "https://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// What a user puts in caSecret: the PEM of the CA that signed the server certificate
    /// (for 127.0.0.1 and localhost) with [`ServerTls::GeneratedCa`], the server's certificate
    /// itself with [`ServerTls::Pem`].
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// A client that trusts only this server's CA. WebPKI refuses a CA:TRUE certificate as a
    /// server's, so with [`ServerTls::Pem`] this works for a CA-signed certificate only.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?)
            .build()?)
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.inner.requests.lock().unwrap().clear();
    }

    /// /v1 requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The most /v1 requests handled at once since the server started or [`Self::reset_peak`].
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Starts a new peak from the requests in flight now.
    pub fn reset_peak(&self) {
        let inner = &self.inner;
        inner
            .peak_in_flight
            .store(inner.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub fn inject(&self, rule: FaultRule) {
        self.inner.faults.lock().unwrap().push(rule);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.lock().unwrap().clear();
    }

    /// Failed logins of `login` (email or name) within the lockout window.
    pub fn failed_logins(&self, login: &str) -> u32 {
        self.inner.login_status(login).failed_logins
    }

    pub fn is_locked(&self, login: &str) -> bool {
        self.inner.login_status(login).locked
    }
}

/// The server's TLS configuration, and what a client must trust (see [`ApiServer::ca_pem`]).
fn tls_config(tls: &ServerTls) -> anyhow::Result<(rustls::ServerConfig, String)> {
    let (chain, key, trusted_pem) = match tls {
        ServerTls::GeneratedCa => generated_chain()?,
        ServerTls::Pem { cert_pem, key_pem } => {
            let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("parsing the certificate PEM")?;
            anyhow::ensure!(!chain.is_empty(), "no certificate in the certificate PEM");
            let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .context("parsing the key PEM")?
                .context("no private key in the key PEM")?;
            (chain, key, cert_pem.clone())
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, trusted_pem))
}

/// A CA and a server certificate for 127.0.0.1 and localhost that it signs: the chain, the
/// server key and the CA's PEM.
fn generated_chain()
-> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "redis-software-api-server test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca)?;
    Ok((
        vec![cert.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ca.pem(),
    ))
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, inner: Arc<Inner>) {
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
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => return tracing::debug!("TLS handshake failed: {e}"),
            };
            let service = service_fn(move |req: Request<Incoming>| serve(inner.clone(), req));
            // A service error makes hyper close the connection without a response: that is how
            // the drop faults work.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

async fn serve(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if req.uri().path().starts_with("/test/") {
        return Ok(routes::control(&inner, req).await);
    }
    let gauge = inner.clone();
    let _in_flight = InFlight::enter(&gauge);
    faults::serve_v1(inner, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_server::RedisServer;

    #[tokio::test]
    async fn the_gauge_counts_v1_requests_in_flight_and_keeps_the_peak() {
        let redis = RedisServer::start().await.expect("redis-server starts");
        let admin = AdminLogin {
            email: "admin@example.com".into(),
            password: "Admin-pass-1".into(),
        };
        let api = ApiServer::start(ApiServerConfig::new(&redis, admin))
            .await
            .expect("API server starts");
        let http = api.client().expect("client");
        assert_eq!((api.in_flight(), api.peak_in_flight()), (0, 0));

        api.inject(FaultRule::delay(300, 3));
        let get = |path: &str| {
            http.get(format!("{}{path}", api.url()))
                .basic_auth("admin@example.com", Some("Admin-pass-1"))
                .send()
        };
        let (a, b, c) = tokio::join!(get("/v1/users"), get("/v1/users"), get("/v1/bdbs"));
        for response in [a, b, c] {
            assert_eq!(response.expect("a response").status(), 200);
        }
        // Control calls are not counted.
        let faults = http.get(format!("{}/test/faults", api.url())).send().await;
        assert_eq!(faults.expect("a response").status(), 200);
        assert_eq!((api.in_flight(), api.peak_in_flight()), (0, 3));

        api.reset_peak();
        assert_eq!(api.peak_in_flight(), 0);
        get("/v1/users").await.expect("a response");
        assert_eq!(api.peak_in_flight(), 1);
    }
}
