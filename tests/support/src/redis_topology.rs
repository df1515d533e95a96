//! Several real `redis-server` processes forming one deployment: a primary with a replica, or
//! a cluster of three primaries. Each node lives in its own temp dir on a loopback port, is
//! killed on drop, and can be stopped and restarted on the same port and dir.
//!
//! Every node has the same two ACL users (ACLs are per node): an admin with the rules the test
//! asks for and an app user with `+@all`. The `default` user stays `nopass`, which is how the
//! helpers here set nodes up and how replicas sync without credentials.
use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use rand::{Rng, distr::Alphanumeric};
use tokio::process::{Child, Command};

use crate::certs::CertifiedKey;
use crate::redis_server::{find_binary, wait_ready};

/// How a node keeps its ACL users across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// `aclfile users.acl`: `ACL SAVE` writes it.
    AclFile,
    /// Started from `redis.conf`: `CONFIG REWRITE` writes the users into it.
    ConfigFile,
    /// Command-line options only: users are lost on restart.
    Nothing,
}

/// What every node of a topology is started with.
#[derive(Clone)]
pub struct Options {
    pub persist: Persist,
    /// Rules of the admin user after `reset on >password`, e.g. `+@all`.
    pub admin_rules: String,
    /// Also listen with TLS on a second port (the plain port stays for the test's own checks).
    pub tls: Option<CertifiedKey>,
}

impl Options {
    pub fn new(persist: Persist, admin_rules: &str) -> Options {
        Options {
            persist,
            admin_rules: admin_rules.to_owned(),
            tls: None,
        }
    }
}

/// An ACL user's name and password.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Standalone,
    Replica,
    Cluster,
}

/// One `redis-server` process and its dir; the process is killed on drop.
pub struct RedisNode {
    child: Option<Child>,
    dir: tempfile::TempDir,
    binary: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    options: Vec<(String, String)>,
    persist: Persist,
    kind: Kind,
}

impl RedisNode {
    /// `127.0.0.1:<port>`, plain.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<tls-port>` when started with TLS.
    pub fn tls_addr(&self) -> Option<String> {
        self.tls_port.map(|port| format!("127.0.0.1:{port}"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the process (SIGKILL: nothing is saved on the way out).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the process again on the same port, dir and options, and waits until it serves
    /// (a replica: its link to the primary is up; a cluster node: the cluster is ok).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.spawn().await?;
        self.wait_settled().await
    }

    /// Sends `AUTH user password` on a new plain connection: `Ok(false)` when refused.
    pub async fn auth(&self, user: &str, password: &str) -> anyhow::Result<bool> {
        let mut con = self.connection().await?;
        match redis::cmd("AUTH")
            .arg(user)
            .arg(password)
            .query_async::<()>(&mut con)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.code().is_some() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a command as the `default` user.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<redis::Value> {
        let mut con = self.connection().await?;
        let (name, rest) = args.split_first().context("no command")?;
        Ok(redis::cmd(name).arg(rest).query_async(&mut con).await?)
    }

    async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(format!("redis://{}", self.addr()))?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    /// The text of `INFO <section>`, or of `CLUSTER INFO` for section `cluster-info`.
    async fn info(&self, section: &str) -> anyhow::Result<String> {
        let reply = if section == "cluster-info" {
            self.command(&["CLUSTER", "INFO"]).await?
        } else {
            self.command(&["INFO", section]).await?
        };
        match reply {
            redis::Value::BulkString(text) => Ok(String::from_utf8(text)?),
            redis::Value::VerbatimString { text, .. } => Ok(text),
            other => bail!("unexpected INFO reply {other:?}"),
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("redis.log");
        let mut command = Command::new(&self.binary);
        if self.persist == Persist::ConfigFile {
            let conf = self.dir.path().join("redis.conf");
            // CONFIG REWRITE has added the users since the first start: keep what it wrote.
            if !conf.exists() {
                let text: String = self
                    .options
                    .iter()
                    .map(|(k, v)| format!("{k} {}\n", quote(v)))
                    .collect();
                std::fs::write(&conf, text)?;
            }
            command.arg(&conf);
        } else {
            for (key, value) in &self.options {
                command.arg(format!("--{key}"));
                if value.is_empty() {
                    command.arg("");
                } else {
                    command.args(value.split_whitespace());
                }
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        if let Err(e) = wait_ready(&mut child, self.port, Duration::from_secs(10)).await {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(e.context(format!("redis-server log:\n{log}")));
        }
        self.child = Some(child);
        Ok(())
    }

    async fn wait_settled(&self) -> anyhow::Result<()> {
        let (section, wanted) = match self.kind {
            Kind::Standalone => return Ok(()),
            Kind::Replica => ("replication", "master_link_status:up"),
            Kind::Cluster => ("cluster-info", "cluster_state:ok"),
        };
        for _ in 0..200 {
            if self
                .info(section)
                .await?
                .lines()
                .any(|l| l.trim() == wanted)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{}: no {wanted} within 10s", self.addr())
    }

    /// Creates the admin and app users through the `default` user, and persists them.
    async fn create_users(
        &self,
        admin: &Credentials,
        admin_rules: &str,
        app: &Credentials,
    ) -> anyhow::Result<()> {
        let admin_password = format!(">{}", admin.password);
        let mut args = vec![
            "ACL",
            "SETUSER",
            &admin.user,
            "reset",
            "on",
            &admin_password,
        ];
        args.extend(admin_rules.split_whitespace());
        self.command(&args).await?;
        let app_password = format!(">{}", app.password);
        self.command(&[
            "ACL",
            "SETUSER",
            &app.user,
            "reset",
            "on",
            &app_password,
            "~*",
            "&*",
            "+@all",
        ])
        .await?;
        match self.persist {
            Persist::AclFile => self.command(&["ACL", "SAVE"]).await.map(drop),
            Persist::ConfigFile => self.command(&["CONFIG", "REWRITE"]).await.map(drop),
            Persist::Nothing => Ok(()),
        }
    }
}

/// Nodes of one deployment and the users on every node.
pub struct Topology {
    pub nodes: Vec<RedisNode>,
    pub admin: Credentials,
    pub app: Credentials,
}

impl Topology {
    /// Asserts, with a real `AUTH` as the app user on every running node, which passwords
    /// work.
    pub async fn assert_passwords(&self, works: &[&str], refused: &[&str]) {
        for node in &self.nodes {
            for password in works {
                assert!(
                    node.auth(&self.app.user, password).await.unwrap(),
                    "{}: a password that should work is refused",
                    node.addr()
                );
            }
            for password in refused {
                assert!(
                    !node.auth(&self.app.user, password).await.unwrap(),
                    "{}: a password that should be refused works",
                    node.addr()
                );
            }
        }
    }

    /// One node.
    pub async fn standalone(options: &Options) -> anyhow::Result<Topology> {
        let node = start_node(options, Kind::Standalone, &[]).await?;
        Topology::with_users(vec![node], options).await
    }

    /// `nodes[0]` a primary, `nodes[1]` its replica, the link up.
    pub async fn replicated(options: &Options) -> anyhow::Result<Topology> {
        let primary = start_node(options, Kind::Standalone, &[]).await?;
        let replicaof = format!("127.0.0.1 {}", primary.port);
        let replica = start_node(options, Kind::Replica, &[("replicaof", &replicaof)]).await?;
        replica.wait_settled().await?;
        Topology::with_users(vec![primary, replica], options).await
    }

    /// Three primaries sharing the 16384 slots, each seeing the other two.
    pub async fn cluster(options: &Options) -> anyhow::Result<Topology> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let bus = free_port()?.to_string();
            let node = start_node(
                options,
                Kind::Cluster,
                &[
                    ("cluster-enabled", "yes"),
                    ("cluster-config-file", "nodes.conf"),
                    ("cluster-port", &bus),
                    ("cluster-node-timeout", "2000"),
                ],
            )
            .await?;
            nodes.push(node);
        }
        for (node, (first, last)) in nodes.iter().zip([(0, 5460), (5461, 10922), (10923, 16383)]) {
            node.command(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])
            .await?;
        }
        for other in &nodes[1..] {
            let bus = other
                .options
                .iter()
                .find(|(k, _)| k == "cluster-port")
                .map(|(_, v)| v.as_str())
                .context("cluster node without cluster-port")?;
            nodes[0]
                .command(&["CLUSTER", "MEET", "127.0.0.1", &other.port.to_string(), bus])
                .await?;
        }
        for node in &nodes {
            for attempt in 0.. {
                let info = node.info("cluster-info").await?;
                if info.lines().any(|l| l.trim() == "cluster_state:ok")
                    && info.lines().any(|l| l.trim() == "cluster_known_nodes:3")
                {
                    break;
                }
                if attempt == 400 {
                    bail!(
                        "{}: cluster not ok with 3 nodes within 20s:\n{info}",
                        node.addr()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Topology::with_users(nodes, options).await
    }

    async fn with_users(nodes: Vec<RedisNode>, options: &Options) -> anyhow::Result<Topology> {
        let topology = Topology {
            nodes,
            admin: Credentials {
                user: "rotator-admin".into(),
                password: random_password(),
            },
            app: Credentials {
                user: "app".into(),
                password: random_password(),
            },
        };
        for node in &topology.nodes {
            node.create_users(&topology.admin, &options.admin_rules, &topology.app)
                .await?;
        }
        Ok(topology)
    }

    /// Plain addresses of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::addr).collect()
    }
}

pub fn random_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

async fn start_node(
    options: &Options,
    kind: Kind,
    extra: &[(&str, &str)],
) -> anyhow::Result<RedisNode> {
    let binary = find_binary()?;
    // The free port may be taken between probing and binding: retry a few times.
    let mut last_error = None;
    for _ in 0..5 {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut settings: Vec<(String, String)> = [
            ("bind", "127.0.0.1".to_owned()),
            ("port", port.to_string()),
            ("save", String::new()),
            ("appendonly", "no".to_owned()),
            ("daemonize", "no".to_owned()),
            ("dir", dir.path().display().to_string()),
            (
                "logfile",
                dir.path().join("redis.log").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        settings.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        if options.persist == Persist::AclFile {
            let acl = dir.path().join("users.acl");
            std::fs::write(&acl, "")?;
            settings.push(("aclfile".into(), acl.display().to_string()));
        }
        let mut tls_port = None;
        if let Some(cert) = &options.tls {
            let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert_file, &cert.cert_pem)?;
            std::fs::write(&key_file, &cert.key_pem)?;
            let port = free_port()?;
            tls_port = Some(port);
            settings.extend([
                ("tls-port".to_owned(), port.to_string()),
                ("tls-cert-file".to_owned(), cert_file.display().to_string()),
                ("tls-key-file".to_owned(), key_file.display().to_string()),
                ("tls-auth-clients".to_owned(), "no".to_owned()),
            ]);
        }
        let mut node = RedisNode {
            child: None,
            dir,
            binary: binary.clone(),
            port,
            tls_port,
            options: settings,
            persist: options.persist,
            kind,
        };
        match node.spawn().await {
            Ok(()) => return Ok(node),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// A config-file value: words as they are (`replicaof host port`), `""` when empty.
fn quote(value: &str) -> String {
    if value.is_empty() {
        "\"\"".to_owned()
    } else {
        value.to_owned()
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
