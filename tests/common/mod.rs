//! The end-to-end harness: the local control plane, a real redis-server, the Redis Software
//! API test server in front of it, and the operator as a separate process.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod checks;
pub mod rbac;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use password_rotator::resource::PasswordRotation;
use password_rotator::rotation_target::{RotationTarget, TargetStatus};
use password_rotator::secrets::ALLOWED_ROTATIONS_ANNOTATION;
use rotator_test_support::api_server::{
    AdminLogin, ApiServer, ApiServerConfig, DatabaseConfig, ServerTls, UserConfig,
};
use rotator_test_support::cluster::{self, TestNamespace};
use rotator_test_support::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub const ADMIN_EMAIL: &str = "admin@cluster.test";
pub const ADMIN_PASSWORD: &str = "Adm1n-Pass-For-Tests-9x";
pub const USER: &str = "orders-app";
pub const USER_PASSWORD: &str = "Initial-User-Pass-4k7Q";
pub const DATABASE_UID: u64 = 3;
pub const DATABASE_PASSWORD: &str = "Initial-Db-Pass-8zW2m";
pub const USER_SECRET: &str = "orders-redis";
pub const DATABASE_SECRET: &str = "db3-redis";
/// The RotationTarget every harness creates: the API server with `rs-admin` and `rs-ca`.
pub const TARGET: &str = "rs";

pub struct Harness {
    pub client: Client,
    pub namespace: TestNamespace,
    pub redis: RedisServer,
    pub api: ApiServer,
    operator: Option<Child>,
    /// Flags every `start_operator` passes, e.g. `--allow-verify-endpoints`.
    pub operator_flags: Vec<&'static str>,
    /// `--cluster-target-namespace` of every operator process: ClusterRotationTargets served,
    /// with their Secrets there.
    pub cluster_target_namespace: Option<String>,
    operator_runs: AtomicU32,
    log_dir: PathBuf,
}

impl Harness {
    /// Everything up, Secrets in place, the operator not yet started.
    pub async fn new(prefix: &str) -> Result<Self> {
        Self::with_users(prefix, 0).await
    }

    /// As `new`, with `extra` more users `app-<i>` (password `extra_password(i)`), each
    /// with its workload Secret `app-<i>-redis`.
    pub async fn with_users(prefix: &str, extra: u64) -> Result<Self> {
        Self::build(prefix, extra, ServerTls::GeneratedCa, |_| {}).await
    }

    /// As `new`, with the API server's configuration changed by `configure` first.
    pub async fn configured(
        prefix: &str,
        configure: impl FnOnce(&mut ApiServerConfig),
    ) -> Result<Self> {
        Self::build(prefix, 0, ServerTls::GeneratedCa, configure).await
    }

    /// As `new`, with the API server presenting `tls`; Secret `rs-ca` holds what
    /// `ApiServer::ca_pem` says a user would put there.
    pub async fn with_tls(prefix: &str, tls: ServerTls) -> Result<Self> {
        Self::build(prefix, 0, tls, |_| {}).await
    }

    async fn build(
        prefix: &str,
        extra: u64,
        tls: ServerTls,
        configure: impl FnOnce(&mut ApiServerConfig),
    ) -> Result<Self> {
        let client = cluster::client().await?;
        install_crd(&client).await?;
        let namespace = TestNamespace::new(&client, prefix).await?;
        let redis = RedisServer::start().await?;
        let mut config = ApiServerConfig::new(
            &redis,
            AdminLogin {
                email: ADMIN_EMAIL.into(),
                password: ADMIN_PASSWORD.into(),
            },
        );
        config.users.push(UserConfig {
            uid: 2,
            name: USER.into(),
            email: "orders-app@shop.test".into(),
            role: "db_member".into(),
            passwords: vec![USER_PASSWORD.into()],
        });
        config.databases.push(DatabaseConfig {
            uid: DATABASE_UID,
            name: "orders".into(),
            acl_user: "default".into(),
            passwords: vec![DATABASE_PASSWORD.into()],
        });
        for i in 0..extra {
            config.users.push(UserConfig {
                uid: 100 + i,
                name: format!("app-{i}"),
                email: format!("app-{i}@shop.test"),
                role: "db_member".into(),
                passwords: vec![extra_password(i)],
            });
        }
        config.password_complexity = true;
        config.tls = tls;
        configure(&mut config);
        let api = ApiServer::start(config).await?;
        let log_dir = cluster::repo_root()
            .join("target/test-logs")
            .join(namespace.name());
        std::fs::create_dir_all(&log_dir)?;
        let harness = Harness {
            client,
            namespace,
            redis,
            api,
            operator: None,
            operator_flags: Vec::new(),
            cluster_target_namespace: None,
            operator_runs: AtomicU32::new(0),
            log_dir,
        };
        harness
            .put_secret(
                "rs-admin",
                &[("username", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            )
            .await?;
        harness
            .put_secret("rs-ca", &[("ca.crt", &harness.api.ca_pem())])
            .await?;
        harness
            .put_secret(
                USER_SECRET,
                &[("username", USER), ("password", USER_PASSWORD)],
            )
            .await?;
        harness
            .put_secret(DATABASE_SECRET, &[("password", DATABASE_PASSWORD)])
            .await?;
        harness
            .put_target(
                TARGET,
                json!({"redisSoftware": harness.rs_connection(), "allow": {"modes": ["AddThenDelete", "Replace"]}}),
            )
            .await?;
        for i in 0..extra {
            let user = format!("app-{i}");
            harness
                .put_secret(
                    &format!("{user}-redis"),
                    &[("username", &user), ("password", &extra_password(i))],
                )
                .await?;
        }
        Ok(harness)
    }

    pub fn ns(&self) -> &str {
        self.namespace.name()
    }

    pub fn rotations(&self) -> Api<PasswordRotation> {
        self.namespace.api()
    }

    pub fn secrets(&self) -> Api<Secret> {
        self.namespace.api()
    }

    pub fn targets(&self) -> Api<RotationTarget> {
        self.namespace.api()
    }

    /// `spec.redisSoftware` of a RotationTarget for the API server, with `rs-admin` and
    /// `rs-ca`.
    pub fn rs_connection(&self) -> Value {
        json!({
            "url": self.api.url(),
            "credentialsSecret": "rs-admin",
            "caSecret": {"name": "rs-ca", "key": "ca.crt"},
        })
    }

    /// Creates or replaces the RotationTarget `name` of this namespace with `spec`.
    pub async fn put_target(&self, name: &str, spec: Value) -> Result<RotationTarget> {
        let target: RotationTarget = serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2",
            "kind": "RotationTarget",
            "metadata": {"name": name},
            "spec": spec,
        }))?;
        Ok(self
            .targets()
            .patch(
                name,
                &PatchParams::apply("rotator-tests").force(),
                &Patch::Apply(&target),
            )
            .await?)
    }

    pub async fn put_secret(&self, name: &str, data: &[(&str, &str)]) -> Result<()> {
        let secret = secret(name, data);
        self.secrets()
            .patch(
                name,
                &PatchParams::apply("rotator-tests").force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }

    pub async fn secret_value(&self, name: &str, key: &str) -> Result<Option<String>> {
        Ok(self.secrets().get_opt(name).await?.and_then(|s| {
            s.data?
                .get(key)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        }))
    }

    /// The spec of a rotation of the user, merged with `overrides`.
    pub fn user_spec(&self, overrides: Value) -> Value {
        self.spec(json!({"user": USER}), USER_SECRET, overrides)
    }

    /// The spec of a rotation of database 3's default user, merged with `overrides`.
    pub fn database_spec(&self, overrides: Value) -> Value {
        self.spec(
            json!({"databaseUid": DATABASE_UID}),
            DATABASE_SECRET,
            overrides,
        )
    }

    /// On RotationTarget `rs` ([`TARGET`]); `{"target": {"ref": {"name": "other"}}}` names
    /// another.
    fn spec(&self, what: Value, secret: &str, overrides: Value) -> Value {
        let mut spec = json!({
            "target": {"ref": {"kind": "RotationTarget", "name": TARGET}},
            "secret": {"name": secret},
            "rollout": {"overlap": "0s", "timeout": "5m"},
        });
        merge(&mut spec, json!({"target": what}));
        merge(&mut spec, overrides);
        spec
    }

    pub async fn create_rotation(&self, name: &str, spec: Value) -> Result<PasswordRotation> {
        let object: PasswordRotation = serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2",
            "kind": "PasswordRotation",
            "metadata": {"name": name},
            "spec": spec,
        }))?;
        Ok(self
            .rotations()
            .create(&PostParams::default(), &object)
            .await?)
    }

    pub async fn request_rotation(&self, name: &str, token: &str) -> Result<()> {
        self.rotations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"rotationRequest": token}})),
            )
            .await?;
        Ok(())
    }

    /// Creates a Deployment that reads `secret` (kwok runs its pods on the fake node).
    pub async fn create_deployment(&self, name: &str, replicas: i32) -> Result<()> {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": "app",
                        "image": "registry.invalid/app:1",
                        "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": USER_SECRET, "key": "password"}}}],
                    }]},
                },
            },
        }))?;
        let api: Api<Deployment> = self.namespace.api();
        api.create(&PostParams::default(), &deployment).await?;
        cluster::wait_rollout_complete(&api, name, Duration::from_secs(120)).await
    }

    /// Starts the operator as its own process, watching only this test's namespace.
    pub fn start_operator(&mut self) -> Result<()> {
        let flags = self.operator_flags.clone();
        self.operator = Some(self.spawn_operator(&flags)?);
        Ok(())
    }

    /// Another operator process, with extra arguments, that the caller owns; its log is
    /// part of `operator_logs`.
    pub fn spawn_operator(&self, extra_args: &[&str]) -> Result<Child> {
        self.spawn_operator_with_env(extra_args, &[])
    }

    /// As `spawn_operator`, with these environment variables too (e.g. `POD_NAME`, which
    /// names the process in its Events and its Lease).
    pub fn spawn_operator_with_env(
        &self,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Child> {
        self.spawn_operator_via(&cluster::kubeconfig_path(), extra_args, env)
    }

    /// As `spawn_operator_with_env`, reaching the API server as `kubeconfig` says (e.g.
    /// through an [`rotator_test_support::api_proxy::ApiProxy`]).
    pub fn spawn_operator_via(
        &self,
        kubeconfig: &std::path::Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Child> {
        let run = self.operator_runs.fetch_add(1, Ordering::SeqCst) + 1;
        let log = std::fs::File::create(self.log_dir.join(format!("operator-{run}.log")))?;
        let cluster_targets = self
            .cluster_target_namespace
            .iter()
            .flat_map(|ns| ["--cluster-target-namespace", ns]);
        operator_command(kubeconfig, self.namespace.name(), log)?
            .args(cluster_targets)
            .args(extra_args)
            .envs(env.iter().copied())
            .spawn()
            .context("starting the operator")
    }

    /// Waits up to `within` until RotationTarget `name`'s status passes `check`.
    pub async fn wait_target(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        check: impl Fn(&TargetStatus) -> bool,
    ) -> Result<RotationTarget> {
        let deadline = Instant::now() + within;
        loop {
            let target = self.targets().get(name).await?;
            if target.status.as_ref().is_some_and(&check) {
                return Ok(target);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "target {name} never showed {what}: {:#?}",
                target.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an operator has checked RotationTarget `name` (its status has a `Ready`
    /// condition), then forgets the requests the API server saw: the check is the target's
    /// own login, and a test counts what its resources call from there.
    pub async fn target_checked(&self, name: &str) -> Result<()> {
        self.wait_target(name, Duration::from_secs(60), "a check", |s| {
            s.conditions.iter().any(|c| c.type_ == "Ready")
        })
        .await?;
        self.api.clear_requests();
        Ok(())
    }

    /// Where this test's operator logs go: a place for the files a test makes.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// The log of the `run`-th operator process started by this harness (from 1).
    pub fn operator_log(&self, run: u32) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("operator-{run}.log")))
            .unwrap_or_default()
    }

    pub fn operator_runs(&self) -> u32 {
        self.operator_runs.load(Ordering::SeqCst)
    }

    /// SIGKILL: no shutdown, no flushing, like a node dying.
    pub async fn kill_operator(&mut self) -> Result<()> {
        if let Some(mut child) = self.operator.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Every line every operator process of this test wrote.
    pub fn operator_logs(&self) -> Result<String> {
        let mut all = String::new();
        for run in 1..=self.operator_runs() {
            let path = self.log_dir.join(format!("operator-{run}.log"));
            all.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        Ok(all)
    }

    pub async fn rotation(&self, name: &str) -> Result<PasswordRotation> {
        Ok(self.rotations().get(name).await?)
    }

    /// Polls the resource until `done` holds for it.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&PasswordRotation) -> bool,
    ) -> Result<PasswordRotation> {
        let deadline = Instant::now() + timeout;
        loop {
            let rotation = self.rotation(name).await?;
            if done(&rotation) {
                return Ok(rotation);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; status: {}",
                    serde_json::to_string_pretty(&rotation.status)?
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a rotation has completed since `after` (a lastRotationTime) and the
    /// resource is Idle again.
    pub async fn wait_rotated(&self, name: &str, timeout: Duration) -> Result<PasswordRotation> {
        self.wait_for(name, timeout, "a completed rotation", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.last_rotation_time.is_some()
                    && s.step.is_none()
                    && s.phase == Some(password_rotator::resource::Phase::Idle)
            })
        })
        .await
    }

    pub async fn events(&self) -> Result<Vec<CoreEvent>> {
        let api: Api<CoreEvent> = self.namespace.api();
        Ok(api.list(&ListParams::default()).await?.items)
    }

    /// The notes of the namespace's events with `reason`.
    pub async fn notes_of(&self, reason: &str) -> Result<Vec<String>> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.message.unwrap_or_default())
            .collect())
    }

    /// The first event with `reason` whose note contains `says`. An event is sent just after
    /// the status write that shows the same thing: it is waited for, never read once.
    pub async fn wait_event(&self, reason: &str, says: &str) -> Result<CoreEvent> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.events().await?.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.message.as_deref().unwrap_or_default().contains(says)
            });
            if let Some(event) = found {
                return Ok(event);
            }
            if Instant::now() > deadline {
                bail!("no {reason} event saying {says:?} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until some event of the namespace mentions `text` (in its reason or note).
    pub async fn wait_event_mentioning(&self, text: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !serde_json::to_string(&self.events().await?)?.contains(text) {
            if Instant::now() > deadline {
                bail!("no event mentions {text:?} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Fails if any of `passwords` appears in the operator's logs, the namespace's events,
    /// or any PasswordRotation's status.
    pub async fn assert_no_leak(&self, passwords: &[String]) -> Result<()> {
        let logs = self.operator_logs()?;
        let events = serde_json::to_string(&self.events().await?)?;
        let statuses = serde_json::to_string(
            &self
                .rotations()
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|r| (&r.metadata.annotations, &r.status))
                .collect::<Vec<_>>(),
        )?;
        assert!(!logs.is_empty(), "the operator wrote no log at all");
        for password in passwords {
            assert!(!password.is_empty());
            for (place, text) in [
                ("operator logs", &logs),
                ("events", &events),
                ("status", &statuses),
            ] {
                assert!(
                    !text.contains(password.as_str()),
                    "a password leaked into the {place}"
                );
            }
        }
        Ok(())
    }

    /// Fails if the value of any key of any Secret in the namespace (every one, not only the
    /// passwords a test knows) appears in the operator's log, the namespace's events or any
    /// PasswordRotation's status. Values a resource's spec itself names (a user name) are
    /// public and skipped, as are values too short to be told from ordinary words.
    pub async fn assert_no_secret_value_leaks(&self) -> Result<()> {
        self.assert_no_secret_value_leaks_in(&[]).await
    }

    /// As [`Self::assert_no_secret_value_leaks`], scanning the Secrets of `more` namespaces
    /// too (e.g. where a ClusterRotationTarget's Secrets are).
    pub async fn assert_no_secret_value_leaks_in(&self, more: &[&str]) -> Result<()> {
        let logs = self.operator_logs()?;
        let events = serde_json::to_string(&self.events().await?)?;
        let rotations = self.rotations().list(&ListParams::default()).await?.items;
        let statuses = serde_json::to_string(
            &rotations
                .iter()
                .map(|r| (&r.metadata.annotations, &r.status))
                .collect::<Vec<_>>(),
        )?;
        let specs = serde_json::to_string(&rotations.iter().map(|r| &r.spec).collect::<Vec<_>>())?;
        assert!(!logs.is_empty(), "the operator wrote no log at all");
        let mut scanned = 0;
        let mut secrets = self.secrets().list(&ListParams::default()).await?.items;
        for ns in more {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
            secrets.extend(api.list(&ListParams::default()).await?.items);
        }
        for secret in secrets {
            for (key, value) in secret.data.iter().flatten() {
                let Ok(value) = std::str::from_utf8(&value.0) else {
                    continue;
                };
                if value.len() < 8 || specs.contains(value) {
                    continue;
                }
                scanned += 1;
                for (place, text) in [
                    ("operator log", &logs),
                    ("events", &events),
                    ("status", &statuses),
                ] {
                    assert!(
                        !text.contains(value),
                        "the value of key {key} of Secret {} appears in the {place}",
                        secret.name_any()
                    );
                }
            }
        }
        assert!(scanned > 0, "no Secret value was scanned");
        Ok(())
    }

    /// Deletes the resources while an operator runs, so their finalizers finish, then the
    /// namespace. A finalizer that cannot finish is removed, so the namespace never hangs.
    pub async fn finish(mut self) -> Result<()> {
        if self.operator.is_none() {
            self.start_operator()?;
        }
        let rotations = self.rotations();
        rotations
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !rotations
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
        {
            if Instant::now() > deadline {
                for rotation in rotations.list(&ListParams::default()).await?.items {
                    rotations
                        .patch(
                            &rotation.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await?;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.kill_operator().await?;
        let Harness { namespace, .. } = self;
        namespace.cleanup().await
    }
}

/// `password-rotator run` watching `namespace` with `kubeconfig`, logging to `log` at debug
/// level, with short API timeouts and its HTTP endpoints on a free loopback port.
pub fn operator_command(
    kubeconfig: &std::path::Path,
    namespace: &str,
    log: std::fs::File,
) -> Result<Command> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_password-rotator"));
    command
        .args(["run", "--namespace", namespace])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env(
            "RUST_LOG",
            "debug,kube=info,hyper=info,tower=info,h2=info,rustls=info",
        )
        .env("REQUEST_TIMEOUT_SECONDS", "3")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}

/// A Secret named `name` holding `data`, that every PasswordRotation of its namespace may use.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut secret = unshared_secret(name, data);
    secret.metadata.annotations =
        Some([(ALLOWED_ROTATIONS_ANNOTATION.to_owned(), "*".to_owned())].into());
    secret
}

/// A Secret named `name` holding `data`, that allows no PasswordRotation to use it.
pub fn unshared_secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Installs the CRDs of `crds/` (the files users apply), and waits until they are served.
pub async fn install_crd(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(cluster::repo_root().join("crds"))? {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(entry?.path())?)?;
        let name = crd.metadata.name.clone().context("a CRD has a name")?;
        api.patch(
            &name,
            &PatchParams::apply("rotator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in names {
        loop {
            let crd = api.get(&name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("the CRD {name} was not established in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Merges `overrides` into `base`, object by object.
pub fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (slot, value) => *slot = value,
    }
}

pub fn extra_password(i: u64) -> String {
    format!("Extra-User-Pass-{i:04}-Qz")
}

pub fn name_of(rotation: &PasswordRotation) -> String {
    rotation.name_any()
}

/// The rotation (and its round) a restart annotation's value names, without the workload
/// Secret version it restarted onto.
pub fn restarted_for(value: &str) -> &str {
    value
        .split_once('@')
        .map_or(value, |(rotation, _)| rotation)
}

/// Returns once `process` stopped itself at fail point `point`.
pub async fn stopped_at(process: &tokio::process::Child, point: &str) -> Result<()> {
    let pid = process.id().expect("running");
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|s| s.starts_with('T')))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !stopped() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the operator never reached {point}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub fn continue_process(process: &tokio::process::Child) -> Result<()> {
    let pid = process.id().expect("running");
    std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()?;
    Ok(())
}
