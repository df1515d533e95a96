//! A real `redis-server` per test, on loopback, with a dedicated admin ACL user so that the
//! `default` user's passwords can be rotated without locking the test out.
use std::{fmt, path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use rand::{Rng, distr::Alphanumeric};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// The ACL user every admin command of the tests and the API test server goes through.
pub const ADMIN_USER: &str = "rotator-admin";

/// Credentials of an ACL user allowed to run `ACL SETUSER` (`+@all`).
#[derive(Clone, Serialize, Deserialize)]
pub struct RedisAdmin {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for RedisAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdmin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl RedisAdmin {
    /// Runs `ACL <args...>` on a new connection to `addr` authenticated as this user.
    pub async fn acl(&self, addr: &str, args: &[&str]) -> anyhow::Result<redis::Value> {
        let url = format!("redis://{}:{}@{addr}", self.user, self.password);
        let mut con = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        Ok(redis::cmd("ACL").arg(args).query_async(&mut con).await?)
    }
}

/// A `redis-server` child process, killed when dropped.
pub struct RedisServer {
    _child: Child,
    _dir: tempfile::TempDir,
    port: u16,
    admin: RedisAdmin,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<RedisServer> {
        let binary = find_binary()?;
        let dir = tempfile::tempdir()?;
        // The free port may be taken between probing and binding: retry a few times.
        let mut last_error = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log = dir.path().join("redis.log");
            let mut child = Command::new(&binary)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("spawning {}", binary.display()))?;
            match wait_ready(&mut child, port, Duration::from_secs(5)).await {
                Ok(()) => {
                    let admin = RedisAdmin {
                        user: ADMIN_USER.to_owned(),
                        password: rand::rng()
                            .sample_iter(Alphanumeric)
                            .take(32)
                            .map(char::from)
                            .collect(),
                    };
                    let addr = format!("127.0.0.1:{port}");
                    let mut con = redis::Client::open(format!("redis://{addr}"))?
                        .get_multiplexed_async_connection()
                        .await?;
                    redis::cmd("ACL")
                        .arg(&["SETUSER", ADMIN_USER, "reset", "on", "~*", "&*", "+@all"])
                        .arg(format!(">{}", admin.password))
                        .query_async::<()>(&mut con)
                        .await?;
                    return Ok(RedisServer {
                        _child: child,
                        _dir: dir,
                        port,
                        admin,
                    });
                }
                Err(e) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = Some(e.context(format!("redis-server log:\n{log}")));
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The admin ACL user (`rotator-admin`) created at start.
    pub fn admin(&self) -> RedisAdmin {
        self.admin.clone()
    }

    /// Sends `AUTH user password` on a new connection: `Ok(false)` when the server refuses it.
    pub async fn auth(&self, user: &str, password: &str) -> anyhow::Result<bool> {
        self.send_auth(&[user, password]).await
    }

    /// Sends `AUTH password` (the `default` user) on a new connection.
    pub async fn auth_default(&self, password: &str) -> anyhow::Result<bool> {
        self.send_auth(&[password]).await
    }

    async fn send_auth(&self, args: &[&str]) -> anyhow::Result<bool> {
        let client = redis::Client::open(format!("redis://{}", self.addr()))?;
        let mut con = client.get_multiplexed_async_connection().await?;
        match redis::cmd("AUTH")
            .arg(args)
            .query_async::<()>(&mut con)
            .await
        {
            Ok(()) => Ok(true),
            // Any error the server sent (WRONGPASS, ERR ...) is a refusal; the rest is IO.
            Err(e) if e.code().is_some() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `ACL <args...>` as the admin user.
    pub async fn acl(&self, args: &[&str]) -> anyhow::Result<redis::Value> {
        self.admin.acl(&self.addr(), args).await
    }

    /// The SHA-256 hashes (hex) of every password `user` accepts, as `ACL GETUSER` lists them.
    pub async fn password_hashes(&self, user: &str) -> anyhow::Result<Vec<String>> {
        let reply = self.acl(&["GETUSER", user]).await?;
        let fields = match reply {
            redis::Value::Array(fields) => fields,
            redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => anyhow::bail!("unexpected ACL GETUSER reply {other:?}"),
        };
        let text = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        };
        let position = fields
            .iter()
            .position(|f| text(f) == "passwords")
            .context("ACL GETUSER lists no passwords field")?;
        match fields.get(position + 1) {
            Some(redis::Value::Array(hashes)) => Ok(hashes.iter().map(text).collect()),
            other => anyhow::bail!("unexpected passwords field {other:?}"),
        }
    }

    /// `ACL SETUSER name reset on >pw... ~* &* +@all`: a user with exactly these passwords.
    pub async fn create_user(&self, name: &str, passwords: &[&str]) -> anyhow::Result<()> {
        let rules: Vec<String> = passwords.iter().map(|p| format!(">{p}")).collect();
        let mut args = vec!["SETUSER", name, "reset", "on", "~*", "&*", "+@all"];
        args.extend(rules.iter().map(String::as_str));
        self.acl(&args).await.map(drop)
    }
}

/// The hash `ACL GETUSER` shows for a password.
pub fn password_hash(password: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `redis-server` the tests start.
pub(crate) fn find_binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
        .context("redis-server not found on PATH or in /usr/bin: run `make deps` or `apt-get install redis-server`")
}

/// Waits until the `redis-server` of `child` answers `PING` on `port`, for at most `within`.
pub(crate) async fn wait_ready(
    child: &mut Child,
    port: u16,
    within: Duration,
) -> anyhow::Result<()> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    const EVERY: Duration = Duration::from_millis(50);
    for _ in 0..within.as_millis() / EVERY.as_millis() {
        if let Some(status) = child.try_wait()? {
            bail!("redis-server exited at start: {status}");
        }
        if let Ok(mut con) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(EVERY).await;
    }
    bail!("redis-server did not answer PING on port {port} within {within:?}")
}
