//! The local Kubernetes control plane for integration tests.
//!
//! [`client`] makes sure the cluster of `tests/cluster/up.sh` is running (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok faking one
//! Node, `kwok-node-0`, all on 127.0.0.1) and returns a [`kube::Client`] for its
//! admin kubeconfig (`target/cluster/kubeconfig`).
//!
//! * `up.sh` runs at most once per test process (a [`OnceCell`]); across
//!   processes it serialises itself with a lock file (`target/cluster.lock`), so
//!   parallel test binaries share one cluster. When the cluster is already up it
//!   returns in a fraction of a second. The first run ever builds the binaries
//!   from source (cached in `~/.cache/password-rotator`, about 6 minutes on 2 cores).
//! * The cluster is left running when the tests end: stop it with
//!   `tests/cluster/down.sh` (`make cluster-down`).
//! * Each test should work in its own namespace: [`TestNamespace::new`], and call
//!   [`TestNamespace::cleanup`] at the end. Its `Drop` deletes the namespace too
//!   (best effort, for tests that fail or return early), unless
//!   `ROTATOR_KEEP_NAMESPACES=1` is set, which keeps it for debugging.
//!
//! Pods run nowhere: kwok marks them Running and Ready on `kwok-node-0` as soon as
//! they are scheduled, so any image name works (`registry.invalid/app:1`). The
//! node has no taints, so no tolerations are needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;

/// Name of the fake (kwok) node every pod is scheduled onto.
pub const NODE_NAME: &str = "kwok-node-0";

/// Label set on every namespace made by [`TestNamespace`].
pub const TEST_NAMESPACE_LABEL: &str = "password-rotator.test/namespace";

static CLUSTER_UP: OnceCell<PathBuf> = OnceCell::const_new();

/// The repository root (from the support crate's `CARGO_MANIFEST_DIR`: `tests/support` -> `../..`).
pub fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The cluster's state directory: `$ROTATOR_CLUSTER_DIR`, else `<repo>/target/cluster`.
pub fn cluster_dir() -> PathBuf {
    match std::env::var_os("ROTATOR_CLUSTER_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        _ => repo_root().join("target/cluster"),
    }
}

/// The admin kubeconfig written by `up.sh` (group `system:masters`).
pub fn kubeconfig_path() -> PathBuf {
    cluster_dir().join("kubeconfig")
}

/// Starts the cluster unless it is already running (once per process) and returns
/// the kubeconfig path.
pub async fn ensure_cluster() -> Result<PathBuf> {
    CLUSTER_UP
        .get_or_try_init(|| async {
            let script = repo_root().join("tests/cluster/up.sh");
            // Tests build nothing: `make deps` built the control plane before any test ran.
            let status = tokio::process::Command::new("bash")
                .arg(&script)
                .env("ROTATOR_NO_BUILD", "1")
                .current_dir(repo_root())
                .stdin(std::process::Stdio::null())
                .status()
                .await
                .with_context(|| format!("running {}", script.display()))?;
            if !status.success() {
                bail!(
                    "{} failed ({status}); component logs are in {}",
                    script.display(),
                    cluster_dir().join("logs").display()
                );
            }
            let kc = kubeconfig_path();
            if !kc.is_file() {
                bail!(
                    "{} succeeded but {} is missing",
                    script.display(),
                    kc.display()
                );
            }
            Ok(kc)
        })
        .await
        .cloned()
}

/// A client for the test cluster (admin), starting the cluster if needed.
///
/// Creates a new client on every call: a `kube::Client` belongs to the tokio
/// runtime it was made in, and every `#[tokio::test]` has its own runtime.
pub async fn client() -> Result<Client> {
    let kc = ensure_cluster().await?;
    client_from(&kc).await
}

async fn client_from(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A fresh, uniquely named namespace (`<prefix>-<random>`), deleted afterwards.
///
/// Every test should call [`TestNamespace::cleanup`] when it is done. If the test
/// panics or returns early, `Drop` deletes the namespace instead (best effort, on
/// a separate thread with its own client, waiting at most 10 s for the request).
pub struct TestNamespace {
    name: String,
    client: Client,
    done: bool,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Result<Self> {
        let mut prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        prefix.truncate(50);
        let prefix = prefix.trim_matches('-');
        let prefix = if prefix.is_empty() { "test" } else { prefix };
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());

        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            client: client.clone(),
            done: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An `Api` for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (the cluster removes its contents in the background).
    pub async fn cleanup(mut self) -> Result<()> {
        self.done = true;
        delete_namespace(&self.client, &self.name).await
    }
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting namespace {name}")),
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.done || std::env::var_os("ROTATOR_KEEP_NAMESPACES").is_some_and(|v| v == "1") {
            return;
        }
        // The test's runtime may be shutting down (or be a blocked current-thread
        // runtime), so use a new thread, runtime and client.
        let name = std::mem::take(&mut self.name);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async {
                        let client = client_from(&kubeconfig_path()).await?;
                        delete_namespace(&client, &name).await
                    })
                });
            if let Err(e) = result {
                eprintln!("TestNamespace drop: could not delete namespace {name}: {e:#}");
            }
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
}

/// Whether a Deployment's rollout is complete: the controller has seen the latest
/// spec (`observedGeneration >= generation`), all `spec.replicas` are updated and
/// available, and no replicas of an older ReplicaSet remain (`status.replicas ==
/// updatedReplicas`).
pub fn rollout_complete(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (d.spec.as_ref(), d.status.as_ref()) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(-1) >= generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
}

/// Waits until [`rollout_complete`] holds for Deployment `name`, polling every
/// 250 ms. Fails at `timeout` (with the last status seen) or as soon as the
/// Deployment reports `ProgressDeadlineExceeded`.
pub async fn wait_rollout_complete(
    api: &Api<Deployment>,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match api.get_opt(name).await? {
            Some(d) => {
                if rollout_complete(&d) {
                    return Ok(());
                }
                let conditions = d.status.as_ref().and_then(|s| s.conditions.as_ref());
                if let Some(c) = conditions.into_iter().flatten().find(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                }) {
                    bail!(
                        "deployment {name} exceeded its progress deadline: {:?}",
                        c.message
                    );
                }
                format!(
                    "generation {:?}, status {}",
                    d.metadata.generation,
                    serde_json::to_string(&d.status).unwrap_or_default()
                )
            }
            None => "not found".to_string(),
        };
        if Instant::now() >= deadline {
            bail!("deployment {name}: rollout not complete after {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
