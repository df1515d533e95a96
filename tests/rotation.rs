//! End-to-end rotations: the operator process against the local control plane, a real
//! redis-server, and the Redis Software API test server. Real `AUTH` proves which passwords
//! work at each moment.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use common::checks::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use password_rotator::resource::{
    PasswordRotation, PasswordRotationStatus, Phase, Step, restart_annotation_key,
};
use password_rotator::rotation_target::RotationTarget;
use rotator_test_support::api_proxy::ApiProxy;
use rotator_test_support::api_server::FaultRule;
use rotator_test_support::redis_server::password_hash;
use serde_json::json;

const ROTATION_TIMEOUT: Duration = Duration::from_secs(90);

/// From the moment the Secret holds a new password to the moment the old one is refused,
/// observed every 20 ms.
async fn measure_overlap(
    secrets: Api<k8s_openapi::api::core::v1::Secret>,
    redis: String,
) -> Duration {
    let deadline = std::time::Instant::now() + ROTATION_TIMEOUT;
    let mut published = None;
    while std::time::Instant::now() < deadline {
        let now = std::time::Instant::now();
        if published.is_none() {
            let secret = secrets.get(USER_SECRET).await.expect("read the Secret");
            if secret.data.unwrap()["password"].0 != USER_PASSWORD.as_bytes() {
                published = Some(now);
            }
        }
        if let Some(published) = published
            && !auth(&redis, USER_PASSWORD).await
        {
            return now.duration_since(published);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the old password was never retired");
}

#[tokio::test]
async fn a_full_rotation_never_locks_a_workload_out() -> Result<()> {
    let mut h = Harness::new("full").await?;
    h.create_deployment("orders", 2).await?;
    h.start_operator()?;
    let workloads = Workloads::start(&h, "orders");
    let overlap = tokio::spawn(measure_overlap(h.secrets(), h.redis.addr()));
    let spec = h.user_spec(json!({
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "2s", "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation("orders-cache", spec).await?;
    let done = h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let (attempts, failures) = workloads.stop().await;
    let overlap = overlap.await?;
    // The publish is seen up to one poll and one GET late, which shortens what is measured;
    // the slack covers that on a loaded machine.
    assert!(
        overlap >= Duration::from_millis(2000 - 300),
        "the old password died {overlap:?} after the new one was published; overlap is 2s"
    );
    assert!(
        attempts > 20,
        "the workloads ran ({attempts} authentications)"
    );
    assert_eq!(failures, 0, "authentications failed during the rotation");

    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_ne!(new, USER_PASSWORD);
    assert!(h.redis.auth(USER, &new).await?, "the new password works");
    assert!(
        !h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password is deleted"
    );
    assert_eq!(
        h.redis.password_hashes(USER).await?,
        vec![password_hash(&new)]
    );
    assert_eq!(
        h.secrets()
            .get_opt("orders-cache-rotation")
            .await?
            .map(|_| ()),
        None
    );

    let status = done.status.unwrap();
    let deployments: Api<Deployment> = h.namespace.api();
    let template = deployments
        .get("orders")
        .await?
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap();
    let restarted = template.annotations.unwrap()[&restart_annotation_key("orders-cache")].clone();
    assert_eq!(
        Some(restarted_for(&restarted)),
        status.rotation_id.as_deref(),
        "the Deployment was restarted onto this rotation"
    );
    assert_eq!(status.handled_rotation_request.as_deref(), Some("first"));
    let reasons: HashSet<String> = h
        .events()
        .await?
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("PasswordRotation"))
        .filter_map(|e| e.reason)
        .collect();
    // The start and the end; the steps in between show in status and metrics.
    assert_eq!(
        reasons,
        HashSet::from(["Started".to_owned(), "Rotated".to_owned()])
    );
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn sigkill_after_every_step_still_completes_the_rotation() -> Result<()> {
    let mut h = Harness::new("crash").await?;
    h.operator_flags.push("--allow-verify-endpoints");
    h.create_deployment("orders", 1).await?;
    // Slow calls and a slow verification widen the windows between steps, so that kills
    // land right after each of them.
    h.api.inject(FaultRule::delay(700, 50));
    let verify_endpoint = slow_proxy(h.redis.addr(), Duration::from_millis(700)).await?;
    let spec = h.user_spec(json!({
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "1s", "timeout": "5m"},
        "verify": {"endpoint": verify_endpoint},
        "rotationRequest": "crash",
    }));
    h.create_rotation("orders-cache", spec).await?;
    let mut seen = Vec::new();
    let mut known = HashSet::new();
    let mut restarts = 0;
    loop {
        h.start_operator()?;
        restarts += 1;
        assert!(
            restarts < 40,
            "the rotation did not complete across restarts: {seen:?}"
        );
        let before = step(&h.rotation("orders-cache").await?);
        let current = h
            .wait_for("orders-cache", Duration::from_secs(30), "a new step", |r| {
                step(r) != before
                    || r.status
                        .as_ref()
                        .is_some_and(|s| s.last_rotation_time.is_some())
            })
            .await?;
        h.kill_operator().await?;
        // What the operator left when it died: it may have gone past what was observed.
        seen.push(step(&h.rotation("orders-cache").await?));
        known.extend(check_invariants(&h, "orders-cache").await?);
        if current
            .status
            .as_ref()
            .is_some_and(|s| s.last_rotation_time.is_some())
        {
            break;
        }
        // A kill at a random moment inside the next step as well.
        if restarts % 2 == 0 {
            h.start_operator()?;
            tokio::time::sleep(Duration::from_millis(rand_millis(900))).await;
            h.kill_operator().await?;
            seen.push(step(&h.rotation("orders-cache").await?));
            known.extend(check_invariants(&h, "orders-cache").await?);
        }
    }
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    assert_eq!(
        h.redis.password_hashes(USER).await?,
        vec![password_hash(&new)]
    );
    // Staged, Added and the Secret write are not recorded on their own (their replay is
    // safe); the steps that wait were each seen.
    for step in [Step::Published, Step::Retired] {
        assert!(
            seen.contains(&Some(step)),
            "killed right after {step:?}: {seen:?}"
        );
    }
    let mut passwords: Vec<String> = known.into_iter().collect();
    passwords.push(ADMIN_PASSWORD.into());
    h.assert_no_leak(&passwords).await?;
    h.finish().await
}

/// A TCP proxy to `target` that holds each connection for `delay` before passing it on,
/// like a slow network.
async fn slow_proxy(target: String, delay: Duration) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(addr)
}

fn rand_millis(max: u64) -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max
}

#[tokio::test]
async fn api_faults_are_ridden_out() -> Result<()> {
    let mut h = Harness::new("faults").await?;
    h.api
        .inject(FaultRule::status(503, 3).on("POST", "/v1/users/password"));
    h.api
        .inject(FaultRule::drop_after_apply(1).on("POST", "/v1/users/password"));
    h.api
        .inject(FaultRule::drop(1).on("DELETE", "/v1/users/password"));
    h.api
        .inject(FaultRule::delay(5000, 1).on("DELETE", "/v1/users/password"));
    h.api
        .inject(FaultRule::drop_after_apply(1).on("DELETE", "/v1/users/password"));
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "faults"})),
    )
    .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    let requests = h.api.requests();
    let answered = |method: &str, status: u16| {
        requests
            .iter()
            .any(|r| r.method == method && r.status == Some(status))
    };
    assert_eq!(
        requests.iter().filter(|r| r.status == Some(503)).count(),
        3,
        "{requests:?}"
    );
    assert!(
        answered("POST", 400),
        "the add lost after it landed was replayed and known as added: {requests:?}"
    );
    assert!(
        answered("DELETE", 401),
        "the delete lost after it landed was replayed and known as done: {requests:?}"
    );
    assert!(
        h.operator_logs()?
            .contains("delete_user_password: timed out"),
        "the slow answer timed out"
    );
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn wrong_admin_credentials_block_without_locking_anyone_out() -> Result<()> {
    let mut h = Harness::new("blocked").await?;
    h.put_secret(
        "rs-admin",
        &[
            ("username", ADMIN_EMAIL),
            ("password", "Wrong-Admin-Pass-1x"),
        ],
    )
    .await?;
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "blocked"})),
    )
    .await?;
    let blocked = h
        .wait_for("orders-cache", Duration::from_secs(60), "Blocked", |r| {
            phase(r) == Some(Phase::Blocked)
        })
        .await?;
    assert_eq!(
        condition_reason(&blocked, "Ready").as_deref(),
        Some("Unauthorized")
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = h
        .api
        .requests()
        .iter()
        .filter(|r| r.status == Some(401))
        .count();
    assert!(attempts <= 2, "{attempts} failed logins: retried in a loop");
    assert!(!h.api.is_locked(ADMIN_EMAIL), "the admin is locked out");
    assert!(!h.api.is_locked(USER), "the user is locked out");
    assert!(
        h.redis.auth(USER, USER_PASSWORD).await?,
        "the workload password still works"
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );

    // Fixing the credentials Secret resumes the rotation without waiting out the block.
    h.put_secret(
        "rs-admin",
        &[("username", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
    )
    .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.assert_no_leak(&[
        new,
        USER_PASSWORD.into(),
        ADMIN_PASSWORD.into(),
        "Wrong-Admin-Pass-1x".into(),
    ])
    .await?;
    h.finish().await
}

#[tokio::test]
async fn a_restart_with_nothing_due_writes_nothing() -> Result<()> {
    let mut h = Harness::new("idle").await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({"rotationRequest": "once", "schedule": {"every": "720h"}}));
    h.create_rotation("orders-cache", spec).await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.kill_operator().await?;
    let before = h.rotation("orders-cache").await?;
    let secret_before = h.secrets().get(USER_SECRET).await?;
    let events_before = h.events().await?.len();
    h.api.clear_requests();

    h.start_operator()?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = h.rotation("orders-cache").await?;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the restarted operator wrote to the resource"
    );
    assert_eq!(
        h.secrets()
            .get(USER_SECRET)
            .await?
            .metadata
            .resource_version,
        secret_before.metadata.resource_version
    );
    assert_eq!(
        h.events().await?.len(),
        events_before,
        "the restarted operator emitted events"
    );
    assert!(
        h.api.requests().is_empty(),
        "the restarted operator called the API: {:?}",
        h.api.requests()
    );
    assert!(
        h.operator_logs()?.contains("reconcile"),
        "the operator did reconcile"
    );
    h.finish().await
}

#[tokio::test]
async fn deleting_before_publish_rolls_back() -> Result<()> {
    let mut h = Harness::new("rollback").await?;
    let pending = held_at_added(&mut h, &[]).await?;
    assert!(
        h.redis.auth(USER, &pending).await?,
        "the staged password was added"
    );
    h.rotations()
        .delete("orders-cache", &DeleteParams::default())
        .await?;
    wait_gone(&h, "orders-cache").await?;
    assert!(
        !h.redis.auth(USER, &pending).await?,
        "the staged password was rolled back"
    );
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    assert_eq!(
        h.redis.password_hashes(USER).await?,
        vec![password_hash(USER_PASSWORD)]
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    // Kept, without an owner: another operator process may still send the add it read there.
    let state = h.secrets().get("orders-cache-rotation").await?;
    assert!(state.owner_references().is_empty());
    assert!(
        state.annotations()["rotator.dev/orphaned"].contains("pending was removed"),
        "{:?}",
        state.annotations()
    );
    let workload = h.secrets().get(USER_SECRET).await?;
    assert_eq!(
        workload.annotations().get("rotator.dev/rolled-back"),
        state
            .data
            .as_ref()
            .and_then(|d| d.get("rotationId"))
            .map(|id| String::from_utf8_lossy(&id.0).into_owned())
            .as_ref(),
        "the workload Secret is marked before the rollback, so no publish follows it"
    );

    // The same resource applied again (as a GitOps tool replaces one) says what the deletion
    // kept, and rotates once that Secret is deleted.
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "again"})),
    )
    .await?;
    h.wait_for("orders-cache", Duration::from_secs(30), "RolledBack", |r| {
        condition_reason(r, "Ready").as_deref() == Some("RolledBack")
            && ready_message(r).contains("orders-cache-rotation")
    })
    .await?;
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    h.secrets()
        .delete("orders-cache-rotation", &DeleteParams::default())
        .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = assert_rotated(&h).await?;
    h.assert_no_leak(&[new, pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn deleting_after_publish_keeps_both_passwords() -> Result<()> {
    let mut h = Harness::new("keepboth").await?;
    h.start_operator()?;
    // A workload that does not exist never rolls out: the rotation waits at Published.
    let spec = h.user_spec(json!({
        "rotationRequest": "r",
        "rollout": {"workloads": [{"kind": "Deployment", "name": "absent"}], "overlap": "0s", "timeout": "2s"},
    }));
    h.create_rotation("orders-cache", spec).await?;
    let degraded = h
        .wait_for("orders-cache", Duration::from_secs(60), "Degraded", |r| {
            condition_reason(r, "Degraded").as_deref() == Some("RolloutTimeout")
        })
        .await?;
    assert_eq!(step(&degraded), Some(Step::Published));
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await? && h.redis.auth(USER, USER_PASSWORD).await?);
    h.rotations()
        .delete("orders-cache", &DeleteParams::default())
        .await?;
    wait_gone(&h, "orders-cache").await?;
    assert!(
        h.redis.auth(USER, &new).await?,
        "the new password stays valid"
    );
    assert!(
        h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password stays valid"
    );
    assert_eq!(
        h.secret_value("orders-cache-rotation", "previous")
            .await?
            .as_deref(),
        Some(USER_PASSWORD),
        "the old password stays known to Kubernetes"
    );

    // A new resource of the same name does not take over the rotation the deletion left: it
    // says which Secret is in its way, and touches no password until that Secret is deleted.
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "again"})),
    )
    .await?;
    h.wait_for(
        "orders-cache",
        Duration::from_secs(30),
        "StateSecretNotOwned",
        |r| {
            condition_reason(r, "Ready").as_deref() == Some("StateSecretNotOwned")
                && ready_message(r).contains("orders-cache-rotation")
        },
    )
    .await?;
    h.wait_event("StateSecretNotOwned", "orders-cache-rotation")
        .await?;
    assert!(
        h.redis.auth(USER, &new).await? && h.redis.auth(USER, USER_PASSWORD).await?,
        "both passwords stay valid"
    );
    assert_eq!(
        h.secret_value("orders-cache-rotation", "previous")
            .await?
            .as_deref(),
        Some(USER_PASSWORD)
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_ref(),
        Some(&new)
    );
    h.secrets()
        .delete("orders-cache-rotation", &DeleteParams::default())
        .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let newest = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &newest).await?);
    assert!(!h.redis.auth(USER, &new).await?);
    h.assert_no_leak(&[newest, new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

/// The admin Secret deleted before the resource (as when a namespace holding both is torn
/// down, or by mistake): the staged password cannot be rolled back, so the deletion keeps it,
/// says so in an event naming the missing Secret, orphans the state Secret that holds both
/// passwords, and releases the resource instead of leaving it Terminating.
#[tokio::test]
async fn deleting_without_the_admin_secret_keeps_both_passwords_and_releases() -> Result<()> {
    let mut h = Harness::new("noadmin").await?;
    let pending = held_at_added(&mut h, &[]).await?;
    h.secrets()
        .delete("rs-admin", &DeleteParams::default())
        .await?;
    h.rotations()
        .delete("orders-cache", &DeleteParams::default())
        .await?;
    wait_gone(&h, "orders-cache").await?;
    let event = h.wait_event("LeftBothValid", "rs-admin").await?;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    both_kept_in_the_orphaned_state(h, pending).await
}

/// A target that keeps failing after the deletion: the rollback is retried for
/// `--cleanup-timeout-seconds`, then both passwords are kept and the resource released.
#[tokio::test]
async fn deleting_while_the_target_keeps_failing_releases_after_the_cleanup_timeout() -> Result<()>
{
    let mut h = Harness::new("unreach").await?;
    let pending = held_at_added(&mut h, &["--cleanup-timeout-seconds", "4"]).await?;
    h.api
        .inject(FaultRule::status(503, 1000).on("DELETE", "/v1/users/password"));
    h.rotations()
        .delete("orders-cache", &DeleteParams::default())
        .await?;
    h.wait_event("TargetUnavailable", "").await?;
    assert!(
        h.rotations().get_opt("orders-cache").await?.is_some(),
        "a transient failure is retried first"
    );
    wait_gone(&h, "orders-cache").await?;
    h.wait_event("LeftBothValid", "TargetUnavailable").await?;
    both_kept_in_the_orphaned_state(h, pending).await
}

/// Starts the operator (with `flags` too) and a rotation that verification against a closed
/// port holds at Added; the staged password.
async fn held_at_added(h: &mut Harness, flags: &[&'static str]) -> Result<String> {
    h.operator_flags.push("--allow-verify-endpoints");
    h.operator_flags.extend(flags);
    h.start_operator()?;
    let spec = h.user_spec(json!({"rotationRequest": "r", "verify": {"endpoint": "127.0.0.1:1"}}));
    h.create_rotation("orders-cache", spec).await?;
    h.wait_for("orders-cache", Duration::from_secs(60), "Added", |r| {
        step(r) == Some(Step::Added)
    })
    .await?;
    Ok(h.secret_value("orders-cache-rotation", "pending")
        .await?
        .expect("the staged password"))
}

/// Starts an operator process that stops itself at fail point `point` (SIGSTOP), creates a
/// resource that asks for a rotation, and returns once the process is stopped there.
async fn paused_at(h: &Harness, point: &str) -> Result<tokio::process::Child> {
    let paused = h.spawn_operator(&["--fail-point", &format!("{point}:stop")])?;
    h.create_rotation("orders-cache", h.user_spec(json!({"rotationRequest": "r"})))
        .await?;
    stopped_at(&paused, point).await?;
    Ok(paused)
}

/// Waits for the status to satisfy `done`, continuing `process` before each look: a process
/// stopped at a fail point stops again each time it passes it.
async fn wait_continuing(
    h: &Harness,
    process: &tokio::process::Child,
    timeout: Duration,
    what: &str,
    done: impl Fn(&PasswordRotationStatus) -> bool,
) -> Result<PasswordRotationStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        continue_process(process)?;
        let status = h.rotation("orders-cache").await?.status.unwrap_or_default();
        if done(&status) {
            return Ok(status);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the resource, lets a second operator process run the cleanup to the end, and
/// continues the paused one, which still acts on the copy it read before.
async fn delete_while_paused(h: &mut Harness, paused: &tokio::process::Child) -> Result<()> {
    h.rotations()
        .delete("orders-cache", &DeleteParams::default())
        .await?;
    h.start_operator()?;
    wait_gone(h, "orders-cache").await?;
    h.wait_event("RolledBack", "orders-cache-rotation").await?;
    continue_process(paused)
}

/// Found by the protocol model with two rotations: an operator process that recorded the end
/// of a rotation and then paused before deleting its state Secret, while another cleared that
/// leftover and staged the next rotation in a new state Secret of the same name. The paused
/// delete must not take the new one: once the next password is added, only it holds that.
#[tokio::test]
async fn a_late_delete_of_a_finished_rotations_state_leaves_the_next_rotations_alone() -> Result<()>
{
    let h = Harness::new("latedelete").await?;
    let mut finished = paused_at(&h, "after-finish-status").await?;
    // The next rotation holds at Added: its verify endpoint refuses.
    h.rotations()
        .patch(
            "orders-cache",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "rotationRequest": "second",
                "verify": {"endpoint": "127.0.0.1:1"},
            }})),
        )
        .await?;
    let mut staging = h.spawn_operator(&[
        "--allow-verify-endpoints",
        "--fail-point",
        "before-add:stop",
    ])?;
    stopped_at(&staging, "before-add").await?;
    let pending = h
        .secret_value("orders-cache-rotation", "pending")
        .await?
        .expect("the next rotation staged");
    continue_process(&finished)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !h.operator_log(1).contains("rotation complete") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the paused operator never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finished.start_kill()?;
    finished.wait().await?;
    continue_process(&staging)?;
    accepted_within_30s(&h, &pending, "the next rotation's add never landed").await?;
    staging.start_kill()?;
    staging.wait().await?;
    assert_eq!(
        h.secret_value("orders-cache-rotation", "pending").await?,
        Some(pending.clone()),
        "the password the next rotation added is in no Secret"
    );
    let first = h
        .secret_value(USER_SECRET, "password")
        .await?
        .expect("published");
    h.assert_no_leak(&[first, pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

/// Found by the protocol model with two rotations: a process that decided to start a rotation
/// and paused before staging it, while another process ran that whole rotation, then staged a
/// second one from the password the first had retired. Its add was refused
/// (`OldPasswordRejected`, Blocked) and a second rotation ran for one request. A rotation now
/// begins only on a read of the resource made once its state Secret exists, and a state Secret
/// staged from a copy another rotation overtook is withdrawn.
#[tokio::test]
async fn a_rotation_staged_from_a_copy_another_rotation_overtook_is_withdrawn() -> Result<()> {
    let mut h = Harness::new("overtaken").await?;
    let mut paused = paused_at(&h, "before-stage").await?;
    h.start_operator()?;
    let rotated = h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let rotation_id = rotated.status.and_then(|s| s.rotation_id);
    let published = h
        .secret_value(USER_SECRET, "password")
        .await?
        .expect("published");
    continue_process(&paused)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rejected = h.notes_of("OldPasswordRejected").await?;
        assert!(
            rejected.is_empty(),
            "the overtaken stage was sent: {rejected:?}"
        );
        let state = h.secrets().get_opt("orders-cache-rotation").await?;
        if state.is_none() && h.operator_logs()?.contains("was withdrawn") {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the overtaken stage was never withdrawn"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    paused.start_kill()?;
    paused.wait().await?;
    let after = h.rotation("orders-cache").await?.status.expect("a status");
    assert_eq!(
        after.rotation_id, rotation_id,
        "one rotation for one request"
    );
    assert_eq!(after.phase, Some(Phase::Idle));
    assert!(
        h.redis.auth(USER, &published).await?,
        "the published password works"
    );
    assert!(
        !h.redis.auth(USER, USER_PASSWORD).await?,
        "the retired password stays retired"
    );
    h.assert_no_leak(&[published, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

/// Found by the protocol model with a target edit: a stage withdrawn as overtaken had pinned
/// the spec of the copy it was decided on, and the process that withdrew it decided again on
/// that pinned spec. Meanwhile the resource had been moved to another user and asked for a
/// rotation: it was staged on the user and Secret the resource no longer named.
#[tokio::test]
async fn a_withdrawn_stage_leaves_the_next_rotation_to_the_spec_as_it_is() -> Result<()> {
    let mut h = Harness::with_users("withdrawn-edit", 1).await?;
    let mut paused = paused_at(&h, "before-stage").await?;
    h.start_operator()?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    h.kill_operator().await?;
    let published = h
        .secret_value(USER_SECRET, "password")
        .await?
        .expect("published");
    h.rotations()
        .patch(
            "orders-cache",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "target": {"user": "app-0"},
                "secret": {"name": "app-0-redis"},
                "rotationRequest": "moved",
            }})),
        )
        .await?;
    // It stops before each stage it makes.
    wait_continuing(&h, &paused, ROTATION_TIMEOUT, "the move rotated", |s| {
        s.handled_rotation_request.as_deref() == Some("moved") && s.phase == Some(Phase::Idle)
    })
    .await?;
    paused.start_kill()?;
    paused.wait().await?;
    let moved = h
        .secret_value("app-0-redis", "password")
        .await?
        .expect("a password");
    assert_ne!(
        moved,
        extra_password(0),
        "the user it names now was rotated"
    );
    assert!(h.redis.auth("app-0", &moved).await?);
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(published.as_str()),
        "the user it no longer names was not rotated again"
    );
    assert!(h.redis.auth(USER, &published).await?);
    h.assert_no_leak(&[
        published,
        moved,
        USER_PASSWORD.into(),
        ADMIN_PASSWORD.into(),
    ])
    .await?;
    h.finish().await
}

/// Found by the protocol model (`tests/protocol_model.rs`): an operator process paused after
/// staging, right before its add, while another runs the cleanup of a deletion. The add lands
/// after the rollback: the staged password is valid again, so a Secret must still hold it.
#[tokio::test]
async fn an_add_that_lands_after_the_deletions_rollback_stays_in_a_secret() -> Result<()> {
    let mut h = Harness::new("lateadd").await?;
    let mut paused = paused_at(&h, "before-add").await?;
    let pending = h
        .secret_value("orders-cache-rotation", "pending")
        .await?
        .expect("staged");
    delete_while_paused(&mut h, &paused).await?;
    accepted_within_30s(&h, &pending, "the paused operator's add never landed").await?;
    paused.start_kill()?;
    paused.wait().await?;
    assert_eq!(
        h.secret_value("orders-cache-rotation", "previous")
            .await?
            .as_deref(),
        Some(USER_PASSWORD)
    );
    both_kept_in_the_orphaned_state(h, pending).await
}

/// Found by the protocol model too: paused after its add, right before publishing, while
/// another process rolls the deleted rotation back. The publish that follows would put a
/// password the database no longer accepts into the workload Secret: it is refused.
#[tokio::test]
async fn a_publish_sent_after_the_deletions_rollback_is_refused() -> Result<()> {
    let mut h = Harness::new("latepublish").await?;
    let mut paused = paused_at(&h, "before-publish").await?;
    let pending = h
        .secret_value("orders-cache-rotation", "pending")
        .await?
        .expect("staged");
    assert!(h.redis.auth(USER, &pending).await?, "added");
    delete_while_paused(&mut h, &paused).await?;
    assert!(!h.redis.auth(USER, &pending).await?, "rolled back");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !h
        .operator_log(1)
        .contains("the resource changed while it was")
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the paused operator never tried its publish"
        );
        anyhow::ensure!(
            h.secret_value(USER_SECRET, "password").await?.as_deref() == Some(USER_PASSWORD),
            "the rolled-back password was published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    paused.start_kill()?;
    paused.wait().await?;
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD),
        "the workload Secret holds the password the database accepts"
    );
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    assert!(!h.redis.auth(USER, &pending).await?);
    h.assert_no_leak(&[pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

/// Returns once the target accepts `password`, or fails with `never`.
async fn accepted_within_30s(h: &Harness, password: &str, never: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !h.redis.auth(USER, password).await? {
        anyhow::ensure!(std::time::Instant::now() < deadline, "{never}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// After a deletion that could not roll back: both passwords stay valid, and the state
/// Secret that holds them is orphaned, not collected with the resource.
async fn both_kept_in_the_orphaned_state(h: Harness, pending: String) -> Result<()> {
    assert!(
        h.redis.auth(USER, &pending).await? && h.redis.auth(USER, USER_PASSWORD).await?,
        "both passwords stay valid"
    );
    let state = h.secrets().get("orders-cache-rotation").await?;
    assert!(
        state.owner_references().is_empty(),
        "the state Secret is orphaned"
    );
    assert_eq!(
        h.secret_value("orders-cache-rotation", "pending").await?,
        Some(pending.clone())
    );
    h.assert_no_leak(&[pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

/// Another Deployment (or any pod) may carry the labels a workload selects by: only the
/// workload's own pods count, matched by owner, so the rotation completes.
#[tokio::test]
async fn pods_of_another_deployment_with_the_same_labels_do_not_hold_the_rollout() -> Result<()> {
    let mut h = Harness::new("sharedsel").await?;
    h.create_deployment("orders", 1).await?;
    let deployments: Api<Deployment> = h.namespace.api();
    let mut other = deployments.get("orders").await?;
    other.metadata = kube::api::ObjectMeta {
        name: Some("orders-batch".into()),
        ..Default::default()
    };
    other.status = None;
    deployments.create(&PostParams::default(), &other).await?;
    rotator_test_support::cluster::wait_rollout_complete(
        &deployments,
        "orders-batch",
        Duration::from_secs(120),
    )
    .await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "rotationRequest": "r",
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s", "timeout": "90s"},
    }));
    h.create_rotation("orders-cache", spec).await?;
    let done = h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    assert_eq!(
        condition_reason(&done, "Degraded").as_deref(),
        Some("AsExpected")
    );
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}

/// The API server out of reach of the operator for 30 s at each step of a rotation: an
/// operator process stopped right after it recorded the step is cut off and continued, so
/// that every call it makes next fails. The password the workload Secret holds keeps working
/// throughout, and each rotation resumes and completes once the API server is back.
#[tokio::test]
async fn rotations_resume_after_the_api_server_is_away_for_30_seconds_at_each_step() -> Result<()> {
    const AWAY: Duration = Duration::from_secs(30);
    let h = Harness::new("apiaway").await?;
    h.create_deployment("orders", 1).await?;
    let proxy = ApiProxy::start().await?;
    let kubeconfig = proxy.kubeconfig_in(h.log_dir())?;
    let spec = h.user_spec(json!({
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "3s", "timeout": "5m"},
    }));
    h.create_rotation("orders-cache", spec).await?;
    let mut old = USER_PASSWORD.to_owned();
    for step in [
        Step::Staged,
        Step::Added,
        Step::Published,
        Step::RolledOut,
        Step::Retired,
    ] {
        let point = format!("after-step-{}", step.as_str());
        let mut operator = h.spawn_operator_via(
            &kubeconfig,
            &["--fail-point", &format!("{point}:stop")],
            &[],
        )?;
        let token = format!("away-at-{}", step.as_str());
        h.request_rotation("orders-cache", &token).await?;
        stopped_at(&operator, &point).await?;
        proxy.cut();
        let back = std::time::Instant::now() + AWAY;
        while std::time::Instant::now() < back {
            // A step recorded but not written is recorded again, and stops it again.
            continue_process(&operator)?;
            let held = h.secret_value(USER_SECRET, "password").await?.unwrap();
            assert!(
                h.redis.auth(USER, &held).await?,
                "away at {point}: the password the workload Secret holds was refused"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        proxy.restore();
        let what = format!("the rotation after a cut at {point}");
        let done = wait_continuing(&h, &operator, Duration::from_secs(120), &what, |s| {
            s.phase == Some(Phase::Blocked)
                || (s.handled_rotation_request.as_deref() == Some(&token)
                    && s.step.is_none()
                    && s.phase == Some(Phase::Idle))
        })
        .await?;
        assert_ne!(done.phase, Some(Phase::Blocked), "away at {point}");
        let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
        assert_ne!(new, old, "away at {point}");
        assert!(h.redis.auth(USER, &new).await? && !h.redis.auth(USER, &old).await?);
        old = new;
        operator.start_kill()?;
        operator.wait().await?;
    }
    h.finish().await
}

/// A paused Deployment never rolls out the restart: that is said at once with a reason of its
/// own, not after the timeout, both passwords stay valid, and the rotation finishes by itself
/// once the Deployment is resumed.
#[tokio::test]
async fn a_paused_deployment_is_reported_at_once_and_the_rotation_resumes_with_it() -> Result<()> {
    let mut h = Harness::new("paused").await?;
    h.create_deployment("orders", 2).await?;
    let deployments: Api<Deployment> = h.namespace.api();
    let pause = |paused: bool| json!({"spec": {"paused": paused}});
    deployments
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(pause(true)),
        )
        .await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "rotationRequest": "r",
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s", "timeout": "30m"},
    }));
    h.create_rotation("orders-cache", spec).await?;
    let degraded = h
        .wait_for(
            "orders-cache",
            Duration::from_secs(60),
            "Degraded=True RolloutCannotComplete",
            |r| condition_reason(r, "Degraded").as_deref() == Some("RolloutCannotComplete"),
        )
        .await?;
    assert_eq!(step(&degraded), Some(Step::Published));
    let message = degraded
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("Deployment/orders is paused"), "{message}");
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await? && h.redis.auth(USER, USER_PASSWORD).await?);
    let warned = h
        .wait_event("RolloutCannotComplete", "Deployment/orders")
        .await?;
    assert_eq!(warned.type_.as_deref(), Some("Warning"));

    deployments
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(pause(false)),
        )
        .await?;
    let done = h
        .wait_rotated("orders-cache", Duration::from_secs(120))
        .await?;
    assert_eq!(
        condition_reason(&done, "Degraded").as_deref(),
        Some("AsExpected")
    );
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

async fn wait_gone(h: &Harness, name: &str) -> Result<()> {
    for _ in 0..300 {
        if h.rotations().get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{name} was not deleted: the finalizer did not finish")
}

#[tokio::test]
async fn replace_mode_leaves_only_the_new_password() -> Result<()> {
    let mut h = Harness::new("replace").await?;
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"mode": "Replace", "rotationRequest": "r"})),
    )
    .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    let methods: Vec<String> = h.api.requests().into_iter().map(|r| r.method).collect();
    assert!(
        methods.contains(&"PUT".to_owned()) && !methods.contains(&"DELETE".to_owned()),
        "{methods:?}"
    );
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn a_database_default_user_rotates_on_the_annotation() -> Result<()> {
    let mut h = Harness::new("database").await?;
    h.start_operator()?;
    h.target_checked(TARGET).await?;
    h.create_rotation("orders-db", h.database_spec(json!({})))
        .await?;
    h.wait_for("orders-db", Duration::from_secs(30), "Idle", |r| {
        phase(r) == Some(Phase::Idle)
    })
    .await?;
    assert!(
        h.api.requests().is_empty(),
        "a new resource without a request rotates nothing"
    );
    h.rotations()
        .patch(
            "orders-db",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"rotator.dev/rotate-requested": "now"}}}),
            ),
        )
        .await?;
    h.wait_rotated("orders-db", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(DATABASE_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth_default(&new).await?);
    assert!(!h.redis.auth_default(DATABASE_PASSWORD).await?);
    assert_eq!(h.secret_value(DATABASE_SECRET, "username").await?, None);
    h.assert_no_leak(&[new, DATABASE_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn a_cron_schedule_rotates_when_due() -> Result<()> {
    let mut h = Harness::new("cron").await?;
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"schedule": {"cron": "* * * * *"}})),
    )
    .await?;
    let idle = h
        .wait_for(
            "orders-cache",
            Duration::from_secs(30),
            "a next rotation time",
            |r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.next_rotation_time.is_some())
            },
        )
        .await?;
    let next = idle.status.unwrap().next_rotation_time.unwrap().0;
    assert_eq!(next.as_second() % 60, 0, "cron times fall on a minute");
    h.wait_rotated("orders-cache", Duration::from_secs(150))
        .await?;
    let rotated = h.rotation("orders-cache").await?.status.unwrap();
    assert!(rotated.last_rotation_time.unwrap().0 >= next);
    assert!(rotated.next_rotation_time.unwrap().0 > next);
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}

#[tokio::test]
async fn a_second_resource_for_the_same_user_is_refused() -> Result<()> {
    let mut h = Harness::new("conflict").await?;
    h.start_operator()?;
    h.create_rotation("first", h.user_spec(json!({}))).await?;
    // Idle, once it asked when the password expires.
    h.wait_for("first", Duration::from_secs(30), "Idle", |r| {
        phase(r) == Some(Phase::Idle)
            && r.status
                .as_ref()
                .is_some_and(|s| s.password_expiry_checked_time.is_some())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.api.clear_requests();
    h.create_rotation("second", h.user_spec(json!({"rotationRequest": "go"})))
        .await?;
    let refused = h
        .wait_for("second", Duration::from_secs(30), "Conflict", |r| {
            condition_reason(r, "Ready").as_deref() == Some("Conflict")
        })
        .await?;
    let message = ready_message(&refused);
    assert!(message.contains(&format!("{}/first", h.ns())), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.api.requests().is_empty(), "the refused resource rotated");
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    h.finish().await
}

/// Fails unless admission refused the object with a message containing `expected`.
fn assert_refused<T: std::fmt::Debug>(created: kube::Result<T>, expected: &str, case: &str) {
    match created {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{case}: {status:?}");
            assert!(
                status.message.contains(expected),
                "{case}: {expected:?} not in {}",
                status.message
            );
        }
        other => panic!("{case} was admitted: {other:?}"),
    }
}

#[tokio::test]
async fn invalid_resources_are_refused_and_change_nothing() -> Result<()> {
    let mut h = Harness::new("invalid").await?;
    let cases = [
        (
            json!({"target": {"databaseUid": 3}}),
            "set exactly one of user, databaseUid, account or alternatingAccounts",
        ),
        (
            json!({"schedule": {"every": "30m"}}),
            "every must be at least 1h",
        ),
        (
            json!({"password": {"length": 8}}),
            "length must be between 16 and 128",
        ),
        (
            json!({"rollout": {"overlap": "2h", "timeout": "1h"}}),
            "overlap must not exceed timeout",
        ),
        (
            json!({"schedule": {"every": "24h", "cron": "0 3 * * *"}}),
            "set at most one of every or cron",
        ),
    ];
    for (i, (overrides, expected)) in cases.into_iter().enumerate() {
        let spec = h.user_spec(overrides);
        let object: PasswordRotation = serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2", "kind": "PasswordRotation",
            "metadata": {"name": format!("bad-{i}")}, "spec": spec,
        }))?;
        let created = h.rotations().create(&PostParams::default(), &object).await;
        assert_refused(created, expected, &format!("case {i}"));
    }
    // The connection is the target's: its url is checked there.
    let target: RotationTarget = serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2", "kind": "RotationTarget",
        "metadata": {"name": "plain-http"},
        "spec": {"redisSoftware": {"url": "http://127.0.0.1:9443", "credentialsSecret": "rs-admin"}},
    }))?;
    let created = h.targets().create(&PostParams::default(), &target).await;
    assert_refused(
        created,
        "url must start with https://",
        "the http:// target",
    );
    // What CEL cannot check gets a condition and an event naming the field.
    h.start_operator()?;
    h.target_checked(TARGET).await?;
    h.create_rotation(
        "bad-cron",
        h.user_spec(json!({"schedule": {"cron": "61 * * * *"}, "rotationRequest": "x"})),
    )
    .await?;
    let invalid = h
        .wait_for("bad-cron", Duration::from_secs(30), "InvalidSpec", |r| {
            condition_reason(r, "Ready").as_deref() == Some("InvalidSpec")
        })
        .await?;
    let message = ready_message(&invalid);
    assert!(message.contains("spec.schedule.cron"), "{message}");
    h.wait_event("InvalidSpec", "spec.schedule.cron").await?;
    assert!(
        h.api.requests().is_empty(),
        "an invalid resource called the API"
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    h.finish().await
}

#[tokio::test]
async fn stateful_sets_and_daemon_sets_roll_out_before_the_old_password_goes() -> Result<()> {
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
    let mut h = Harness::new("kinds").await?;
    let template = json!({
        "metadata": {"labels": {"app": "cache"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    });
    let stateful_sets: Api<StatefulSet> = h.namespace.api();
    stateful_sets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "cache"},
                "spec": {"replicas": 2, "serviceName": "cache", "selector": {"matchLabels": {"app": "cache"}}, "template": template},
            }))?,
        )
        .await?;
    let daemon_sets: Api<DaemonSet> = h.namespace.api();
    daemon_sets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "cache"}}, "template": template},
            }))?,
        )
        .await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "rotationRequest": "kinds",
        "rollout": {"workloads": [{"kind": "StatefulSet", "name": "cache"}, {"kind": "DaemonSet", "name": "agent"}], "overlap": "0s", "timeout": "5m"},
    }));
    h.create_rotation("orders-cache", spec).await?;
    let done = h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let rotation_id = done.status.unwrap().rotation_id;
    let sts = stateful_sets.get("cache").await?;
    let sts_status = sts.status.clone().unwrap();
    assert_eq!(
        template_rotation(sts.spec.unwrap().template.metadata),
        rotation_id
    );
    assert_eq!(
        sts_status.current_revision, sts_status.update_revision,
        "the StatefulSet rolled out"
    );
    assert_eq!(sts_status.ready_replicas, Some(2));
    let ds = daemon_sets.get("agent").await?;
    let ds_status = ds.status.clone().unwrap();
    assert_eq!(
        template_rotation(ds.spec.unwrap().template.metadata),
        rotation_id
    );
    assert_eq!(
        ds_status.updated_number_scheduled,
        Some(ds_status.desired_number_scheduled)
    );
    assert!(ds_status.desired_number_scheduled >= 1);
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}

#[tokio::test]
async fn missing_secrets_get_a_condition_naming_the_field() -> Result<()> {
    let mut h = Harness::new("missing").await?;
    h.start_operator()?;
    h.target_checked(TARGET).await?;
    h.create_rotation(
        "no-workload-secret",
        h.user_spec(json!({"secret": {"name": "absent"}, "rotationRequest": "r"})),
    )
    .await?;
    let refused = h
        .wait_for(
            "no-workload-secret",
            Duration::from_secs(30),
            "InvalidSpec",
            |r| condition_reason(r, "Ready").as_deref() == Some("InvalidSpec"),
        )
        .await?;
    assert!(
        ready_message(&refused).contains("spec.secret"),
        "{}",
        ready_message(&refused)
    );
    h.rotations()
        .delete("no-workload-secret", &DeleteParams::default())
        .await?;
    wait_gone(&h, "no-workload-secret").await?;

    // A target whose admin credentials Secret does not exist.
    let credentials_secret = |name: &str| {
        let mut connection = h.rs_connection();
        connection["credentialsSecret"] = json!(name);
        json!({"redisSoftware": connection})
    };
    h.put_target("no-credentials", credentials_secret("absent-admin"))
        .await?;
    h.create_rotation(
        "no-credentials",
        h.user_spec(json!({"target": {"ref": {"name": "no-credentials"}}, "rotationRequest": "r"})),
    )
    .await?;
    let missing = h
        .wait_for(
            "no-credentials",
            Duration::from_secs(30),
            "SecretMissing",
            |r| condition_reason(r, "Ready").as_deref() == Some("SecretMissing"),
        )
        .await?;
    let message = ready_message(&missing);
    assert!(
        message.contains(&format!(
            "Secret absent-admin not found in namespace {} (spec.redisSoftware.credentialsSecret of the target)",
            h.ns()
        )),
        "{message}"
    );
    h.wait_event("SecretMissing", "").await?;
    assert!(
        h.api.requests().is_empty(),
        "the API was called without credentials"
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );

    // Another explanation under the same reason is another Event: what `kubectl describe`
    // shows last is what is wrong now, not the first note of a series.
    h.put_target("no-credentials", credentials_secret("other-admin"))
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let notes: Vec<String> = h
            .events()
            .await?
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("SecretMissing"))
            .filter_map(|e| e.message)
            .collect();
        if notes.iter().any(|n| n.contains("other-admin")) {
            assert!(
                notes.iter().any(|n| n.contains("absent-admin")),
                "the first explanation stays as it was: {notes:#?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SecretMissing event names other-admin: {notes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.put_target("no-credentials", credentials_secret("absent-admin"))
        .await?;

    // The Secret appearing resumes the rotation.
    h.put_secret(
        "absent-admin",
        &[("username", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
    )
    .await?;
    h.wait_rotated("no-credentials", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}

/// Many rotations requested at once: each request rotates exactly once, even while the
/// operator's cache lags behind its own writes.
#[tokio::test]
async fn a_burst_of_requests_rotates_each_user_exactly_once() -> Result<()> {
    const USERS: u64 = 40;
    let mut h = Harness::with_users("burst", USERS).await?;
    h.start_operator()?;
    for i in 0..USERS {
        let spec = h.user_spec(json!({
            "target": {"user": format!("app-{i}")},
            "secret": {"name": format!("app-{i}-redis")},
        }));
        h.create_rotation(&format!("app-{i}"), spec).await?;
    }
    for i in 0..USERS {
        h.wait_for(&format!("app-{i}"), Duration::from_secs(60), "Idle", |r| {
            phase(r) == Some(Phase::Idle)
        })
        .await?;
    }
    for i in 0..USERS {
        h.request_rotation(&format!("app-{i}"), "burst").await?;
    }
    for i in 0..USERS {
        h.wait_rotated(&format!("app-{i}"), ROTATION_TIMEOUT)
            .await?;
    }
    // Late events of the burst must not start a second round.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = h.api.requests();
    let count = |method: &str| requests.iter().filter(|r| r.method == method).count();
    assert_eq!(count("POST"), USERS as usize, "one add per request");
    assert_eq!(count("DELETE"), USERS as usize, "one delete per request");
    for i in 0..USERS {
        let user = format!("app-{i}");
        let new = h
            .secret_value(&format!("{user}-redis"), "password")
            .await?
            .unwrap();
        assert!(h.redis.auth(&user, &new).await?);
        assert!(!h.redis.auth(&user, &extra_password(i)).await?);
    }
    h.finish().await
}

#[tokio::test]
async fn suspend_holds_a_requested_rotation_until_lifted() -> Result<()> {
    let mut h = Harness::new("suspend").await?;
    h.start_operator()?;
    h.target_checked(TARGET).await?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"suspend": true, "rotationRequest": "held"})),
    )
    .await?;
    h.wait_for("orders-cache", Duration::from_secs(30), "Suspended", |r| {
        condition_reason(r, "Ready").as_deref() == Some("Suspended")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.api.requests().is_empty(), "a suspended resource rotated");
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    h.rotations()
        .patch(
            "orders-cache",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}

/// One operator watching two namespaces rotates in both and leaves a third alone.
#[tokio::test]
async fn an_operator_watches_exactly_the_namespaces_it_is_given() -> Result<()> {
    use rotator_test_support::cluster::TestNamespace;
    let h = Harness::new("watched").await?;
    let second = TestNamespace::new(&h.client, "watched-too").await?;
    let unwatched = TestNamespace::new(&h.client, "unwatched").await?;
    // The database target, with its Secrets, lives in the second namespace.
    for ns in [&second, &unwatched] {
        let target: RotationTarget = serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2", "kind": "RotationTarget",
            "metadata": {"name": TARGET}, "spec": {"redisSoftware": h.rs_connection()},
        }))?;
        ns.api::<RotationTarget>()
            .create(&PostParams::default(), &target)
            .await?;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = ns.api();
        for name in ["rs-admin", "rs-ca", DATABASE_SECRET] {
            let mut secret = h.secrets().get(name).await?;
            secret.metadata = kube::api::ObjectMeta {
                name: Some(name.into()),
                annotations: secret.metadata.annotations.take(),
                ..Default::default()
            };
            secrets.create(&PostParams::default(), &secret).await?;
        }
    }
    let mut operator = h.spawn_operator(&["--namespace", second.name()])?;
    let rotation = |ns: &str, spec| -> Result<PasswordRotation> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2", "kind": "PasswordRotation",
            "metadata": {"name": "orders-db", "namespace": ns}, "spec": spec,
        }))?)
    };
    let spec = h.database_spec(json!({"rotationRequest": "both"}));
    let in_unwatched: Api<PasswordRotation> = unwatched.api();
    in_unwatched
        .create(
            &PostParams::default(),
            &rotation(unwatched.name(), spec.clone())?,
        )
        .await?;
    let in_second: Api<PasswordRotation> = second.api();
    in_second
        .create(&PostParams::default(), &rotation(second.name(), spec)?)
        .await?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "both"})),
    )
    .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let deadline = std::time::Instant::now() + ROTATION_TIMEOUT;
    while in_second
        .get("orders-db")
        .await?
        .status
        .and_then(|s| s.last_rotation_time)
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second namespace was not rotated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_db = String::from_utf8(
        second
            .api::<k8s_openapi::api::core::v1::Secret>()
            .get(DATABASE_SECRET)
            .await?
            .data
            .unwrap()["password"]
            .0
            .clone(),
    )?;
    assert!(h.redis.auth_default(&new_db).await?);
    assert!(!h.redis.auth_default(DATABASE_PASSWORD).await?);
    let untouched = in_unwatched.get("orders-db").await?;
    assert!(
        untouched.status.is_none(),
        "the unwatched namespace was reconciled"
    );
    assert!(untouched.metadata.finalizers.is_none());

    for api in [&in_second, &in_unwatched] {
        api.delete("orders-db", &DeleteParams::default()).await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while in_second.get_opt("orders-db").await?.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the finalizer did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    operator.start_kill()?;
    operator.wait().await?;
    second.cleanup().await?;
    unwatched.cleanup().await?;
    h.finish().await
}

/// GitOps tools and other controllers write labels and annotations to the resource while the
/// operator writes its status: the compare-and-swap refusals that follow are
/// routine, so they are retried quietly, never logged as failures (which an alert counts).
/// The edits go on until the operator has met one (at most 30 s), however the two are timed.
#[tokio::test]
async fn edits_by_other_writers_mid_reconcile_are_retried_without_a_warning() -> Result<()> {
    const USERS: u64 = 12;
    const RACED: &str = "the resource changed while it was reconciled";
    let mut h = Harness::with_users("edits", USERS).await?;
    h.start_operator()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let raced = || h.operator_logs().is_ok_and(|logs| logs.contains(RACED));
    let edits = (0..USERS).map(|i| {
        let rotations = h.rotations();
        let spec = h.user_spec(json!({
            "target": {"user": format!("app-{i}")},
            "secret": {"name": format!("app-{i}-redis")},
        }));
        let name = format!("app-{i}");
        async move {
            let mut rotation: PasswordRotation = serde_json::from_value(json!({
                "apiVersion": "rotator.dev/v1alpha2",
                "kind": "PasswordRotation",
                "metadata": {"name": name},
                "spec": spec,
            }))?;
            rotation = rotations.create(&PostParams::default(), &rotation).await?;
            for edit in 0.. {
                let done = std::time::Instant::now() >= deadline || edit % 20 == 0 && raced();
                if edit >= 40 && done {
                    break;
                }
                let labels = json!({"metadata": {"labels": {"sync-generation": edit.to_string()}}});
                rotations
                    .patch(
                        &name_of(&rotation),
                        &PatchParams::default(),
                        &Patch::Merge(labels),
                    )
                    .await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(edits).await?;
    for i in 0..USERS {
        h.wait_for(&format!("app-{i}"), Duration::from_secs(60), "Idle", |r| {
            phase(r) == Some(Phase::Idle)
        })
        .await?;
    }
    for i in 0..USERS {
        h.request_rotation(&format!("app-{i}"), "after-the-edits")
            .await?;
    }
    for i in 0..USERS {
        h.wait_rotated(&format!("app-{i}"), ROTATION_TIMEOUT)
            .await?;
    }
    let logs = h.operator_logs()?;
    assert!(
        logs.contains(RACED),
        "the edits raced the operator's writes at least once"
    );
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(warnings.is_empty(), "no warnings: {warnings:#?}");
    h.finish().await
}
