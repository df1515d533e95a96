//! An admin client for the ACL users of open-source Redis and Valkey, across every node of a
//! deployment. ACLs are per node (neither replication nor the cluster bus copies them), so each
//! change goes to every node and is persisted there: `ACL SAVE` when the node has an ACL file,
//! else `CONFIG REWRITE`.
//!
//! The add-then-delete protocol maps onto native multi-password users: [`AclAdmin::add_password`]
//! is `ACL SETUSER user >new` and [`AclAdmin::remove_password`] is `ACL SETUSER user resetpass
//! >new`, the latter only once every node is reachable.
//!
//! Not the `redis` crate (a dev-dependency, for the tests' own checks): commands here carry
//! passwords, and this client marks which do, so that no error, log line or Debug output of a
//! command can echo one; its connections use the operator's own rustls trust and timeouts.
//!
//! The admin logs in with `AUTH <username> <password>` and needs exactly these permissions
//! ([`ADMIN_ACL_RULES`]):
//!
//! ```text
//! ACL SETUSER rotator-admin reset on >ADMIN-PASSWORD +acl|getuser +acl|setuser +acl|save +config|get +config|rewrite +info +cluster|shards
//! ```
//!
//! `+acl|setuser` lets its holder grant itself anything, so the admin is as powerful as any
//! user with `+@all`: keep its password as safe.
//!
//! Discovery follows `INFO replication` (a replica's primary, a primary's connected replicas)
//! and, in cluster mode, `CLUSTER SHARDS`, which lists failed nodes too. A primary does not list
//! a replica that is disconnected, so outside cluster mode list every node in `endpoints` when
//! a replica that is down must make a change fail rather than go unnoticed.
//!
//! Passwords never appear in errors or Debug output: an error reply to a command that carried
//! one keeps only its first word (`ERR`, `NOPERM`, ...).

mod conn;
mod resp;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::rotation::CallFailure;
use conn::{Conn, Secret};
use resp::Value;

/// The permissions the admin user needs, after `reset on >password`.
pub const ADMIN_ACL_RULES: &str =
    "+acl|getuser +acl|setuser +acl|save +config|get +config|rewrite +info +cluster|shards";

/// Where and how to reach the deployment.
#[derive(Clone, Debug)]
pub struct AclAdminConfig {
    /// `host:port` (`[v6]:port` for IPv6) of one or more nodes.
    pub endpoints: Vec<String>,
    pub username: String,
    pub password: SecretString,
    pub tls: Option<AclTls>,
    /// Also reach the replicas, primaries and cluster nodes the endpoints know of.
    pub discover: bool,
    /// For each network step: connect, TLS handshake, and each command.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct AclTls {
    /// Trusted and pinned certificates, as [`crate::tls::client_config`] takes them.
    pub ca_pem: Vec<u8>,
    pub server_name: Option<String>,
}

impl fmt::Debug for AclTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// One redis-server process, as it was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `host:port` the node was reached at.
    pub addr: String,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The nodes that were changed; 0 on a replay.
    pub nodes: usize,
    /// How the change survives a restart, on the weakest node.
    pub persistence: Persistence,
}

/// How a node keeps its ACLs across a restart; ordered from the weakest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Persistence {
    /// Neither worked: the change is lost when the node restarts.
    NotPersisted { why: String },
    /// `CONFIG REWRITE` wrote the users into the node's config file.
    ConfigRewrite,
    /// `ACL SAVE` wrote the node's ACL file.
    AclFile,
}

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{node}: connection failed: {detail}")]
    Connection { node: String, detail: String },
    #[error("{node}: {operation} timed out after {after:?}")]
    Timeout {
        node: String,
        operation: String,
        after: Duration,
    },
    #[error("{node}: untrusted TLS certificate: {detail}")]
    TlsUntrusted { node: String, detail: String },
    #[error("{node}: the admin login was refused ({code})")]
    AdminRefused { node: String, code: String },
    /// An error reply; `message` only for commands that carry no password.
    #[error("{node}: {command} failed: {}", message.as_deref().unwrap_or(code))]
    Server {
        node: String,
        command: String,
        code: String,
        message: Option<String>,
    },
    #[error("{node}: unexpected reply to {command}: {detail}")]
    Protocol {
        node: String,
        command: String,
        detail: String,
    },
    #[error("{node}: ACL user {user:?} does not exist")]
    UserNotFound { node: String, user: String },
    #[error("the password to remove is the one to keep")]
    LastPassword,
    #[error("the endpoints reach several deployments (primaries {0:?})")]
    SeveralDeployments(Vec<String>),
    /// Checked before any change: nothing was changed anywhere.
    #[error("nothing changed: {0}")]
    Unchanged(#[source] Box<AclError>),
    /// Applied on the nodes that could be reached, not on these.
    #[error("not applied on {}: {cause}", failed.join(", "))]
    Incomplete {
        failed: Vec<String>,
        #[source]
        cause: Box<AclError>,
    },
}

impl AclError {
    /// The node the error happened on, if one.
    pub fn node(&self) -> Option<&str> {
        match self {
            AclError::Connection { node, .. }
            | AclError::Timeout { node, .. }
            | AclError::TlsUntrusted { node, .. }
            | AclError::AdminRefused { node, .. }
            | AclError::Server { node, .. }
            | AclError::Protocol { node, .. }
            | AclError::UserNotFound { node, .. } => Some(node),
            AclError::Unchanged(cause) => cause.node(),
            AclError::Config(_)
            | AclError::LastPassword
            | AclError::SeveralDeployments(_)
            | AclError::Incomplete { .. } => None,
        }
    }
}

/// Maps an error onto the step machine's terms.
pub fn classify(error: &AclError) -> CallFailure {
    let detail = error.to_string();
    match error {
        AclError::Unchanged(cause) | AclError::Incomplete { cause, .. } => classify(cause),
        AclError::Connection { .. } | AclError::Timeout { .. } => CallFailure::Transient { detail },
        AclError::TlsUntrusted { detail, .. } => CallFailure::TlsUntrusted {
            detail: detail.clone(),
        },
        AclError::AdminRefused { .. } => CallFailure::AdminUnauthorized { detail },
        AclError::Server { code, .. } => match code.as_str() {
            "LOADING" | "TRYAGAIN" | "BUSY" | "CLUSTERDOWN" | "MASTERDOWN" => {
                CallFailure::Transient { detail }
            }
            "NOAUTH" | "WRONGPASS" => CallFailure::AdminUnauthorized { detail },
            "NOPERM" => CallFailure::Forbidden { detail },
            _ => CallFailure::Other { detail },
        },
        AclError::UserNotFound { .. } => CallFailure::NotFound { detail },
        AclError::LastPassword => CallFailure::LastPassword,
        AclError::Config(_) | AclError::Protocol { .. } | AclError::SeveralDeployments(_) => {
            CallFailure::Other { detail }
        }
    }
}

/// The client; clones share the TLS configuration.
#[derive(Clone)]
pub struct AclAdmin {
    inner: Arc<Inner>,
}

struct Inner {
    config: AclAdminConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    presented: crate::tls::PresentedCertificate,
}

impl fmt::Debug for AclAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.config.fmt(f)
    }
}

/// A node reached and logged in to, with what `INFO` says about it.
struct Reached {
    node: Node,
    conn: Conn,
    replid: String,
    /// Node ids of `CLUSTER SHARDS`, in cluster mode.
    cluster_ids: Vec<String>,
    /// What the node runs: `valkey <valkey_version>`, else `redis <redis_version>`.
    version: Option<String>,
}

/// See [`AclAdmin::identity`].
fn identity_of(survey: Survey) -> Result<String, AclError> {
    let cluster_ids: BTreeSet<&str> = survey
        .reached
        .iter()
        .flat_map(|r| r.cluster_ids.iter().map(String::as_str))
        .collect();
    if let Some(smallest) = cluster_ids.first() {
        return Ok(format!("cluster:{smallest}"));
    }
    let primaries: Vec<&Reached> = survey
        .reached
        .iter()
        .filter(|r| r.node.role == Role::Primary)
        .collect();
    match primaries.as_slice() {
        [primary] => Ok(format!("replication:{}", primary.replid)),
        [] => Err(survey.failed.into_iter().next().unwrap_or_else(|| {
            AclError::Config("no primary among the endpoints and their replicas".into())
        })),
        several => Err(AclError::SeveralDeployments(
            several.iter().map(|r| r.node.addr.clone()).collect(),
        )),
    }
}

/// Every node found: those reached, and the errors of those that could not be.
struct Survey {
    reached: Vec<Reached>,
    failed: Vec<AclError>,
}

impl AclAdmin {
    pub fn new(config: AclAdminConfig) -> Result<Self, AclError> {
        if config.endpoints.is_empty() {
            return Err(AclError::Config("no endpoint".into()));
        }
        if let Some(bad) = config.endpoints.iter().find(|e| !e.contains(':')) {
            return Err(AclError::Config(format!(
                "endpoint {bad:?} is not host:port"
            )));
        }
        let presented = crate::tls::PresentedCertificate::default();
        let tls = config
            .tls
            .as_ref()
            .map(|tls| {
                let mut client = crate::tls::client_config(
                    &tls.ca_pem,
                    tls.server_name.as_deref(),
                    presented.clone(),
                )
                .map_err(|e| AclError::Config(e.to_string()))?;
                // Redis speaks no ALPN protocol; offering h2 could make a proxy pick it.
                client.alpn_protocols.clear();
                Ok(Arc::new(client))
            })
            .transpose()?;
        Ok(AclAdmin {
            inner: Arc::new(Inner {
                config,
                tls,
                presented,
            }),
        })
    }

    /// Every node of the deployment; an error names the first node that cannot be reached.
    pub async fn nodes(&self) -> Result<Vec<Node>, AclError> {
        let survey = self.survey().await;
        if let Some(e) = survey.failed.into_iter().next() {
            return Err(e);
        }
        Ok(survey.reached.into_iter().map(|r| r.node).collect())
    }

    /// A stable name for the deployment, the same through any of its nodes:
    /// `cluster:<smallest node id>` in cluster mode, else `replication:<primary's replid>`.
    pub async fn identity(&self) -> Result<String, AclError> {
        identity_of(self.survey().await)
    }

    /// The deployment's identity, and the lowest version its nodes run (e.g. `valkey 8.1.1`).
    pub async fn describe(&self) -> Result<(String, Option<String>), AclError> {
        let survey = self.survey().await;
        let version = survey
            .reached
            .iter()
            .filter_map(|r| r.version.clone())
            .min();
        Ok((identity_of(survey)?, version))
    }

    /// When the certificate a node last presented expires; `None` without TLS.
    pub fn certificate_expires(&self) -> Option<jiff::Timestamp> {
        self.inner.presented.not_after()
    }

    /// The SHA-256 hex hashes of `user`'s passwords on `node`; `None` when there is no such user.
    pub async fn password_hashes(
        &self,
        node: &Node,
        user: &str,
    ) -> Result<Option<Vec<String>>, AclError> {
        let mut conn = self.connect(&node.addr).await?;
        hashes_on(&mut conn, user).await
    }

    /// Adds `new` to `user` on every node that does not hold it yet. Nodes that cannot be
    /// reached are named in an [`AclError::Incomplete`]; the others accept both passwords.
    pub async fn add_password(&self, user: &str, new: &SecretString) -> Result<Applied, AclError> {
        let new_hash = sha256_hex(new);
        self.apply_everywhere(user, |hashes| {
            (!hashes.contains(&new_hash)).then(|| vec![format!(">{}", new.expose_secret())])
        })
        .await
    }

    /// Removes `old` from `user` on every node, only once every node is reachable; otherwise
    /// nothing is removed anywhere ([`AclError::Unchanged`]). Every node ends holding exactly
    /// `keep`, the password the workloads hold, in one `ACL SETUSER` (`resetpass >keep`): one
    /// that lacks it (it restarted without persisting it) gets it back, and one that holds a
    /// password from before (it was down, and unlisted, during an earlier rotation) loses it.
    pub async fn remove_password(
        &self,
        user: &str,
        old: &SecretString,
        keep: &SecretString,
    ) -> Result<Applied, AclError> {
        let (old_hash, keep_hash) = (sha256_hex(old), sha256_hex(keep));
        if old_hash == keep_hash {
            return Err(AclError::LastPassword);
        }
        let survey = self.survey().await;
        let mut problems = survey.failed;
        let mut plan = Vec::new();
        for mut reached in survey.reached {
            match hashes_on(&mut reached.conn, user).await {
                Ok(None) => problems.push(AclError::UserNotFound {
                    node: reached.node.addr,
                    user: user.to_owned(),
                }),
                Ok(Some(hashes)) => {
                    let exact = hashes == [keep_hash.clone()];
                    let modifiers = ["resetpass".to_owned(), format!(">{}", keep.expose_secret())];
                    plan.push((reached, (!exact).then(|| modifiers.to_vec())));
                }
                Err(e) => problems.push(e),
            }
        }
        if let Some(first) = problems.into_iter().next() {
            return Err(AclError::Unchanged(Box::new(first)));
        }
        write(user, plan, Vec::new()).await
    }

    /// Makes `new` the only password of `user` on every node (`resetpass >new`): every other
    /// password stops working at once. Nodes whose only password is already `new` are skipped.
    pub async fn replace_passwords(
        &self,
        user: &str,
        new: &SecretString,
    ) -> Result<Applied, AclError> {
        let new_hash = sha256_hex(new);
        self.apply_everywhere(user, |hashes| {
            (hashes != [new_hash.clone()])
                .then(|| vec!["resetpass".to_owned(), format!(">{}", new.expose_secret())])
        })
        .await
    }

    /// Gives `password` back to each reachable node that lacks it, taking nothing away, and
    /// persists it there; the nodes that got it back. Nodes out of reach are left for the
    /// next look.
    pub async fn heal(&self, user: &str, password: &SecretString) -> Result<Vec<String>, AclError> {
        let hash = sha256_hex(password);
        let mut healed = Vec::new();
        for mut reached in self.survey().await.reached {
            let conn = &mut reached.conn;
            if hashes_on(conn, user)
                .await?
                .is_none_or(|hashes| hashes.contains(&hash))
            {
                continue;
            }
            let add = format!(">{}", password.expose_secret());
            let args = [
                b"ACL".as_slice(),
                b"SETUSER",
                user.as_bytes(),
                add.as_bytes(),
            ];
            conn.call(&args, Secret::Carried).await?;
            persist(conn).await?;
            healed.push(reached.node.addr);
        }
        Ok(healed)
    }

    /// Reads the user on every reachable node and applies the `ACL SETUSER` modifiers that
    /// `change` returns for its hashes (`None`: nothing to do there). Nodes that cannot be
    /// reached, or lack the user, are reported once the others are done.
    async fn apply_everywhere(
        &self,
        user: &str,
        change: impl Fn(&[String]) -> Option<Vec<String>>,
    ) -> Result<Applied, AclError> {
        let survey = self.survey().await;
        let mut failed = survey.failed;
        let mut plan = Vec::new();
        for mut reached in survey.reached {
            match hashes_on(&mut reached.conn, user).await {
                Ok(Some(hashes)) => {
                    let modifiers = change(&hashes);
                    plan.push((reached, modifiers));
                }
                Ok(None) => failed.push(AclError::UserNotFound {
                    node: reached.node.addr,
                    user: user.to_owned(),
                }),
                Err(e) => failed.push(e),
            }
        }
        write(user, plan, failed).await
    }

    async fn connect(&self, node: &str) -> Result<Conn, AclError> {
        let config = &self.inner.config;
        Conn::open(
            node,
            self.inner.tls.as_ref(),
            &config.username,
            &config.password,
            config.timeout,
        )
        .await
    }

    /// Reaches the endpoints and, when discovering, every node they lead to, breadth first.
    /// Two addresses of one process (same `run_id`) count once.
    async fn survey(&self) -> Survey {
        let config = &self.inner.config;
        let mut survey = Survey {
            reached: Vec::new(),
            failed: Vec::new(),
        };
        let mut tried = HashSet::new();
        let mut run_ids = HashSet::new();
        let mut next: Vec<String> = config.endpoints.clone();
        while !next.is_empty() {
            let batch: Vec<String> = next.drain(..).filter(|a| tried.insert(a.clone())).collect();
            let probes = join_all(batch.iter().map(|addr| self.probe(addr))).await;
            for probe in probes {
                match probe {
                    Ok((reached, run_id, neighbours)) => {
                        if run_ids.insert(run_id) {
                            if config.discover {
                                next.extend(neighbours);
                            }
                            survey.reached.push(reached);
                        }
                    }
                    Err(e) => survey.failed.push(e),
                }
            }
        }
        survey
    }

    /// Logs in to `addr` and reads what `INFO` (and `CLUSTER SHARDS`) say: the node, its
    /// `run_id`, and the addresses of the nodes it knows.
    async fn probe(&self, addr: &str) -> Result<(Reached, String, Vec<String>), AclError> {
        let mut conn = self.connect(addr).await?;
        let reply = conn
            .call(
                &[b"INFO", b"server", b"replication", b"cluster"],
                Secret::Absent,
            )
            .await?;
        let info = Info::parse(reply.text().unwrap_or_default());
        let protocol = |detail: &str| AclError::Protocol {
            node: addr.to_owned(),
            command: "INFO".into(),
            detail: detail.into(),
        };
        let run_id = info.get("run_id").ok_or_else(|| protocol("no run_id"))?;
        let role = match info.get("role") {
            Some("master") => Role::Primary,
            Some("slave") => Role::Replica,
            _ => return Err(protocol("no role master or slave")),
        };
        let mut neighbours = Vec::new();
        let mut cluster_ids = Vec::new();
        if info.get("cluster_enabled") == Some("1") {
            let shards = conn.call(&[b"CLUSTER", b"SHARDS"], Secret::Absent).await?;
            for node in cluster_nodes(&shards, self.inner.tls.is_some()).ok_or_else(|| {
                AclError::Protocol {
                    node: addr.to_owned(),
                    command: "CLUSTER SHARDS".into(),
                    detail: "not a list of shards with nodes".into(),
                }
            })? {
                cluster_ids.push(node.id);
                neighbours.extend(node.addr);
            }
        } else if role == Role::Replica {
            if let (Some(host), Some(port)) = (info.get("master_host"), info.get("master_port")) {
                neighbours.push(join_host_port(host, port));
            }
        } else {
            neighbours.extend(info.replicas());
        }
        let reached = Reached {
            node: Node {
                addr: addr.to_owned(),
                role,
            },
            conn,
            replid: info.get("master_replid").unwrap_or_default().to_owned(),
            cluster_ids,
            version: info
                .get("valkey_version")
                .map(|v| format!("valkey {v}"))
                .or_else(|| info.get("redis_version").map(|v| format!("redis {v}"))),
        };
        Ok((reached, run_id.to_owned(), neighbours))
    }
}

/// Runs `ACL SETUSER user <modifiers>` where there are modifiers, then persists every node,
/// changed or not: a replay after a crash between the change and its persistence persists it.
async fn write(
    user: &str,
    plan: Vec<(Reached, Option<Vec<String>>)>,
    mut failed: Vec<AclError>,
) -> Result<Applied, AclError> {
    let mut changed = 0;
    let mut persistence = Persistence::AclFile;
    for (mut reached, modifiers) in plan {
        let conn = &mut reached.conn;
        let result = async {
            if let Some(modifiers) = modifiers {
                let mut args = vec![b"ACL".as_slice(), b"SETUSER", user.as_bytes()];
                args.extend(modifiers.iter().map(|m| m.as_bytes()));
                conn.call(&args, Secret::Carried).await?;
                changed += 1;
            }
            persist(conn).await
        }
        .await;
        match result {
            Ok(persisted) => persistence = persistence.min(persisted),
            Err(e) => failed.push(e),
        }
    }
    let nodes: Vec<String> = failed
        .iter()
        .filter_map(|e| e.node().map(str::to_owned))
        .collect();
    match failed.into_iter().next() {
        None => Ok(Applied {
            nodes: changed,
            persistence,
        }),
        Some(cause) => Err(AclError::Incomplete {
            failed: nodes,
            cause: Box::new(cause),
        }),
    }
}

/// `ACL SAVE` when the node has an ACL file, else `CONFIG REWRITE`. A refusal is reported as
/// [`Persistence::NotPersisted`]; a lost connection is an error, as the outcome is unknown.
async fn persist(conn: &mut Conn) -> Result<Persistence, AclError> {
    let not_persisted = |result: Result<Value, AclError>, done: Persistence| match result {
        Ok(_) => Ok(done),
        Err(e @ AclError::Server { .. }) => Ok(Persistence::NotPersisted { why: e.to_string() }),
        Err(e) => Err(e),
    };
    let aclfile = match conn
        .call(&[b"CONFIG", b"GET", b"aclfile"], Secret::Absent)
        .await
    {
        Ok(reply) => reply
            .field("aclfile")
            .and_then(Value::text)
            .unwrap_or_default()
            .to_owned(),
        Err(e) => return not_persisted(Err(e), Persistence::AclFile),
    };
    if aclfile.is_empty() {
        let result = conn.call(&[b"CONFIG", b"REWRITE"], Secret::Absent).await;
        not_persisted(result, Persistence::ConfigRewrite)
    } else {
        let result = conn.call(&[b"ACL", b"SAVE"], Secret::Absent).await;
        not_persisted(result, Persistence::AclFile)
    }
}

/// `ACL GETUSER user`: the hashes of its passwords, or `None` when there is no such user.
async fn hashes_on(conn: &mut Conn, user: &str) -> Result<Option<Vec<String>>, AclError> {
    let reply = conn
        .call(&[b"ACL", b"GETUSER", user.as_bytes()], Secret::Absent)
        .await?;
    if reply == Value::Null {
        return Ok(None);
    }
    let hashes = match reply.field("passwords") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.text().map(str::to_owned))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    hashes.map(Some).ok_or_else(|| AclError::Protocol {
        node: conn.node().to_owned(),
        command: "ACL GETUSER".into(),
        detail: "no list of passwords".into(),
    })
}

/// The lowercase hex SHA-256 of a password, as `ACL GETUSER` lists it.
fn sha256_hex(password: &SecretString) -> String {
    Sha256::digest(password.expose_secret().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `key:value` lines of an `INFO` reply.
struct Info<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Info<'a> {
    fn parse(text: &'a str) -> Self {
        Info(
            text.lines()
                .filter_map(|line| line.trim_end().split_once(':'))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// `slaveN:ip=...,port=...,state=...` of a primary.
    fn replicas(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("slave")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, v)| {
                let field = |name: &str| {
                    v.split(',')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                };
                Some(join_host_port(field("ip")?, field("port")?))
            })
            .collect()
    }
}

struct ClusterNode {
    id: String,
    /// `None` for a node without a known address.
    addr: Option<String>,
}

/// The nodes of a `CLUSTER SHARDS` reply, addressed by `endpoint` (else `ip`) and by
/// `tls-port` when connecting with TLS (else `port`).
fn cluster_nodes(shards: &Value, tls: bool) -> Option<Vec<ClusterNode>> {
    let Value::Array(shards) = shards else {
        return None;
    };
    let mut nodes = Vec::new();
    for shard in shards {
        let Some(Value::Array(members)) = shard.field("nodes") else {
            return None;
        };
        for member in members {
            let id = member.field("id")?.text()?.to_owned();
            let text = |key: &str| {
                member
                    .field(key)
                    .and_then(Value::text)
                    .filter(|t| !t.is_empty() && *t != "?")
            };
            let port = |key: &str| match member.field(key) {
                Some(Value::Integer(port)) if *port > 0 => Some(port.to_string()),
                _ => None,
            };
            let port = if tls {
                port("tls-port").or_else(|| port("port"))
            } else {
                port("port")
            };
            let host = text("endpoint").or_else(|| text("ip"));
            let addr = host
                .zip(port)
                .map(|(host, port)| join_host_port(host, &port));
            nodes.push(ClusterNode { id, addr });
        }
    }
    Some(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cret-Known-Password";

    fn config() -> AclAdminConfig {
        AclAdminConfig {
            endpoints: vec!["127.0.0.1:6379".into()],
            username: "rotator-admin".into(),
            password: SecretString::from(PASSWORD),
            tls: Some(AclTls {
                ca_pem: b"-----BEGIN CERTIFICATE-----".to_vec(),
                server_name: Some("redis.test".into()),
            }),
            discover: true,
            timeout: Duration::from_secs(1),
        }
    }

    fn every_error() -> Vec<AclError> {
        let node = || "10.0.0.1:6379".to_owned();
        let server = AclError::Server {
            node: node(),
            command: "ACL SETUSER".into(),
            code: "ERR".into(),
            message: None,
        };
        vec![
            AclError::Config("no endpoint".into()),
            AclError::Connection {
                node: node(),
                detail: "refused".into(),
            },
            AclError::Timeout {
                node: node(),
                operation: "INFO".into(),
                after: Duration::from_secs(1),
            },
            AclError::TlsUntrusted {
                node: node(),
                detail: "expired".into(),
            },
            AclError::AdminRefused {
                node: node(),
                code: "WRONGPASS".into(),
            },
            AclError::Protocol {
                node: node(),
                command: "INFO".into(),
                detail: "no run_id".into(),
            },
            AclError::UserNotFound {
                node: node(),
                user: "app".into(),
            },
            AclError::LastPassword,
            AclError::SeveralDeployments(vec![node(), node()]),
            AclError::Incomplete {
                failed: vec![node()],
                cause: Box::new(AclError::Connection {
                    node: node(),
                    detail: "reset".into(),
                }),
            },
            AclError::Unchanged(Box::new(server)),
        ]
    }

    #[test]
    fn nothing_shows_the_password() {
        let admin = AclAdmin {
            inner: Arc::new(Inner {
                config: config(),
                tls: None,
                presented: Default::default(),
            }),
        };
        let mut texts = vec![format!("{:?}", config()), format!("{admin:?}")];
        for error in every_error() {
            texts.push(error.to_string());
            texts.push(format!("{error:?}"));
            texts.push(format!("{:?}", classify(&error)));
        }
        for text in texts {
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }

    #[test]
    fn classifies_every_error() {
        let kinds: Vec<&str> = every_error()
            .iter()
            .map(|e| match classify(e) {
                CallFailure::Transient { .. } => "transient",
                CallFailure::TlsUntrusted { .. } => "tls",
                CallFailure::AdminUnauthorized { .. } => "admin",
                CallFailure::NotFound { .. } => "not-found",
                CallFailure::LastPassword => "last",
                CallFailure::Other { .. } => "other",
                _ => "unexpected",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "other",
                "transient",
                "transient",
                "tls",
                "admin",
                "other",
                "not-found",
                "last",
                "other",
                "transient",
                "other"
            ]
        );
        let code = |code: &str| {
            classify(&AclError::Server {
                node: "n:1".into(),
                command: "ACL SETUSER".into(),
                code: code.into(),
                message: None,
            })
        };
        assert!(matches!(code("NOPERM"), CallFailure::Forbidden { .. }));
        assert!(matches!(
            code("NOAUTH"),
            CallFailure::AdminUnauthorized { .. }
        ));
        assert!(matches!(code("LOADING"), CallFailure::Transient { .. }));
        assert!(matches!(code("TRYAGAIN"), CallFailure::Transient { .. }));
    }

    #[test]
    fn persistence_is_ordered_from_the_weakest() {
        let none = Persistence::NotPersisted { why: "x".into() };
        assert!(none < Persistence::ConfigRewrite);
        assert!(Persistence::ConfigRewrite < Persistence::AclFile);
    }

    #[test]
    fn hashes_as_acl_getuser_lists_them() {
        assert_eq!(
            sha256_hex(&SecretString::from("password")),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn finds_replicas_in_info_replication() {
        let info = Info::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             slave0:ip=10.0.0.2,port=6380,state=online,offset=1,lag=0\r\n\
             slave1:ip=::1,port=6381,state=online,offset=1,lag=0\r\n\
             slave_read_only:1\r\nmaster_replid:abc\r\n",
        );
        assert_eq!(info.replicas(), ["10.0.0.2:6380", "[::1]:6381"]);
        assert_eq!(info.get("master_replid"), Some("abc"));
    }

    #[test]
    fn reads_nodes_of_cluster_shards() {
        let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let node = |id: &str, endpoint: &str, port: i64, tls_port: Option<i64>| {
            let mut fields = vec![
                bulk("id"),
                bulk(id),
                bulk("port"),
                Value::Integer(port),
                bulk("ip"),
                bulk("10.0.0.9"),
                bulk("endpoint"),
                bulk(endpoint),
                bulk("role"),
                bulk("master"),
            ];
            if let Some(tls_port) = tls_port {
                fields.extend([bulk("tls-port"), Value::Integer(tls_port)]);
            }
            Value::Array(fields)
        };
        let shards = Value::Array(vec![Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![Value::Integer(0), Value::Integer(16383)]),
            bulk("nodes"),
            Value::Array(vec![
                node("a", "redis-0.example", 6379, Some(6380)),
                node("b", "?", 6379, None),
            ]),
        ])]);
        let addrs = |tls| {
            cluster_nodes(&shards, tls)
                .unwrap()
                .into_iter()
                .map(|n| (n.id, n.addr))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            addrs(false),
            [
                ("a".into(), Some("redis-0.example:6379".into())),
                ("b".into(), Some("10.0.0.9:6379".into()))
            ]
        );
        assert_eq!(addrs(true)[0].1.as_deref(), Some("redis-0.example:6380"));
        assert!(cluster_nodes(&Value::Null, false).is_none());
    }

    #[test]
    fn refuses_configurations_without_endpoints() {
        let mut config = config();
        config.tls = None;
        config.endpoints.clear();
        assert!(matches!(
            AclAdmin::new(config.clone()),
            Err(AclError::Config(_))
        ));
        config.endpoints = vec!["no-port".into()];
        assert!(matches!(AclAdmin::new(config), Err(AclError::Config(_))));
    }
}
