//! `make bench SCALE=100000` (`cargo bench --bench scale`): the operator at scale, measured
//! in one run on a control plane of its own (`target/cluster-scale`, removed at the end):
//! `BENCH_SCALE` PasswordRotations across `BENCH_SCALE / 100` namespaces, each with its
//! workload Secret, on 10 ClusterRotationTargets (open-source Redis: a redis-server each,
//! persisting its ACL users in an aclfile), beside `BENCH_SCALE / 2` unrelated Secrets of
//! 2 KiB.
//!
//! It reports the operator's fixed base (its RSS with nothing to watch), the time from its
//! start to every resource reconciled once, its RSS steady and peak and per resource beyond
//! the base, its CPU and the API server's requests per minute while idle, a burst of
//! `BENCH_SCALE / 10` rotations beside the API server's own ceiling for the same number of
//! writes at the operator's concurrency, and a restart: the time until the new process has
//! reconciled every (settled) resource once, and what that cost the API server. Writes
//! `target/bench/scale.json` and prints it.
//!
//! `BENCH_CONCURRENCY` sets the operator's `--concurrency` (the ceilings follow it). Smaller
//! while developing: `make bench SCALE=2000`.

#[path = "../common/mod.rs"]
mod common;
mod helpers;
// Shared by both benches, each using its part.
#[allow(dead_code)]
mod informer;
// Shared with the rotation bench, which uses the rest of them.
#[allow(dead_code)]
mod kube_metrics;
#[allow(dead_code)]
mod operator;
#[allow(dead_code)]
mod tracker;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use password_rotator::resource::PasswordRotation;
use password_rotator::rotation_target::ClusterRotationTarget;
use rotator_test_support::cluster;
use rotator_test_support::redis_topology::{Options, Persist, Topology};
use serde_json::{Value, json};

use helpers::{bounded, env_or, round};
use operator::Operator;
use tracker::{SET_LABEL, Tracker};

/// Requests in flight at once while the bench creates or patches objects.
const PARALLELISM: usize = 64;
const RESOURCES_PER_NAMESPACE: usize = 100;
const TARGETS: usize = 10;
const TARGETS_NAMESPACE: &str = "scale-targets";
const ADMIN_SECRET: &str = "redis-admin";
/// Labels the bench's namespaces, which the targets allow.
const SCALE_LABEL: &str = "bench.rotator.dev/scale";
const SET: &str = "scale";
const BURST_TOKEN: &str = "burst-1";
const UNRELATED_SECRET_BYTES: usize = 2048;

struct Settings {
    resources: usize,
    /// The operator's `--per-resource-metrics`: off by default here, as the README advises
    /// at this size (`BENCH_PER_RESOURCE_METRICS=true` measures it on).
    per_resource_metrics: bool,
    unrelated_secrets: usize,
    burst: usize,
    idle_seconds: u64,
    /// The operator's `--concurrency` (`BENCH_CONCURRENCY`, its default 16): the ceilings
    /// are measured at the same.
    concurrency: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let resources: usize = env_or("BENCH_SCALE", 100_000).max(RESOURCES_PER_NAMESPACE);
        Settings {
            resources,
            per_resource_metrics: env_or("BENCH_PER_RESOURCE_METRICS", false),
            unrelated_secrets: env_or("BENCH_UNRELATED_SECRETS", resources / 2),
            burst: env_or("BENCH_BURST", resources / 10).min(resources),
            idle_seconds: env_or("BENCH_IDLE_SECONDS", 60).max(10),
            concurrency: env_or("BENCH_CONCURRENCY", 16).max(1),
        }
    }

    fn namespaces(&self) -> usize {
        self.resources.div_ceil(RESOURCES_PER_NAMESPACE)
    }
}

fn namespace_name(n: usize) -> String {
    format!("scale-{n:04}")
}

fn resource_name(i: usize) -> String {
    format!("r{i:06}")
}

fn user_name(i: usize) -> String {
    format!("app-{i:06}")
}

fn initial_password(i: usize) -> String {
    format!("Initial-{i:06}-Pw-9x")
}

struct Clock(Instant);

impl Clock {
    fn progress(&self, message: impl AsRef<str>) {
        eprintln!(
            "scale [{:>7.1}s] {}",
            self.0.elapsed().as_secs_f64(),
            message.as_ref()
        );
    }
}

fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 1)
}

/// Creates `object` unless it exists (a run resumed on the same control plane).
async fn create<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", object.name_any())),
    }
}

/// A Secret holding `data`; `allowed`: every PasswordRotation of its namespace may use it.
fn secret(name: &str, data: &[(&str, &str)], allowed: bool) -> Secret {
    match allowed {
        true => common::secret(name, data),
        false => common::unshared_secret(name, data),
    }
}

struct Scale {
    clock: Clock,
    settings: Settings,
    client: Client,
    kubeconfig: std::path::PathBuf,
    /// One redis-server per target.
    systems: Vec<Topology>,
    log_dir: std::path::PathBuf,
}

impl Scale {
    /// The ACL user of every resource on its target's redis-server, in pipelined batches,
    /// then saved to the aclfile.
    async fn create_users(&self) -> Result<()> {
        for (t, system) in self.systems.iter().enumerate() {
            let node = &system.nodes[0];
            let client = redis::Client::open(format!("redis://{}", node.addr()))?;
            let mut con = client.get_multiplexed_async_connection().await?;
            let users: Vec<usize> = (t..self.settings.resources).step_by(TARGETS).collect();
            for chunk in users.chunks(1000) {
                let mut pipe = redis::pipe();
                for &i in chunk {
                    pipe.cmd("ACL")
                        .arg(&["SETUSER", &user_name(i), "reset", "on", "~*", "+@all"][..])
                        .arg(format!(">{}", initial_password(i)))
                        .ignore();
                }
                pipe.query_async::<()>(&mut con).await?;
            }
            node.command(&["ACL", "SAVE"]).await?;
        }
        Ok(())
    }

    async fn create_targets(&self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        create(&namespaces, &namespace(TARGETS_NAMESPACE)).await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), TARGETS_NAMESPACE);
        let targets: Api<ClusterRotationTarget> = Api::all(self.client.clone());
        for (t, system) in self.systems.iter().enumerate() {
            let admin = &system.admin;
            let credentials = format!("{ADMIN_SECRET}-{t}");
            let data = [
                ("username", admin.user.as_str()),
                ("password", &admin.password),
            ];
            create(&secrets, &secret(&credentials, &data, false)).await?;
            let target: ClusterRotationTarget = serde_json::from_value(json!({
                "apiVersion": "rotator.dev/v1alpha2",
                "kind": "ClusterRotationTarget",
                "metadata": {"name": format!("scale-t{t}")},
                "spec": {
                    "redis": {
                        "endpoints": [system.nodes[0].addr()],
                        "credentialsSecret": credentials,
                        "insecurePlaintext": true,
                    },
                    "allow": {
                        "namespaces": {"selector": {"matchLabels": {SCALE_LABEL: "true"}}},
                        "objects": ["app-*"],
                    },
                },
            }))?;
            create(&targets, &target).await?;
        }
        Ok(())
    }

    /// Every namespace with its resources, their workload Secrets and its share of the
    /// unrelated Secrets.
    async fn create_resources(&self) -> Result<()> {
        let namespaces = self.settings.namespaces();
        let unrelated_per_namespace = self.settings.unrelated_secrets.div_ceil(namespaces);
        let filler = "x".repeat(UNRELATED_SECRET_BYTES);
        let done = std::sync::atomic::AtomicUsize::new(0);
        bounded(0..namespaces, 4, |n| {
            let (filler, done) = (&filler, &done);
            async move {
                let ns = namespace_name(n);
                let mut labelled = namespace(&ns);
                labelled
                    .labels_mut()
                    .insert(SCALE_LABEL.into(), "true".into());
                create(&Api::all(self.client.clone()), &labelled).await?;
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
                let rotations: Api<PasswordRotation> = Api::namespaced(self.client.clone(), &ns);
                let first = n * RESOURCES_PER_NAMESPACE;
                let last = (first + RESOURCES_PER_NAMESPACE).min(self.settings.resources);
                bounded(first..last, PARALLELISM / 4, |i| {
                    let (secrets, rotations, ns) = (&secrets, &rotations, &ns);
                    async move {
                        let name = resource_name(i);
                        let user = user_name(i);
                        let password = initial_password(i);
                        let url = format!("redis://{user}@cache.{ns}.svc:6379/0");
                        let data = [
                            ("username", user.as_str()),
                            ("password", password.as_str()),
                            ("url", url.as_str()),
                        ];
                        create(secrets, &secret(&format!("{name}-redis"), &data, true)).await?;
                        create(rotations, &rotation(&name, &user, i % TARGETS)?).await
                    }
                })
                .await?;
                bounded(0..unrelated_per_namespace, PARALLELISM / 4, |k| {
                    let secrets = &secrets;
                    async move {
                        let name = format!("unrelated-{k:03}");
                        let data = [("tls.crt", filler.as_str())];
                        create(secrets, &secret(&name, &data, false)).await
                    }
                })
                .await?;
                let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if done % 50 == 0 || done == namespaces {
                    self.clock
                        .progress(format!("{done} of {namespaces} namespaces created"));
                }
                Ok(())
            }
        })
        .await
    }

    fn start_operator(&self, run: &str) -> Result<Operator> {
        let log = self.log_dir.join(format!("operator-{run}.log"));
        let per_resource = format!(
            "--per-resource-metrics={}",
            self.settings.per_resource_metrics
        );
        let concurrency = format!("--concurrency={}", self.settings.concurrency);
        let operator = Operator::spawn_with(
            &self.kubeconfig,
            &[
                "--cluster-target-namespace",
                TARGETS_NAMESPACE,
                "--allow-insecure-http",
                &per_resource,
                &concurrency,
            ],
            8,
            log,
        )?;
        self.clock.progress(format!(
            "operator started ({run}, pid {}, log {})",
            operator.pid(),
            operator.log.display()
        ));
        Ok(operator)
    }

    /// The operator's RSS with nothing to watch yet: the fixed base.
    async fn base(&self) -> Result<u64> {
        let mut operator = self.start_operator("base")?;
        operator
            .wait_quiet(Duration::from_secs(5), Duration::from_secs(120))
            .await?;
        let memory = operator.memory()?;
        operator.stop().await?;
        Ok(memory.now_kib)
    }

    /// Waits for `done`, sampling the operator's memory each second; returns how long it
    /// took and the highest RSS seen.
    async fn wait_sampling(
        &self,
        operator: &mut Operator,
        tracker: &Tracker,
        limit: Duration,
        what: &str,
        done: impl Fn(&tracker::State) -> (usize, usize),
    ) -> Result<Duration> {
        let start = Instant::now();
        let mut reported = Instant::now();
        loop {
            operator.alive()?;
            let (have, want) = tracker.with(&done);
            if have >= want {
                return Ok(start.elapsed());
            }
            if reported.elapsed() >= Duration::from_secs(15) {
                let memory = operator.memory()?;
                self.clock.progress(format!(
                    "{what}: {have} of {want} (RSS {} MiB)",
                    mib(memory.now_kib)
                ));
                reported = Instant::now();
            }
            ensure!(
                start.elapsed() < limit,
                "{what}: {have} of {want} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes `count` merge patches to Secrets of a namespace the operator has no resource
    /// in, `concurrency` at once: what the API server does for that many writes.
    async fn ceiling(&self, count: usize, concurrency: usize) -> Result<Duration> {
        let ns = "scale-ceiling";
        create(&Api::all(self.client.clone()), &namespace(ns)).await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let names: Vec<String> = (0..concurrency)
            .map(|k| format!("ceiling-{k:02}"))
            .collect();
        for name in &names {
            create(&secrets, &secret(name, &[("password", "x")], false)).await?;
        }
        let start = Instant::now();
        bounded(0..count, concurrency, |i| {
            let (secrets, name) = (&secrets, &names[i % concurrency]);
            async move {
                let patch = json!({"stringData": {"password": format!("p{i}")}});
                secrets
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .context("a ceiling write")?;
                Ok(())
            }
        })
        .await?;
        Ok(start.elapsed())
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn rotation(name: &str, user: &str, target: usize) -> Result<PasswordRotation> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2",
        "kind": "PasswordRotation",
        "metadata": {"name": name, "labels": {SET_LABEL: SET}},
        "spec": {
            "target": {
                "ref": {"kind": "ClusterRotationTarget", "name": format!("scale-t{target}")},
                "user": user,
            },
            "secret": {"name": format!("{name}-redis")},
            "rollout": {"overlap": "0s", "timeout": "5m"},
        },
    }))?)
}

/// What the operator reads or writes: the API server's counts have no client label, and the
/// control plane's own controllers renew their Leases and touch other kinds meanwhile.
const OPERATOR_READS: &[&str] = &[
    "passwordrotations",
    "rotationtargets",
    "clusterrotationtargets",
    "secrets",
    "events",
    "namespaces",
    "pods",
    "replicasets",
    "deployments",
    "statefulsets",
    "daemonsets",
];

/// Writes and other requests (not watches) to what the operator uses, between two
/// snapshots of the API server's metrics.
fn requests(before: &kube_metrics::Snapshot, after: &kube_metrics::Snapshot) -> (u64, u64) {
    let used = |key: &kube_metrics::Key| OPERATOR_READS.contains(&key.resource.as_str());
    let writes = kube_metrics::write_delta(before, after, used)
        .values()
        .sum();
    let all = kube_metrics::delta_by_verb(before, after, |key| used(key) && key.verb != "WATCH")
        .values()
        .sum();
    (writes, all)
}

async fn run(clock: Clock, settings: Settings) -> Result<Value> {
    let client = cluster::client().await?;
    let kubeconfig = cluster::kubeconfig_path();
    common::install_crd(&client).await?;
    let mut systems = Vec::new();
    for _ in 0..TARGETS {
        systems.push(Topology::standalone(&Options::new(Persist::AclFile, "+@all")).await?);
    }
    let log_dir = cluster::repo_root().join("target/bench/logs/scale");
    std::fs::create_dir_all(&log_dir)?;
    let scale = Scale {
        clock,
        settings,
        client: client.clone(),
        kubeconfig,
        systems,
        log_dir,
    };
    let s = &scale.settings;
    scale.clock.progress(format!(
        "{} resources in {} namespaces, {} unrelated Secrets, {TARGETS} targets, burst {}, \
         per-resource metrics {}, concurrency {}",
        s.resources,
        s.namespaces(),
        s.unrelated_secrets,
        s.burst,
        s.per_resource_metrics,
        s.concurrency
    ));

    let base_kib = scale.base().await?;
    scale
        .clock
        .progress(format!("fixed base: RSS {} MiB", mib(base_kib)));

    let created = Instant::now();
    scale.create_users().await?;
    scale.create_targets().await?;
    scale.create_resources().await?;
    let creation_seconds = created.elapsed().as_secs_f64();
    scale
        .clock
        .progress(format!("created everything in {creation_seconds:.0} s"));

    let tracker = Tracker::start(Api::all(client.clone())).await?;
    let total = s.resources;
    let before = kube_metrics::snapshot(&client).await?;
    let mut operator = scale.start_operator("scale")?;
    let to_ready = scale
        .wait_sampling(
            &mut operator,
            &tracker,
            Duration::from_secs(60 * 60),
            "reconciled once",
            |state| (state.settled_count("r"), total),
        )
        .await?;
    let at_ready = operator.memory()?;
    let (ready_writes, ready_requests) = requests(&before, &kube_metrics::snapshot(&client).await?);
    scale.clock.progress(format!(
        "every resource reconciled once {:.1} s after the start",
        to_ready.as_secs_f64()
    ));

    // The targets count their resources every 30 s: idle starts once they show them all.
    let targets: Api<ClusterRotationTarget> = Api::all(client.clone());
    loop {
        let counted: u64 = targets
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter_map(|t| t.status.as_ref())
            .map(|s| u64::from(s.resources))
            .sum();
        if counted == total as u64 {
            break;
        }
        operator.alive()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    operator
        .wait_quiet(Duration::from_secs(10), Duration::from_secs(600))
        .await?;
    let before = kube_metrics::snapshot(&client).await?;
    let ticks = operator.cpu_ticks()?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(s.idle_seconds)).await;
    let idle_elapsed = idle_started.elapsed().as_secs_f64();
    let idle_ticks = operator.cpu_ticks()? - ticks;
    let after = kube_metrics::snapshot(&client).await?;
    let steady = operator.memory()?;
    let (idle_writes, idle_requests) = requests(&before, &after);
    let per_minute = |n: u64| round(n as f64 * 60.0 / idle_elapsed, 1);
    let ticks_per_second = 100.0;
    let idle_cpu_percent = round(
        idle_ticks as f64 / ticks_per_second / idle_elapsed * 100.0,
        2,
    );
    scale.clock.progress(format!(
        "idle: {idle_cpu_percent}% of a core, {} writes and {} requests per minute, RSS {} MiB",
        per_minute(idle_writes),
        per_minute(idle_requests),
        mib(steady.now_kib)
    ));

    // The burst: one resource in ten of every namespace asks for a rotation.
    let burst: Vec<usize> = (0..s.resources)
        .filter(|i| i % (s.resources / s.burst.max(1)).max(1) == 0)
        .take(s.burst)
        .collect();
    let burst_len = burst.len();
    let before = kube_metrics::snapshot(&client).await?;
    let started = Instant::now();
    bounded(burst, PARALLELISM, |i| {
        let client = client.clone();
        async move {
            let ns = namespace_name(i / RESOURCES_PER_NAMESPACE);
            Api::<PasswordRotation>::namespaced(client, &ns)
                .patch(
                    &resource_name(i),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"rotationRequest": BURST_TOKEN}})),
                )
                .await
                .context("requesting a rotation")?;
            Ok(())
        }
    })
    .await?;
    let requested = started.elapsed();
    scale.clock.progress(format!(
        "{burst_len} rotations requested in {:.1} s",
        requested.as_secs_f64()
    ));
    let burst_time = started.elapsed()
        + scale
            .wait_sampling(
                &mut operator,
                &tracker,
                Duration::from_secs(60 * 60),
                "burst",
                |state| (state.completed_count("r", BURST_TOKEN), burst_len),
            )
            .await?;
    operator
        .wait_quiet(Duration::from_secs(5), Duration::from_secs(600))
        .await?;
    let after = kube_metrics::snapshot(&client).await?;
    let peak = operator.memory()?;
    let (burst_writes, _) = requests(&before, &after);
    // The bench's own patches are not the operator's.
    let operator_writes = burst_writes.saturating_sub(burst_len as u64);
    scale.clock.progress(format!(
        "burst of {burst_len} rotations done in {:.1} s, {operator_writes} writes",
        burst_time.as_secs_f64()
    ));
    operator.stop().await?;

    // A restart (an upgrade, a failover): every resource is settled, so getting ready again
    // is the watch's list and one look at each resource.
    let before = kube_metrics::snapshot(&client).await?;
    let mut operator = scale.start_operator("restart")?;
    let started = Instant::now();
    loop {
        operator.alive()?;
        if operator.reconciles().await?.unwrap_or(0) >= total as u64 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60 * 60),
            "the restarted operator never reconciled every resource"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let restart_to_ready = started.elapsed();
    let (restart_writes, restart_requests) =
        requests(&before, &kube_metrics::snapshot(&client).await?);
    operator.stop().await?;
    scale.clock.progress(format!(
        "restarted: every resource reconciled once {:.1} s after the start, {restart_writes} \
         writes, {restart_requests} requests",
        restart_to_ready.as_secs_f64()
    ));

    let ceiling = scale
        .ceiling(operator_writes as usize, s.concurrency)
        .await?;
    scale.clock.progress(format!(
        "the API server's ceiling for {operator_writes} writes at {} at once: {:.1} s",
        s.concurrency,
        ceiling.as_secs_f64()
    ));

    let ready_ceiling = scale.ceiling(ready_writes as usize, s.concurrency).await?;
    scale.clock.progress(format!(
        "the API server's ceiling for the {ready_writes} writes of getting ready: {:.1} s",
        ready_ceiling.as_secs_f64()
    ));
    // A comparison: its failure is reported, and loses none of the figures above.
    let peer = informer::controller_runtime(&scale.kubeconfig, total)
        .await
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    scale.clock.progress(format!(
        "controller-runtime beside the same resources: {peer}"
    ));
    let per_resource_kib = steady.now_kib.saturating_sub(base_kib) as f64 / total as f64;
    let ratio = burst_time.as_secs_f64() / ceiling.as_secs_f64().max(0.001);
    let bar = |pass: bool, value: Value, limit: &str| json!({"pass": pass, "value": value, "limit": limit});
    Ok(json!({
        "resources": total,
        "per_resource_metrics": s.per_resource_metrics,
        "concurrency": s.concurrency,
        "namespaces": s.namespaces(),
        "unrelated_secrets": s.unrelated_secrets,
        "targets": TARGETS,
        "creation_seconds": round(creation_seconds, 1),
        "start_to_ready_seconds": round(to_ready.as_secs_f64(), 1),
        "start_to_ready_api_server_ceiling_seconds": round(ready_ceiling.as_secs_f64(), 1),
        "start_to_ready_per_resource": {
            "writes": round(ready_writes as f64 / total as f64, 2),
            "requests": round(ready_requests as f64 / total as f64, 2),
        },
        "restart_to_ready": {
            "seconds": round(restart_to_ready.as_secs_f64(), 1),
            "writes": restart_writes,
            "requests_per_resource": round(restart_requests as f64 / total as f64, 2),
        },
        "memory_mib": {
            "base": mib(base_kib),
            "at_ready": mib(at_ready.now_kib),
            "steady": mib(steady.now_kib),
            "peak": mib(peak.peak_kib),
            "per_resource_kib_beyond_base": round(per_resource_kib, 2),
        },
        "idle": {
            "seconds": round(idle_elapsed, 1),
            "cpu_percent_of_a_core": idle_cpu_percent,
            "writes_per_minute": per_minute(idle_writes),
            "requests_per_minute": per_minute(idle_requests),
        },
        "controller_runtime_peer": peer,
        "burst": {
            "rotations": burst_len,
            "seconds": round(burst_time.as_secs_f64(), 1),
            "operator_writes": operator_writes,
            "writes_per_rotation": round(operator_writes as f64 / burst_len.max(1) as f64, 2),
            "api_server_ceiling_seconds": round(ceiling.as_secs_f64(), 1),
            "ratio_to_ceiling": round(ratio, 2),
        },
        "bars": {
            "per_resource_at_most_2_kib": bar(per_resource_kib <= 2.0, json!(round(per_resource_kib, 2)), "2 KiB"),
            "start_to_ready_under_2_minutes": bar(to_ready < Duration::from_secs(120), json!(round(to_ready.as_secs_f64(), 1)), "120 s"),
            "restart_to_ready_under_2_minutes": bar(restart_to_ready < Duration::from_secs(120), json!(round(restart_to_ready.as_secs_f64(), 1)), "120 s"),
            "idle_no_writes": bar(idle_writes == 0, json!(idle_writes), "0"),
            "idle_under_1_percent_of_a_core": bar(idle_cpu_percent < 1.0, json!(idle_cpu_percent), "1%"),
            "burst_within_1_3_of_the_ceiling": bar(ratio <= 1.3, json!(round(ratio, 2)), "1.3"),
        },
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "operator_release_build": operator::BINARY.contains("/release/"),
        },
    }))
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("scale: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let clock = Clock(Instant::now());
    let settings = Settings::from_env();
    let result = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(3 * 60 * 60), run(clock, settings))
            .await
            .unwrap_or_else(|_| bail!("the scale bench did not finish within 3 hours"))
    });
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("scale: failed: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    let path = cluster::repo_root().join("target/bench/scale.json");
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("scale: could not write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{text}");
    eprintln!("scale: wrote {}", path.display());
    ExitCode::SUCCESS
}
