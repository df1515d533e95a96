//! The engine without a control plane: the controller's reconcile runs against an in-memory
//! Kubernetes and a fake target that records every call and fails on request. Each test reads
//! one log of writes and calls, in the order they happened, in milliseconds; the end-to-end
//! tests prove the same protocol on the real parts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Event;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use password_rotator::controller::{self, Connector, Context, Settings};
use password_rotator::kubernetes::Kubernetes;
use password_rotator::login_budget::Lockout;
use password_rotator::metrics::Metrics;
use password_rotator::resource::{
    PasswordRotation, PasswordRotationStatus, Phase, SHARD_LABEL, Step, WorkloadRef,
};
use password_rotator::resource_index::{ResourceIndex, Watched};
use password_rotator::rollout::Restart;
use password_rotator::rotation::{CallFailure, RolloutProgress};
use password_rotator::rotation_target::RotationTarget;
use password_rotator::target_index::TargetIndex;
use password_rotator::targets::{BoxFuture, Budget, Change, PasswordTarget};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const NS: &str = "shop";
const NAME: &str = "orders-cache";
const WORKLOAD_SECRET: &str = "orders-redis";
const OLD: &str = "Old-Password-1234567";

/// Every write to Kubernetes and every call to the target, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// The index of the first entry that starts with `prefix`.
fn first(log: &[String], prefix: &str) -> usize {
    log.iter()
        .position(|e| e.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {log:#?}"))
}

/// Secrets, the resource's status and Events, in memory.
#[derive(Default)]
struct FakeKubernetes {
    log: Log,
    secrets: Mutex<BTreeMap<String, Secret>>,
    /// How often each Secret was read.
    reads: Mutex<BTreeMap<String, usize>>,
    status: Mutex<Option<PasswordRotationStatus>>,
    /// The resource's resourceVersion, as each write of it returns it.
    version: std::sync::atomic::AtomicU64,
}

impl FakeKubernetes {
    fn version(&self) -> Option<String> {
        let version = self.version.load(std::sync::atomic::Ordering::SeqCst);
        (version > 0).then(|| version.to_string())
    }

    fn next_version(&self) -> Option<String> {
        let ordering = std::sync::atomic::Ordering::SeqCst;
        Some((self.version.fetch_add(1, ordering) + 1).to_string())
    }

    fn reads(&self, name: &str) -> usize {
        self.reads.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// RFC 7386: what a JSON merge patch makes of `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().expect("an object");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge_patch(object.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Kubernetes for FakeKubernetes {
    fn get_secret<'a>(
        &'a self,
        _: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, password_rotator::Result<Option<Secret>>> {
        Box::pin(async move {
            *self
                .reads
                .lock()
                .unwrap()
                .entry(name.to_owned())
                .or_default() += 1;
            Ok(self.secrets.lock().unwrap().get(name).cloned())
        })
    }

    fn create_secret<'a>(
        &'a self,
        _: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, password_rotator::Result<Secret>> {
        Box::pin(async move {
            let name = secret.metadata.name.clone().unwrap_or_default();
            self.log
                .lock()
                .unwrap()
                .push(format!("create secret {name}"));
            let mut created = secret.clone();
            created.metadata.uid = Some(format!("uid-{}", self.log.lock().unwrap().len()));
            self.secrets.lock().unwrap().insert(name, created.clone());
            Ok(created)
        })
    }

    fn patch_secret<'a>(
        &'a self,
        _: &'a str,
        name: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, password_rotator::Result<Option<Secret>>> {
        Box::pin(async move {
            let mut secrets = self.secrets.lock().unwrap();
            let Some(secret) = secrets.get_mut(name) else {
                return Ok(None);
            };
            let keys: Vec<&String> = patch["data"]
                .as_object()
                .map(|d| d.keys().collect())
                .unwrap_or_default();
            self.log
                .lock()
                .unwrap()
                .push(format!("patch secret {name} {keys:?}"));
            let mut value = serde_json::to_value(&*secret).expect("a Secret serializes");
            merge_patch(&mut value, patch);
            *secret = serde_json::from_value(value).expect("a patched Secret");
            Ok(Some(secret.clone()))
        })
    }

    fn delete_secret<'a>(
        &'a self,
        _: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, password_rotator::Result<()>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("delete secret {name}"));
            let mut secrets = self.secrets.lock().unwrap();
            if uid.is_none() || secrets.get(name).and_then(|s| s.metadata.uid.as_deref()) == uid {
                secrets.remove(name);
            }
            Ok(())
        })
    }

    fn current<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
    ) -> BoxFuture<'a, password_rotator::Result<Option<PasswordRotation>>> {
        Box::pin(async move {
            let mut current = rotation.clone();
            current.metadata.resource_version = self.version();
            current.status = self.status.lock().unwrap().clone().or(current.status);
            Ok(Some(current))
        })
    }

    fn write_status<'a>(
        &'a self,
        _: &'a PasswordRotation,
        _: Option<&'a str>,
        status: &'a PasswordRotationStatus,
    ) -> BoxFuture<'a, password_rotator::Result<Option<String>>> {
        Box::pin(async move {
            let step = status.step.map_or("-", Step::as_str);
            let phase = status.phase.map_or("-", Phase::as_str);
            self.log
                .lock()
                .unwrap()
                .push(format!("status {phase} {step}"));
            *self.status.lock().unwrap() = Some(status.clone());
            Ok(self.next_version())
        })
    }

    fn set_finalizers<'a>(
        &'a self,
        _: &'a PasswordRotation,
        finalizers: Vec<String>,
    ) -> BoxFuture<'a, password_rotator::Result<Option<String>>> {
        Box::pin(async move {
            // Slower than the other writes, so that what waits for it shows in the log.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.log
                .lock()
                .unwrap()
                .push(format!("finalizers {finalizers:?}"));
            Ok(self.next_version())
        })
    }

    fn advance_rollout<'a>(
        &'a self,
        _: &'a str,
        _: &'a [WorkloadRef],
        (_, value): Restart<'a>,
    ) -> BoxFuture<'a, password_rotator::Result<RolloutProgress>> {
        Box::pin(async move {
            self.log.lock().unwrap().push(format!("rollout {value}"));
            Ok(RolloutProgress::Complete)
        })
    }

    fn publish_event<'a>(&'a self, _: &'a PasswordRotation, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("event {}", event.reason));
        })
    }
}

/// A target that records calls and answers each with the next scripted failure, if any.
struct FakeTarget {
    log: Log,
    failures: Arc<Mutex<VecDeque<(&'static str, CallFailure)>>>,
    budget: Budget,
}

impl FakeTarget {
    fn call<'a>(
        &'a self,
        name: &'static str,
        change: &Change<'_>,
    ) -> BoxFuture<'a, Result<(), CallFailure>> {
        let line = format!(
            "target {name} previous={} pending={}",
            change.previous.expose_secret() == OLD,
            change.pending.expose_secret() != OLD,
        );
        Box::pin(async move {
            self.log.lock().unwrap().push(line);
            let mut failures = self.failures.lock().unwrap();
            match failures.front() {
                Some((call, _)) if *call == name => Err(failures.pop_front().expect("front").1),
                _ => Ok(()),
            }
        })
    }
}

impl PasswordTarget for FakeTarget {
    fn add<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        self.call("add", change)
    }

    fn replace<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        self.call("replace", change)
    }

    fn retire<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        self.call("retire", change)
    }

    fn roll_back<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        self.call("roll_back", change)
    }

    fn identity(&self) -> BoxFuture<'_, Result<String, CallFailure>> {
        Box::pin(async { Ok("fake-cluster".to_owned()) })
    }

    fn budget(&self) -> &Budget {
        &self.budget
    }
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            annotations: Some(BTreeMap::from([(
                "rotator.dev/allowed-rotations".to_owned(),
                "*".to_owned(),
            )])),
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

/// The engine with a fake Kubernetes and a fake target sharing one log.
struct Engine {
    ctx: Arc<Context>,
    kubernetes: Arc<FakeKubernetes>,
    failures: Arc<Mutex<VecDeque<(&'static str, CallFailure)>>>,
    rotation: PasswordRotation,
    /// What the resource watch shows the engine.
    watched: Writer<PasswordRotation>,
    /// The index of that watch, which the Secret watch feeds too.
    index: ResourceIndex,
}

impl Engine {
    /// The resource watch delivers `event`: to its cache, then to its index, as it does.
    fn watch(&mut self, event: watcher::Event<PasswordRotation>) {
        self.watched.apply_watcher_event(&event);
        self.index.observe(&event);
    }

    fn new(spec: Value) -> Result<Self> {
        Self::in_shard(spec, None)
    }

    /// The engine of the operator run with `--shard <shard>`.
    fn in_shard(spec: Value, shard: Option<&str>) -> Result<Self> {
        let log: Log = Arc::default();
        let kubernetes = Arc::new(FakeKubernetes {
            log: log.clone(),
            ..FakeKubernetes::default()
        });
        for s in [
            secret(
                "rs-admin",
                &[("username", "admin@x"), ("password", "Admin-Pass-123")],
            ),
            secret(
                WORKLOAD_SECRET,
                &[("username", "orders-app"), ("password", OLD)],
            ),
        ] {
            let name = s.metadata.name.clone().unwrap_or_default();
            kubernetes.secrets.lock().unwrap().insert(name, s);
        }
        let failures: Arc<Mutex<VecDeque<(&'static str, CallFailure)>>> = Arc::default();
        let connect: Connector = {
            let (log, failures) = (log.clone(), failures.clone());
            Arc::new(move |_, with| {
                let lockout = Lockout {
                    failed_logins: Some(5),
                    hold: Duration::from_secs(60),
                };
                let budget = Budget::of(&with, "fake-cluster:1", "admin@x", lockout);
                Ok(Box::new(FakeTarget {
                    log: log.clone(),
                    failures: failures.clone(),
                    budget,
                }))
            })
        };
        // Never contacted: every read and write goes through the fakes.
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse()?))?;
        let settings = Settings {
            namespaces: vec![NS.into()],
            concurrency: 1,
            request_timeout: Duration::from_secs(1),
            calls_per_cluster: 4,
            allow_insecure_http: false,
            allow_verify: false,
            fail_point: None,
            shard: shard.map(str::to_owned),
            cluster_target_namespace: None,
            cleanup_timeout: Duration::from_secs(300),
            shard_patience: Duration::from_secs(300),
        };
        let watched = Writer::<PasswordRotation>::default();
        let resources = Watched::new(watched.as_reader());
        let index = resources.index.clone();
        let mut targets = Writer::<RotationTarget>::default();
        targets.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2",
            "kind": "RotationTarget",
            "metadata": {"name": "rs", "namespace": NS},
            "spec": {"redisSoftware": {
                "url": "https://rs.example:9443",
                "credentialsSecret": "rs-admin",
                "caSecret": {"name": "rs-admin", "key": "username"},
            }},
        }))?));
        let ctx = Context::new(
            client,
            kubernetes.clone(),
            connect,
            vec![resources],
            TargetIndex::of(vec![targets.as_reader()]),
            settings,
            Arc::new(Metrics::new()),
        );
        let mut base = json!({
            "target": {"ref": {"kind": "RotationTarget", "name": "rs"}, "user": "orders-app"},
            "secret": {"name": WORKLOAD_SECRET},
            "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s"},
        });
        if let (Some(base), Some(spec)) = (base.as_object_mut(), spec.as_object()) {
            base.extend(spec.clone());
        }
        let rotation: PasswordRotation = serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2",
            "kind": "PasswordRotation",
            "metadata": {
                "name": NAME, "namespace": NS, "uid": "u-1", "generation": 1,
                "finalizers": ["rotator.dev/cleanup"],
            },
            "spec": base,
        }))?;
        Ok(Engine {
            ctx,
            kubernetes,
            failures,
            rotation,
            watched,
            index,
        })
    }

    fn fail(&self, call: &'static str, failure: CallFailure) {
        self.failures.lock().unwrap().push_back((call, failure));
    }

    /// Reconciles as the controller does, each time from the status last written, until
    /// `done` holds for it; errors are retried, as the controller's backoff would.
    async fn run_until(
        &mut self,
        done: impl Fn(&PasswordRotationStatus) -> bool,
    ) -> Result<PasswordRotationStatus> {
        for _ in 0..50 {
            self.rotation.status = self.kubernetes.status.lock().unwrap().clone();
            self.rotation.metadata.resource_version = self.kubernetes.version();
            let _ = controller::apply(&self.ctx, self.rotation.clone()).await;
            if let Some(status) = self.kubernetes.status.lock().unwrap().clone()
                && done(&status)
            {
                self.rotation.status = Some(status.clone());
                return Ok(status);
            }
        }
        bail!("never done: {:#?}", entries(&self.kubernetes.log))
    }

    fn state_secret(&self) -> Option<Secret> {
        let secrets = self.kubernetes.secrets.lock().unwrap();
        secrets.get(&format!("{NAME}-rotation")).cloned()
    }

    fn log(&self) -> Vec<String> {
        entries(&self.kubernetes.log)
    }

    fn published(&self) -> String {
        let secrets = self.kubernetes.secrets.lock().unwrap();
        let data = secrets[WORKLOAD_SECRET].data.clone().unwrap_or_default();
        String::from_utf8(data["password"].0.clone()).unwrap()
    }
}

fn rotated(status: &PasswordRotationStatus) -> bool {
    status.phase == Some(Phase::Idle) && status.last_rotation_time.is_some()
}

#[tokio::test]
async fn every_effect_is_recorded_before_it_is_made() -> Result<()> {
    let mut engine = Engine::new(json!({"rotationRequest": "now"}))?;
    engine.run_until(rotated).await?;
    let log = engine.log();
    let state = first(&log, "create secret orders-cache-rotation");
    let add = first(&log, "target add previous=true pending=true");
    let publish = first(&log, "patch secret orders-redis");
    let rollout = first(&log, "rollout ");
    let retired = first(&log, "status Rotating Retired");
    let retire = first(&log, "target retire previous=true pending=true");
    let finished = first(&log, "status Idle -");
    let forget = first(&log, "delete secret orders-cache-rotation");
    assert!(
        state < add,
        "the new password is kept before it is added: {log:#?}"
    );
    assert!(add < publish, "{log:#?}");
    assert!(publish < rollout && rollout < retired, "{log:#?}");
    assert!(
        retired < retire,
        "Retired is recorded before the delete: {log:#?}"
    );
    assert!(
        retire < finished && finished < forget,
        "status before the state goes: {log:#?}"
    );
    assert_eq!(log.iter().filter(|e| e.starts_with("target ")).count(), 2);
    assert_ne!(engine.published(), OLD);
    Ok(())
}

/// A new resource with no rotation asked for or due costs one write, its status: a finalizer
/// guards only what a deletion must undo, and nothing is there to undo until a rotation
/// starts. At 100,000 new resources that halves the writes of getting ready.
#[tokio::test]
async fn a_new_idle_resource_is_written_once_and_gets_no_finalizer() -> Result<()> {
    let mut engine = Engine::new(json!({}))?;
    engine.rotation.metadata.finalizers = None;
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    let log = engine.log();
    let writes: Vec<&String> = log
        .iter()
        .filter(|e| e.starts_with("status ") || e.starts_with("finalizers "))
        .collect();
    assert_eq!(writes, ["status Idle -"], "{log:#?}");
    assert!(!log.iter().any(|e| e.starts_with("target ")), "{log:#?}");
    let state = format!("{NAME}-rotation");
    assert_eq!(
        engine.kubernetes.reads(&state),
        1,
        "the watch listed no Secrets yet"
    );

    // Once the Secret watch has listed the namespace without its state Secret, a new
    // resource reads none.
    engine.watch(watcher::Event::Apply(engine.rotation.clone()));
    engine.index.observe_secret(&watcher::Event::Init);
    engine.index.observe_secret(&watcher::Event::InitDone);
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(engine.kubernetes.reads(&state), 1);
    Ok(())
}

/// A new resource gets its finalizer beside the first reads and the state Secret, and before
/// the first change to the target, which a deletion must be able to undo.
#[tokio::test]
async fn the_target_is_changed_only_once_the_finalizer_is_in_place() -> Result<()> {
    let mut engine = Engine::new(json!({"rotationRequest": "now"}))?;
    engine.rotation.metadata.finalizers = None;
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    let log = engine.log();
    let state = first(&log, "create secret orders-cache-rotation");
    let finalizer = first(&log, "finalizers [\"rotator.dev/cleanup\"]");
    let add = first(&log, "target add");
    assert!(
        state < finalizer,
        "the state Secret does not wait for the finalizer: {log:#?}"
    );
    assert!(finalizer < add, "{log:#?}");
    Ok(())
}

/// The writes of one rotation with no workload to restart, in order: only those that crash
/// safety needs (steps whose replay is safe are written with the next write), and Events only
/// at its start and end.
#[tokio::test]
async fn a_rotation_makes_seven_kubernetes_writes() -> Result<()> {
    let mut engine = Engine::new(json!({
        "rotationRequest": "now",
        "rollout": {"workloads": [], "overlap": "0s"},
    }))?;
    let status = engine.run_until(rotated).await?;
    let writes: Vec<String> = engine
        .log()
        .into_iter()
        .filter(|e| {
            ["create ", "patch ", "delete ", "status ", "event "]
                .iter()
                .any(|write| e.starts_with(write))
        })
        .map(|e| e.split(" [").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        writes,
        [
            "create secret orders-cache-rotation",
            "event Started",
            "patch secret orders-redis",
            "status Rotating Retired",
            "status Idle -",
            "delete secret orders-cache-rotation",
            "event Rotated",
        ]
    );
    assert_eq!(status.handled_rotation_request.as_deref(), Some("now"));
    let before = engine.log();
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(
        engine.log(),
        before,
        "another reconcile of the rotated resource writes nothing"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_add_is_retried_and_nothing_is_published_before_it_lands() -> Result<()> {
    let mut engine = Engine::new(json!({"rotationRequest": "now"}))?;
    for _ in 0..2 {
        engine.fail(
            "add",
            CallFailure::Transient {
                detail: "503".into(),
            },
        );
    }
    engine.run_until(rotated).await?;
    let log = engine.log();
    let adds: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e.starts_with("target add"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(adds.len(), 3, "two failures, then the add: {log:#?}");
    assert!(
        adds[2] < first(&log, "patch secret orders-redis"),
        "{log:#?}"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.starts_with("event TargetUnavailable"))
            .count(),
        2,
        "a Warning event per failure: {log:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_admin_blocks_before_anything_is_published() -> Result<()> {
    let mut engine = Engine::new(json!({"rotationRequest": "now"}))?;
    engine.fail(
        "add",
        CallFailure::AdminUnauthorized {
            detail: "401".into(),
        },
    );
    let status = engine
        .run_until(|s| s.phase == Some(Phase::Blocked))
        .await?;
    assert_eq!(status.step, Some(Step::Staged));
    let log = engine.log();
    assert!(
        log.iter()
            .all(|e| !e.starts_with("patch secret orders-redis")),
        "{log:#?}"
    );
    assert!(log.iter().any(|e| e == "event Unauthorized"), "{log:#?}");
    assert_eq!(engine.published(), OLD);
    Ok(())
}

#[tokio::test]
async fn deleted_before_publishing_the_new_password_is_rolled_back() -> Result<()> {
    let mut engine =
        Engine::new(json!({"rotationRequest": "now", "verify": {"endpoint": "db:1"}}))?;
    // verify.endpoint is refused without --allow-verify-endpoints: the rotation never starts.
    let status = engine
        .run_until(|s| s.conditions.iter().any(|c| c.reason == "InvalidSpec"))
        .await?;
    assert_eq!(status.step, None);
    assert!(engine.log().iter().all(|e| !e.starts_with("target ")));

    let mut engine = Engine::new(json!({"rotationRequest": "now"}))?;
    engine.fail(
        "add",
        CallFailure::Transient {
            detail: "503".into(),
        },
    );
    // Staged, then the add fails: delete the resource now.
    engine.run_until(|s| s.step == Some(Step::Staged)).await?;
    controller::cleanup(&engine.ctx, engine.rotation.clone()).await?;
    // The workload Secret is marked first (no publish decided before goes through after),
    // and the state Secret kept (an add decided before may still land).
    let log = engine.log();
    let roll_back = first(&log, "target roll_back");
    assert!(
        first(&log, "patch secret orders-redis") < roll_back,
        "{log:#?}"
    );
    assert!(
        roll_back < first(&log, "patch secret orders-cache-rotation"),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|e| e.starts_with("delete secret")),
        "{log:#?}"
    );
    assert!(log.iter().any(|e| e == "event RolledBack"), "{log:#?}");
    assert_eq!(engine.published(), OLD);

    // A new resource of the same name finds the kept state Secret and the mark: it says so
    // and waits, changing nothing, rather than retry in silence.
    engine.rotation.metadata.uid = Some("u-2".into());
    engine.rotation.metadata.deletion_timestamp = None;
    *engine.kubernetes.status.lock().unwrap() = None;
    let before = engine.log().len();
    let status = engine
        .run_until(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "RolledBack")
        })
        .await?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert!(
        ready.is_some_and(|c| c.message.contains("orders-cache-rotation")),
        "{ready:?}"
    );
    let after = &engine.log()[before..];
    assert!(
        after
            .iter()
            .all(|e| !e.starts_with("target ") && !e.starts_with("patch secret orders-redis")),
        "{after:#?}"
    );
    // Deleting the new resource leaves the kept Secret as it is: it is not its own.
    let before = engine.log().len();
    controller::cleanup(&engine.ctx, engine.rotation.clone()).await?;
    let after = &engine.log()[before..];
    assert!(
        after
            .iter()
            .all(|e| !e.starts_with("target ") && !e.contains(" secret ")),
        "{after:#?}"
    );
    assert!(engine.state_secret().is_some());
    Ok(())
}

/// Stages a rotation in shard a, then relabels its state Secret as shard z's (as if shard z
/// had staged it and the resource were relabelled into shard a since): shard a's operator
/// reports it, once, and does nothing else. Returns the log's length before the report.
async fn staged_by_shard_z() -> Result<(Engine, usize)> {
    let mut engine = Engine::in_shard(json!({"rotationRequest": "now"}), Some("a"))?;
    engine.fail(
        "add",
        CallFailure::Transient {
            detail: "503".into(),
        },
    );
    engine.run_until(|s| s.step == Some(Step::Staged)).await?;
    let staged = engine.state_secret().expect("the state Secret");
    assert_eq!(
        staged.metadata.labels.as_ref().unwrap()[SHARD_LABEL],
        "a",
        "the state Secret carries the shard of the operator that staged it"
    );
    relabel(&engine, "z");
    let before = engine.log().len();
    engine.rotation.status = engine.kubernetes.status.lock().unwrap().clone();
    for _ in 0..3 {
        let error = controller::apply(&engine.ctx, engine.rotation.clone())
            .await
            .expect_err("another shard's rotation");
        assert_eq!(error.kind(), "ShardMoved");
        engine.rotation.status = engine.kubernetes.status.lock().unwrap().clone();
    }
    let log = engine.log();
    assert_eq!(
        log[before..],
        ["status Rotating Staged", "event ShardMoved"],
        "one report, and nothing else: {log:#?}"
    );
    let status = engine.rotation.status.clone().unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ShardMoved")
    );
    assert!(
        ready.message.starts_with("rotation ")
            && ready
                .message
                .contains("was started by shard z; this operator (shard a)"),
        "{}",
        ready.message
    );
    Ok((engine, before))
}

fn relabel(engine: &Engine, shard: &str) {
    let mut secrets = engine.kubernetes.secrets.lock().unwrap();
    let state = secrets.get_mut(&format!("{NAME}-rotation")).unwrap();
    let labels = state.metadata.labels.as_mut().unwrap();
    labels.insert(SHARD_LABEL.into(), shard.into());
}

#[tokio::test]
async fn a_rotation_staged_by_another_shard_is_left_alone_until_handed_over() -> Result<()> {
    let (mut engine, before) = staged_by_shard_z().await?;
    assert!(engine.state_secret().is_some());
    assert_eq!(engine.published(), OLD);

    // Handed over to shard a: it finishes the rotation, and is Ready again meanwhile.
    relabel(&engine, "a");
    let status = engine.run_until(rotated).await?;
    let log = engine.log();
    assert!(
        log[before + 2..].iter().all(|e| !e.contains("ShardMoved")),
        "{log:#?}"
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "{status:#?}"
    );
    assert_ne!(engine.published(), OLD);
    Ok(())
}

/// Deleted while another shard's rotation is in flight: nothing rolled back, the state
/// Secret orphaned with both passwords, and the resource released rather than left
/// Terminating.
#[tokio::test]
async fn deleting_a_rotation_another_shard_staged_keeps_both_passwords() -> Result<()> {
    let (engine, before) = staged_by_shard_z().await?;
    controller::cleanup(&engine.ctx, engine.rotation.clone()).await?;
    let log = engine.log();
    assert_eq!(
        log[before + 2..],
        [
            format!("patch secret {NAME}-rotation []"),
            "event LeftBothValid".into()
        ],
        "{log:#?}"
    );
    assert!(engine.state_secret().is_some());
    assert_eq!(engine.published(), OLD);
    Ok(())
}

/// The reconciles that follow this process's own write of a settled status (its echoes
/// through the watch) do not look for a state Secret it knows is not there; at a version
/// another actor wrote, they do, unless the Secret watch listed the namespace without it.
#[tokio::test]
async fn the_echoes_of_a_settled_write_read_no_state_secret() -> Result<()> {
    let mut engine = Engine::new(json!({}))?;
    let settled = |s: &PasswordRotationStatus| {
        s.phase == Some(Phase::Idle)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    };
    engine.run_until(settled).await?;
    let state = format!("{NAME}-rotation");
    let first = engine.kubernetes.reads(&state);
    assert_eq!(first, 1, "the first reconcile looks for one");

    engine.rotation.metadata.finalizers = Some(vec![password_rotator::resource::FINALIZER.into()]);
    engine.rotation.metadata.resource_version = engine.kubernetes.version();
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(engine.kubernetes.reads(&state), first, "its own echoes");

    engine.rotation.metadata.resource_version = Some("1000".into());
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(
        engine.kubernetes.reads(&state),
        first + 1,
        "a version this process did not write settled"
    );

    // After a restart: the Secret watch listed the namespace's Secrets, without this one.
    engine.watch(watcher::Event::Apply(engine.rotation.clone()));
    let listed = |name: &str| -> Result<PartialObjectMeta<Secret>> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
        }))?)
    };
    engine.index.observe_secret(&watcher::Event::Init);
    engine
        .index
        .observe_secret(&watcher::Event::InitApply(listed(WORKLOAD_SECRET)?));
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(engine.kubernetes.reads(&state), first + 2, "not listed yet");
    engine.index.observe_secret(&watcher::Event::InitDone);
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(
        engine.kubernetes.reads(&state),
        first + 2,
        "listed without a state Secret"
    );
    engine
        .index
        .observe_secret(&watcher::Event::Apply(listed(&state)?));
    controller::apply(&engine.ctx, engine.rotation.clone()).await?;
    assert_eq!(
        engine.kubernetes.reads(&state),
        first + 3,
        "listed with one"
    );
    Ok(())
}

/// What is kept for a resource (its admin Secret as read, its place in the backoff, which
/// version of it is fresh) stays while the watch shows the resource and goes once it does not:
/// a deleted resource's admin credentials do not stay in memory, and churn does not grow the
/// operator.
#[tokio::test]
async fn what_is_kept_for_a_resource_goes_with_it() -> Result<()> {
    let mut engine = Engine::new(json!({"rotationRequest": "first"}))?;
    engine.watch(watcher::Event::Apply(engine.rotation.clone()));
    engine.run_until(rotated).await?;
    let read_for_the_first = engine.kubernetes.reads("rs-admin");
    assert!(read_for_the_first >= 1);

    let rotate_again = async |engine: &mut Engine, request: &str| -> Result<()> {
        engine.rotation.spec.rotation_request = Some(request.into());
        engine
            .run_until(|s| s.handled_rotation_request.as_deref() == Some(request) && rotated(s))
            .await?;
        Ok(())
    };
    engine.ctx.forget_the_gone(Timestamp::now());
    rotate_again(&mut engine, "second").await?;
    assert_eq!(
        engine.kubernetes.reads("rs-admin"),
        read_for_the_first,
        "kept while the watch shows the resource"
    );

    engine.watch(watcher::Event::Delete(engine.rotation.clone()));
    engine.ctx.forget_the_gone(Timestamp::now());
    rotate_again(&mut engine, "third").await?;
    assert!(
        engine.kubernetes.reads("rs-admin") > read_for_the_first,
        "read again once the resource was gone"
    );
    Ok(())
}
