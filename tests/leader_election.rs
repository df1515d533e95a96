//! Lease-based leader election against the local control plane.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, Config};
use password_rotator::leader::{LeaderElection, Leadership};
use rotator_test_support::cluster::{self, TestNamespace};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};

const LEASE: &str = "password-rotator";
const LEASE_DURATION: Duration = Duration::from_secs(2);
const RENEW_EVERY: Duration = Duration::from_millis(500);

fn candidate(ns: &TestNamespace, client: &kube::Client, identity: &str) -> LeaderElection {
    LeaderElection::new(client.clone(), ns.name(), LEASE, identity)
        .with_timing(LEASE_DURATION, RENEW_EVERY)
}

fn spawn_acquire(elector: LeaderElection) -> JoinHandle<Result<Leadership, kube::Error>> {
    tokio::spawn(async move { elector.acquire().await })
}

async fn holder(api: &Api<Lease>) -> Result<Option<String>> {
    Ok(api.get(LEASE).await?.spec.and_then(|s| s.holder_identity))
}

/// Waits for `waiting` to acquire, and returns how long that took.
async fn acquired_within(
    waiting: JoinHandle<Result<Leadership, kube::Error>>,
    limit: Duration,
) -> Result<(Leadership, Duration)> {
    let started = Instant::now();
    let leadership = timeout(limit, waiting)
        .await
        .context("the standby did not acquire in time")???;
    Ok((leadership, started.elapsed()))
}

#[tokio::test]
async fn one_leader_and_failover_on_crash_and_on_release() -> Result<()> {
    let client = cluster::client().await?;
    let ns = TestNamespace::new(&client, "leader-election").await?;
    let api: Api<Lease> = ns.api();

    let a = candidate(&ns, &client, "a").acquire().await?;
    let b = spawn_acquire(candidate(&ns, &client, "b"));
    // The holder renews: the standby waits well past a lease duration.
    sleep(LEASE_DURATION * 2).await;
    assert!(!b.is_finished(), "two leaders at once");
    assert_eq!(holder(&api).await?.as_deref(), Some("a"));

    // A crash: renewals stop, nothing is released. The standby takes over once the lease
    // has not changed for a lease duration.
    drop(a);
    let (b, waited) = acquired_within(b, LEASE_DURATION * 3).await?;
    assert!(
        waited >= LEASE_DURATION - RENEW_EVERY,
        "took over early: {waited:?}"
    );
    let lease = api.get(LEASE).await?.spec.unwrap_or_default();
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_duration_seconds, Some(2));
    assert_eq!(lease.lease_transitions, Some(1));

    // A graceful shutdown: released, the standby takes over at its next look.
    let c = spawn_acquire(candidate(&ns, &client, "c"));
    sleep(LEASE_DURATION).await;
    assert!(!c.is_finished(), "two leaders at once");
    b.release().await?;
    let (c, waited) = acquired_within(c, LEASE_DURATION).await?;
    assert!(
        waited <= RENEW_EVERY * 2,
        "release did not hand over at once: {waited:?}"
    );
    assert_eq!(holder(&api).await?.as_deref(), Some("c"));

    // Another holder written over ours is seen at the next renewal.
    let mut lease = api.get(LEASE).await?;
    lease.spec.get_or_insert_default().holder_identity = Some("intruder".into());
    api.replace(LEASE, &PostParams::default(), &lease).await?;
    timeout(RENEW_EVERY * 3, c.lost())
        .await
        .context("the loss of the lease went unnoticed")?;
    assert_eq!(holder(&api).await?.as_deref(), Some("intruder"));

    ns.cleanup().await
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_steps_down_before_its_lease_expires() -> Result<()> {
    let client = cluster::client().await?;
    let ns = TestNamespace::new(&client, "leader-cut-off").await?;
    let (cut_off, proxy) = proxied_client().await?;
    let a = candidate(&ns, &cut_off, "a").acquire().await?;
    let b = spawn_acquire(candidate(&ns, &client, "b"));
    sleep(LEASE_DURATION).await;
    assert!(!b.is_finished(), "two leaders at once");

    proxy.abort();
    let cut = Instant::now();
    timeout(LEASE_DURATION, a.lost())
        .await
        .context("a leader cut off from the API kept leading")?;
    let stepped_down = cut.elapsed();
    // It retried for a while, and stopped at least one renewal period before the standby
    // may take over (a lease duration after the last renewal it saw).
    assert!(
        stepped_down >= RENEW_EVERY,
        "gave up at once: {stepped_down:?}"
    );
    let (_b, waited) = acquired_within(b, LEASE_DURATION * 3).await?;
    assert!(
        waited >= RENEW_EVERY,
        "the standby took over {waited:?} after the leader stepped down"
    );
    ns.cleanup().await
}

/// A client whose connections to the API server go through a TCP proxy that dies when the
/// returned task is aborted.
async fn proxied_client() -> Result<(kube::Client, JoinHandle<()>)> {
    let kubeconfig = Kubeconfig::read_from(cluster::kubeconfig_path())?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let authority = config.cluster_url.authority().context("no API server")?;
    let target = authority.as_str().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    config.cluster_url = format!("https://{}", listener.local_addr()?).parse()?;
    let proxy = tokio::spawn(async move {
        // Dropped with the task: aborting it cuts every open connection too.
        let mut connections = JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok((kube::Client::try_from(config)?, proxy))
}

#[path = "common/mod.rs"]
mod common;

/// Two operator processes: only the Lease holder acts, and when it is killed mid-rotation
/// the standby takes the Lease and finishes that rotation.
#[tokio::test]
async fn the_standby_finishes_a_rotation_when_the_leader_is_killed() -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    let h = common::Harness::new("leader").await?;
    h.create_deployment("orders", 1).await?;
    let ns = h.ns().to_owned();
    let election = [
        "--leader-election",
        "--lease-namespace",
        &ns,
        "--lease-seconds",
        "3",
    ];
    let mut leader = h.spawn_operator(&election)?;
    let leader_run = h.operator_runs();
    wait_log(&h, leader_run, "leading").await?;
    let mut standby = h.spawn_operator(&election)?;
    let standby_run = h.operator_runs();
    wait_log(&h, standby_run, "waiting for leadership").await?;

    // The overlap holds the rotation at Published long enough to kill the leader there.
    let spec = h.user_spec(serde_json::json!({
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "5s", "timeout": "5m"},
        "rotationRequest": "failover",
    }));
    h.create_rotation("orders-cache", spec).await?;
    h.wait_for("orders-cache", Duration::from_secs(60), "Published", |r| {
        r.status.as_ref().and_then(|s| s.step) == Some(password_rotator::resource::Step::Published)
    })
    .await?;
    assert!(
        !h.operator_log(standby_run).contains("rotation step done"),
        "the standby acted while the leader held the Lease"
    );
    leader.start_kill()?;
    leader.wait().await?;

    h.wait_rotated("orders-cache", Duration::from_secs(60))
        .await?;
    assert!(h.operator_log(standby_run).contains("leading"));
    assert!(h.operator_log(standby_run).contains("rotation step done"));
    let secrets: Api<Secret> = h.namespace.api();
    let new = String::from_utf8(
        secrets.get(common::USER_SECRET).await?.data.unwrap()["password"]
            .0
            .clone(),
    )?;
    assert!(h.redis.auth(common::USER, &new).await?);
    assert!(!h.redis.auth(common::USER, common::USER_PASSWORD).await?);
    standby.start_kill()?;
    standby.wait().await?;
    h.finish().await
}

async fn wait_log(h: &common::Harness, run: u32, needle: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !h.operator_log(run).contains(needle) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "operator {run} never logged {needle:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
