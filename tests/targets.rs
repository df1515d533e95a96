//! The same end-to-end scenarios for every target, written once: a full rotation with
//! workloads authenticating throughout, a SIGKILL after every step, target faults, a wrong
//! admin, and an idle restart that writes nothing. Each runs the operator process on the local
//! control plane against the target's real parts (redis-server and the Redis Software API test
//! server; redis-servers in replication; the ONTAP API test server), and proves with real
//! logins which passwords work.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use common::checks::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use password_rotator::resource::{Phase, Step, restart_annotation_key};
use password_rotator::targets::redis::client::ADMIN_ACL_RULES;
use rotator_test_support::api_server::FaultRule;
use rotator_test_support::cluster;
use rotator_test_support::ontap_server::{AccountConfig, OntapServer, OntapServerConfig};
use rotator_test_support::redis_topology::{Options, Persist, Topology};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const ROTATION: &str = "orders-cache";
const DEPLOYMENT: &str = "orders";
const ONTAP_ADMIN: (&str, &str) = ("admin", "Ontap-Admin-Pa55word");
const ONTAP_A: (&str, &str) = ("orders-a", "Orders-A-Pa55word-1");
const ONTAP_B: (&str, &str) = ("orders-b", "Orders-B-Pa55word-1");

/// What holds the passwords, behind the operator.
enum Backend {
    /// The harness's redis-server and Redis Software API test server.
    RedisSoftware,
    Redis(Mutex<Topology>),
    Ontap(Arc<OntapServer>),
}

/// One target's parts and the Secrets that reach them. The workload Secret is `USER_SECRET`
/// for every target: `username` and `password`.
struct Fixture {
    backend: Backend,
    /// The resource's `spec.target`: the RotationTarget and the object there.
    target: Value,
    /// The admin Secret and its login.
    admin_secret: &'static str,
    admin: (String, String),
    initial: (String, String),
    /// How the target's status begins its identity and its version, and whether the system
    /// presents a certificate.
    says: (&'static str, &'static str, bool),
}

impl Fixture {
    /// The harness's own parts: its Secrets are in place already.
    async fn redis_software(_: &mut Harness) -> Result<Self> {
        Ok(Fixture {
            backend: Backend::RedisSoftware,
            target: json!({"ref": {"kind": "RotationTarget", "name": TARGET}, "user": USER}),
            admin_secret: "rs-admin",
            admin: (ADMIN_EMAIL.into(), ADMIN_PASSWORD.into()),
            initial: (USER.into(), USER_PASSWORD.into()),
            says: ("cluster.test", "7.8.4-95", true),
        })
    }

    async fn redis(h: &mut Harness) -> Result<Self> {
        let topology =
            Topology::replicated(&Options::new(Persist::AclFile, ADMIN_ACL_RULES)).await?;
        let admin = (topology.admin.user.clone(), topology.admin.password.clone());
        let initial = (topology.app.user.clone(), topology.app.password.clone());
        h.put_secret(
            "redis-admin",
            &[("username", &admin.0), ("password", &admin.1)],
        )
        .await?;
        h.put_secret(
            USER_SECRET,
            &[("username", &initial.0), ("password", &initial.1)],
        )
        .await?;
        h.put_target(
            "redis",
            json!({"redis": {
                "endpoints": topology.addrs(),
                "credentialsSecret": "redis-admin",
                "insecurePlaintext": true,
            }}),
        )
        .await?;
        h.operator_flags.push("--allow-insecure-http");
        Ok(Fixture {
            backend: Backend::Redis(Mutex::new(topology)),
            target: json!({"ref": {"kind": "RotationTarget", "name": "redis"}, "user": initial.0}),
            admin_secret: "redis-admin",
            admin,
            initial,
            says: ("replication:", "", false),
        })
    }

    async fn ontap(h: &mut Harness) -> Result<Self> {
        let server = OntapServer::start(OntapServerConfig::new(vec![
            AccountConfig::cluster(ONTAP_ADMIN.0, "admin", ONTAP_ADMIN.1),
            AccountConfig::cluster(ONTAP_A.0, "readonly", ONTAP_A.1),
            AccountConfig::cluster(ONTAP_B.0, "readonly", ONTAP_B.1),
        ]))
        .await?;
        h.put_secret(
            "ontap-admin",
            &[("username", ONTAP_ADMIN.0), ("password", ONTAP_ADMIN.1)],
        )
        .await?;
        h.put_secret(
            "ontap-ca",
            &[("ca.crt", &server.ca_pem().context("an https server")?)],
        )
        .await?;
        h.put_secret(
            USER_SECRET,
            &[("username", ONTAP_A.0), ("password", ONTAP_A.1)],
        )
        .await?;
        h.put_target(
            "ontap",
            json!({"ontap": {
                "url": server.base_url(),
                "credentialsSecret": "ontap-admin",
                "caSecret": {"name": "ontap-ca"},
            }}),
        )
        .await?;
        Ok(Fixture {
            backend: Backend::Ontap(Arc::new(server)),
            target: json!({
                "ref": {"kind": "RotationTarget", "name": "ontap"},
                "alternatingAccounts": [ONTAP_A.0, ONTAP_B.0],
            }),
            admin_secret: "ontap-admin",
            admin: (ONTAP_ADMIN.0.into(), ONTAP_ADMIN.1.into()),
            initial: (ONTAP_A.0.into(), ONTAP_A.1.into()),
            says: ("ontap:", "NetApp Release 9.15.1", true),
        })
    }

    /// A resource that rotates the target's password, restarts Deployment `orders` and keeps
    /// both passwords `overlap` after publishing; merged with `overrides`.
    fn spec(&self, overrides: Value) -> Value {
        let mut spec = json!({
            "target": self.target,
            "secret": {"name": USER_SECRET},
            "rollout": {
                "workloads": [{"kind": "Deployment", "name": DEPLOYMENT}],
                "overlap": "1s",
                "timeout": "5m",
            },
        });
        merge(&mut spec, overrides);
        spec
    }

    /// Whether the target accepts `password` for `user` now (on every node).
    async fn accepts(&self, h: &Harness, user: &str, password: &str) -> bool {
        match &self.backend {
            Backend::RedisSoftware => h.redis.auth(user, password).await.unwrap_or(false),
            Backend::Redis(topology) => {
                for node in &topology.lock().await.nodes {
                    if !node.auth(user, password).await.unwrap_or(false) {
                        return false;
                    }
                }
                true
            }
            Backend::Ontap(server) => server.login_works(user, password),
        }
    }

    /// Makes the target fail transiently until [`heal`](Self::heal).
    async fn break_transiently(&self, h: &Harness) -> Result<()> {
        match &self.backend {
            Backend::RedisSoftware => h.api.inject(FaultRule::status(503, 1000)),
            Backend::Redis(topology) => topology.lock().await.nodes[1].stop().await?,
            Backend::Ontap(server) => server.inject(FaultRule::status(503, 1000)),
        }
        Ok(())
    }

    async fn heal(&self, h: &Harness) -> Result<()> {
        match &self.backend {
            Backend::RedisSoftware => h.api.clear_faults(),
            Backend::Redis(topology) => topology.lock().await.nodes[1].restart().await?,
            Backend::Ontap(server) => server.clear_faults(),
        }
        Ok(())
    }

    /// Calls that reached the target so far: requests, or `ACL GETUSER`/`SETUSER` on the nodes.
    async fn calls(&self, h: &Harness) -> Result<u64> {
        Ok(match &self.backend {
            Backend::RedisSoftware => h.api.requests().len() as u64,
            Backend::Redis(topology) => {
                let mut calls = 0;
                for node in &topology.lock().await.nodes {
                    let info = match node.command(&["INFO", "commandstats"]).await? {
                        redis::Value::BulkString(bytes) => String::from_utf8(bytes)?,
                        redis::Value::VerbatimString { text, .. } => text,
                        other => anyhow::bail!("INFO answered {other:?}"),
                    };
                    calls += info
                        .lines()
                        .filter(|l| {
                            l.starts_with("cmdstat_acl|getuser:")
                                || l.starts_with("cmdstat_acl|setuser:")
                        })
                        .filter_map(|l| {
                            l.split("calls=")
                                .nth(1)?
                                .split(',')
                                .next()?
                                .parse::<u64>()
                                .ok()
                        })
                        .sum::<u64>();
                }
                calls
            }
            Backend::Ontap(server) => server.requests().len() as u64,
        })
    }

    /// Failed logins of the admin so far, where the target counts them.
    fn failed_admin_logins(&self, h: &Harness) -> Option<u32> {
        match &self.backend {
            Backend::RedisSoftware => Some(h.api.failed_logins(&self.admin.0)),
            Backend::Redis(_) => None,
            Backend::Ontap(server) => Some(server.failed_logins(&self.admin.0)),
        }
    }

    /// The user name and password the workload Secret holds.
    /// The Secret's user name and password, from one read: two reads straddling the publish
    /// would pair the old account with the new password, which no pod ever does.
    async fn published(&self, h: &Harness) -> Result<(String, String)> {
        let secret = h.secrets().get(USER_SECRET).await?;
        let value = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                .with_context(|| format!("{USER_SECRET} holds no {key}"))
        };
        Ok((value("username")?, value("password")?))
    }

    /// The rotation is done: the Secret's credentials work, the initial ones are refused.
    async fn assert_rotated(&self, h: &Harness) -> Result<(String, String)> {
        let (user, password) = self.published(h).await?;
        assert_ne!(password, self.initial.1, "the password was rotated");
        assert!(
            self.accepts(h, &user, &password).await,
            "the published credentials work"
        );
        assert!(
            !self.accepts(h, &self.initial.0, &self.initial.1).await,
            "the initial password is refused"
        );
        Ok((user, password))
    }

    /// After any step: the workload Secret's credentials work. Returns every password
    /// Kubernetes holds for the rotation, to check later that none leaked.
    async fn check_invariants(&self, h: &Harness) -> Result<Vec<String>> {
        let (user, password) = self.published(h).await?;
        assert!(
            self.accepts(h, &user, &password).await,
            "the workload Secret holds credentials the target refuses"
        );
        let mut known = vec![password];
        for key in ["pending", "previous", "retirement"] {
            if let Some(value) = h.secret_value(&format!("{ROTATION}-rotation"), key).await? {
                known.push(value);
            }
        }
        Ok(known)
    }
}

/// Workloads that authenticate throughout: pods that read the Secret, and a pod of the old
/// ReplicaSet that keeps the initial credentials until the Deployment has rolled out.
struct Workloads {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
    failures: Arc<AtomicU32>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workloads {
    fn start(h: &Arc<Harness>, fixture: &Arc<Fixture>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU32::new(0));
        let failures = Arc::new(AtomicU32::new(0));
        let reader = {
            let (stop, attempts, failures) = (stop.clone(), attempts.clone(), failures.clone());
            let (h, fixture) = (h.clone(), fixture.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (user, password) = fixture.published(&h).await.expect("the Secret");
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if !fixture.accepts(&h, &user, &password).await {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let old_pod = {
            let (stop, attempts, failures) = (stop.clone(), attempts.clone(), failures.clone());
            let (h, fixture) = (h.clone(), fixture.clone());
            tokio::spawn(async move {
                let deployments: Api<Deployment> = h.namespace.api();
                let replaced = async || {
                    let d = deployments.get(DEPLOYMENT).await.expect("the Deployment");
                    let restarted = d
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref())
                        .and_then(|m| m.annotations.as_ref())
                        .is_some_and(|a| a.contains_key(&restart_annotation_key(ROTATION)));
                    restarted && cluster::rollout_complete(&d)
                };
                let (user, password) = fixture.initial.clone();
                while !stop.load(Ordering::Relaxed) && !replaced().await {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    // The rollout may complete, and the old password go, between the look at
                    // the Deployment and the login: a pod of the old ReplicaSet is gone by
                    // then. Only a refusal while the rollout is still incomplete is a failure.
                    if !fixture.accepts(&h, &user, &password).await && !replaced().await {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Workloads {
            stop,
            attempts,
            failures,
            tasks: vec![reader, old_pod],
        }
    }

    async fn stop(self) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("workload task");
        }
        (
            self.attempts.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

type Setup =
    for<'a> fn(&'a mut Harness) -> std::pin::Pin<Box<dyn Future<Output = Result<Fixture>> + 'a>>;

async fn prepare(prefix: &str, setup: Setup) -> Result<(Harness, Fixture)> {
    let mut h = Harness::new(prefix).await?;
    let fixture = setup(&mut h).await?;
    h.create_deployment(DEPLOYMENT, 2).await?;
    Ok((h, fixture))
}

async fn full_rotation_with_workloads(prefix: &str, setup: Setup) -> Result<()> {
    let (mut h, fixture) = prepare(prefix, setup).await?;
    h.start_operator()?;
    let spec = fixture.spec(json!({"rotationRequest": "first"}));
    let (h, fixture) = (Arc::new(h), Arc::new(fixture));
    let workloads = Workloads::start(&h, &fixture);
    h.create_rotation(ROTATION, spec).await?;
    h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    let (attempts, failures) = workloads.stop().await;
    assert!(
        attempts > 10,
        "the workloads authenticated ({attempts} attempts)"
    );
    assert_eq!(failures, 0, "no workload failed to authenticate");
    let (_, new) = fixture.assert_rotated(&h).await?;
    h.assert_no_leak(&[fixture.initial.1.clone(), new, fixture.admin.1.clone()])
        .await?;
    Arc::into_inner(h)
        .context("the workloads are done")?
        .finish()
        .await
}

/// The operator is killed right after each step (and right after it writes the workload
/// Secret), each time restarted until the next; then it runs to the end. Steps whose replay is
/// safe are not written on their own: killed right after them, the status still shows the
/// last step written (none before the old password is about to be deleted: the state Secret
/// holds the rotation, and the workload Secret's resourceVersion at Stage).
async fn sigkill_after_every_step(prefix: &str, setup: Setup) -> Result<()> {
    let (mut h, fixture) = prepare(prefix, setup).await?;
    let spec = fixture.spec(json!({"rotationRequest": "crash"}));
    h.create_rotation(ROTATION, spec).await?;
    let mut known: HashSet<String> = HashSet::new();
    for (point, step_left) in [
        ("after-step-Staged", None),
        ("after-step-Added", None),
        ("after-publish-write", None),
        ("after-step-Published", None),
        ("after-step-Retired", Some(Step::Retired)),
    ] {
        let mut args = h.operator_flags.clone();
        args.extend(["--fail-point", point]);
        let mut operator = h.spawn_operator(&args)?;
        let exit = tokio::time::timeout(Duration::from_secs(60), operator.wait())
            .await
            .with_context(|| format!("the operator never reached {point}"))??;
        assert!(!exit.success(), "the operator aborted at {point}");
        assert_eq!(step(&h.rotation(ROTATION).await?), step_left, "at {point}");
        known.extend(fixture.check_invariants(&h).await?);
    }
    h.start_operator()?;
    h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    known.extend(fixture.check_invariants(&h).await?);
    fixture.assert_rotated(&h).await?;
    let mut passwords: Vec<String> = known.into_iter().collect();
    passwords.push(fixture.admin.1.clone());
    h.assert_no_leak(&passwords).await?;
    h.finish().await
}

async fn target_faults_are_ridden_out(prefix: &str, setup: Setup) -> Result<()> {
    let (mut h, fixture) = prepare(prefix, setup).await?;
    h.start_operator()?;
    fixture.break_transiently(&h).await?;
    let spec = fixture.spec(json!({"rotationRequest": "faults"}));
    h.create_rotation(ROTATION, spec).await?;
    // Each retry warns again: one Event, repeated as a series, not an object per retry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let warnings: Vec<_> = h
            .events()
            .await?
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("TargetUnavailable"))
            .collect();
        let repeated = warnings
            .iter()
            .filter_map(|e| e.series.as_ref())
            .map(|series| series.count.unwrap_or(0))
            .max()
            .unwrap_or(0);
        if repeated >= 2 {
            assert_eq!(warnings.len(), 1, "the retries' warnings: {warnings:#?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no repeated TargetUnavailable event: {warnings:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (user, password) = fixture.published(&h).await?;
    assert_eq!(
        (user.as_str(), password.as_str()),
        (fixture.initial.0.as_str(), fixture.initial.1.as_str()),
        "nothing is published while the target fails"
    );
    fixture.heal(&h).await?;
    h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    fixture.assert_rotated(&h).await?;
    h.finish().await
}

async fn a_wrong_admin_blocks_until_the_secret_is_fixed(prefix: &str, setup: Setup) -> Result<()> {
    let (mut h, fixture) = prepare(prefix, setup).await?;
    h.put_secret(
        fixture.admin_secret,
        &[
            ("username", &fixture.admin.0),
            ("password", "Wrong-Admin-Pa55word"),
        ],
    )
    .await?;
    h.start_operator()?;
    let spec = fixture.spec(json!({"rotationRequest": "wrong-admin"}));
    h.create_rotation(ROTATION, spec).await?;
    let blocked = h
        .wait_for(ROTATION, Duration::from_secs(60), "Blocked", |r| {
            phase(r) == Some(Phase::Blocked)
        })
        .await?;
    assert_eq!(
        condition_reason(&blocked, "Ready").as_deref(),
        Some("Unauthorized"),
        "{}",
        ready_message(&blocked)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(failed) = fixture.failed_admin_logins(&h) {
        assert!(failed <= 2, "{failed} failed admin logins");
    }
    assert!(
        fixture
            .accepts(&h, &fixture.initial.0, &fixture.initial.1)
            .await,
        "nothing changed"
    );
    h.put_secret(
        fixture.admin_secret,
        &[
            ("username", &fixture.admin.0),
            ("password", &fixture.admin.1),
        ],
    )
    .await?;
    h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    fixture.assert_rotated(&h).await?;
    h.finish().await
}

async fn an_idle_restart_writes_nothing(prefix: &str, setup: Setup) -> Result<()> {
    let (mut h, fixture) = prepare(prefix, setup).await?;
    h.start_operator()?;
    let spec = fixture.spec(json!({"rotationRequest": "once", "schedule": {"every": "720h"}}));
    h.create_rotation(ROTATION, spec).await?;
    h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.kill_operator().await?;
    let before = h.rotation(ROTATION).await?;
    let secret_before = h.secrets().get(USER_SECRET).await?;
    let events_before = h.events().await?.len();
    let calls_before = fixture.calls(&h).await?;

    h.start_operator()?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        h.rotation(ROTATION).await?.metadata.resource_version,
        before.metadata.resource_version,
        "the restarted operator wrote to the resource"
    );
    assert_eq!(
        h.secrets()
            .get(USER_SECRET)
            .await?
            .metadata
            .resource_version,
        secret_before.metadata.resource_version,
        "the restarted operator wrote to the workload Secret"
    );
    assert_eq!(h.events().await?.len(), events_before, "new events");
    assert_eq!(
        fixture.calls(&h).await?,
        calls_before,
        "the restarted operator called the target"
    );
    h.finish().await
}

/// The target's status says it is Ready, what the system is and runs, and which certificate
/// it presents; the same check again after a restart is not made at once.
async fn the_target_says_what_it_is(prefix: &str, setup: Setup) -> Result<()> {
    let (mut h, fixture) = prepare(prefix, setup).await?;
    let name = fixture.target["ref"]["name"]
        .as_str()
        .context("the target's name")?
        .to_owned();
    h.start_operator()?;
    let status = h
        .wait_target(&name, Duration::from_secs(60), "Ready", |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await?
        .status
        .unwrap_or_default();
    let (identity, version, tls) = fixture.says;
    let said = status.identity.clone().unwrap_or_default();
    let complete = if identity.ends_with(':') {
        said.len() > identity.len()
    } else {
        said == identity
    };
    assert!(said.starts_with(identity) && complete, "{status:#?}");
    let runs = status.version.clone().unwrap_or_default();
    assert!(!runs.is_empty() && runs.starts_with(version), "{status:#?}");
    assert_eq!(
        status.certificate_expires_time.is_some(),
        tls,
        "{status:#?}"
    );
    let calls = fixture.calls(&h).await?;
    h.kill_operator().await?;
    h.start_operator()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        fixture.calls(&h).await?,
        calls,
        "a restart checked the target again at once"
    );
    h.finish().await
}

/// Two operator processes on one namespace at once, with no leader election between them (a
/// paused leader, a rolling upgrade, two installs), one of them SIGKILLed and started again in
/// every rotation: each of the rotations requested in turn completes, no workload login is
/// refused, and the resource is never Blocked.
async fn two_operators_at_once(prefix: &str, setup: Setup) -> Result<()> {
    const ROTATIONS: u64 = 20;
    let (h, fixture) = prepare(prefix, setup).await?;
    let flags = h.operator_flags.clone();
    let mut operators = [h.spawn_operator(&flags)?, h.spawn_operator(&flags)?];
    h.create_rotation(
        ROTATION,
        fixture.spec(json!({"rotationRequest": "split-1"})),
    )
    .await?;
    let (h, fixture) = (Arc::new(h), Arc::new(fixture));
    let workloads = Workloads::start(&h, &fixture);
    for round in 1..=ROTATIONS {
        let token = format!("split-{round}");
        if round > 1 {
            h.request_rotation(ROTATION, &token).await?;
        }
        // Each round kills the other process, at another moment of the rotation.
        tokio::time::sleep(Duration::from_millis(150 * (round % 7))).await;
        let victim = &mut operators[(round % 2) as usize];
        victim.start_kill()?;
        victim.wait().await?;
        *victim = h.spawn_operator(&flags)?;
        let rotation = h
            .wait_for(ROTATION, Duration::from_secs(120), &token, |r| {
                r.status.as_ref().is_some_and(|s| {
                    s.phase == Some(Phase::Blocked)
                        || (s.handled_rotation_request.as_deref() == Some(&token)
                            && s.step.is_none()
                            && s.phase == Some(Phase::Idle))
                })
            })
            .await?;
        let status = rotation.status.unwrap_or_default();
        assert_ne!(
            status.phase,
            Some(Phase::Blocked),
            "rotation {round} of {ROTATIONS}: {status:#?}"
        );
    }
    let (attempts, failures) = workloads.stop().await;
    assert!(attempts > 10, "the workloads authenticated ({attempts})");
    assert_eq!(failures, 0, "no workload failed to authenticate");
    let refused = h.notes_of("OldPasswordRejected").await?;
    assert!(refused.is_empty(), "{refused:?}");
    let (_, new) = fixture.assert_rotated(&h).await?;
    h.assert_no_leak(&[fixture.initial.1.clone(), new, fixture.admin.1.clone()])
        .await?;
    drop(operators);
    Arc::into_inner(h)
        .context("the workloads are done")?
        .finish()
        .await
}

/// One `#[tokio::test]` per scenario and target.
macro_rules! for_every_target {
    ($($scenario:ident),* $(,)?) => {
        mod on_redis_software {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() -> Result<()> {
                    super::$scenario("rs", |h| Box::pin(Fixture::redis_software(h))).await
                }
            )*
        }
        mod on_redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() -> Result<()> {
                    super::$scenario("redis", |h| Box::pin(Fixture::redis(h))).await
                }
            )*
        }
        mod on_ontap {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() -> Result<()> {
                    super::$scenario("ontap", |h| Box::pin(Fixture::ontap(h))).await
                }
            )*
        }
    };
}

for_every_target!(
    full_rotation_with_workloads,
    sigkill_after_every_step,
    target_faults_are_ridden_out,
    a_wrong_admin_blocks_until_the_secret_is_fixed,
    an_idle_restart_writes_nothing,
    the_target_says_what_it_is,
    two_operators_at_once,
);
