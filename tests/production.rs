//! What production does to a rotation: spec edits and Secret reverts mid-rotation, workloads
//! shared by several resources, crashes in the narrow windows between a write and its record,
//! clocks that disagree. Each runs the operator process against the local control plane, a
//! real redis-server and the Redis Software API test server; real `AUTH` proves which
//! passwords work.

mod common;

use std::time::Duration;

use anyhow::{Result, bail};
use common::checks::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use password_rotator::resource::{PasswordRotation, Phase, Step, restart_annotation_key};
use rotator_test_support::api_server::FaultRule;
use rotator_test_support::cluster;
use serde_json::json;

const ROTATION_TIMEOUT: Duration = Duration::from_secs(90);
const NAME: &str = "orders-cache";

fn condition<'a>(
    r: &'a PasswordRotation,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn has(r: &PasswordRotation, type_: &str, status: &str, reason: &str) -> bool {
    condition(r, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

async fn patch_spec(h: &Harness, spec: serde_json::Value) -> Result<()> {
    h.rotations()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}

/// Writes status fields the way another client (or another replica with another clock) would.
async fn patch_status(h: &Harness, status: serde_json::Value) -> Result<()> {
    h.rotations()
        .patch_status(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Holds the rotation where it is, so that a test can change what the operator will see.
async fn suspend(h: &Harness, suspended: bool) -> Result<()> {
    patch_spec(h, json!({ "suspend": suspended })).await?;
    if suspended {
        h.wait_for(NAME, Duration::from_secs(30), "Suspended", |r| {
            has(r, "Ready", "True", "Suspended")
        })
        .await?;
    }
    Ok(())
}

/// A rotation with `overlap` held at Published, whose `publishedTime` says `published` as
/// a replica with another clock would have written it.
async fn published_by_another_clock(
    h: &mut Harness,
    overlap: &str,
    published: jiff::Timestamp,
) -> Result<()> {
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "rollout": {"overlap": overlap, "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    wait_step(h, Step::Published).await?;
    suspend(h, true).await?;
    patch_status(h, json!({"publishedTime": published.to_string()})).await?;
    suspend(h, false).await
}

async fn wait_step(h: &Harness, step: Step) -> Result<PasswordRotation> {
    h.wait_for(NAME, Duration::from_secs(60), step.as_str(), |r| {
        r.status.as_ref().and_then(|s| s.step) == Some(step)
    })
    .await
}

async fn wait_gone(h: &Harness, name: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while h.rotations().get_opt(name).await?.is_some() {
        if std::time::Instant::now() > deadline {
            bail!("{name} was not deleted");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// An operator that aborts at `point`; returns once it has.
async fn run_until_fail_point(h: &mut Harness, point: &str) -> Result<()> {
    let mut operator = h.spawn_operator(&["--fail-point", point])?;
    match tokio::time::timeout(Duration::from_secs(60), operator.wait()).await {
        Ok(exit) => {
            assert!(!exit?.success(), "the operator aborted at {point}");
            Ok(())
        }
        Err(_) => bail!("the operator never reached fail point {point}"),
    }
}

/// Rotates the harness's user with Deployment `orders` restarted and `overlap`, up to
/// Published: the rotation's id and its new password.
async fn published_with_orders(h: &Harness, overlap: &str) -> Result<(String, String)> {
    let spec = h.user_spec(json!({
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": overlap, "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    let published = wait_step(h, Step::Published).await?;
    let rotation_id = published.status.unwrap().rotation_id.unwrap();
    Ok((rotation_id, pending_password(h).await?))
}

/// This resource's restart annotation on Deployment `orders`'s pod template.
async fn orders_restarted_as(h: &Harness) -> Result<Option<String>> {
    let deployments: Api<Deployment> = h.namespace.api();
    let template = deployments.get("orders").await?.spec.unwrap().template;
    Ok(template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|mut a| a.remove(&restart_annotation_key(NAME)))
        .map(|value| restarted_for(&value).to_owned()))
}

/// Writes `password` into the workload Secret as a GitOps tool syncing it from its repository
/// does (server-side apply, its own field manager).
async fn gitops_sync(h: &Harness, password: &str) -> Result<()> {
    let gitops = PatchParams::apply("argocd-controller").force();
    let synced = secret(USER_SECRET, &[("username", USER), ("password", password)]);
    h.secrets()
        .patch(USER_SECRET, &gitops, &Patch::Apply(&synced))
        .await?;
    Ok(())
}

async fn pending_password(h: &Harness) -> Result<String> {
    Ok(h.secret_value(&format!("{NAME}-rotation"), "pending")
        .await?
        .expect("the state Secret holds the new password"))
}

#[tokio::test]
async fn a_mode_switch_mid_rotation_applies_to_the_next_rotation() -> Result<()> {
    let mut h = Harness::new("mode-edit").await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "rollout": {"overlap": "6s", "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    wait_step(&h, Step::Published).await?;
    patch_spec(&h, json!({"mode": "Replace"})).await?;
    let pending = h
        .wait_for(NAME, Duration::from_secs(30), "SpecChangePending", |r| {
            has(r, "SpecChangePending", "True", "RotationInFlight")
        })
        .await?;
    let message = &condition(&pending, "SpecChangePending").unwrap().message;
    assert!(message.contains("spec.mode"), "{message}");
    check_invariants(&h, NAME).await?;

    let done = h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_only_password(&h, USER, &new).await?;
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    assert!(!has(&done, "SpecChangePending", "True", "RotationInFlight"));

    // The next rotation is a Replace.
    h.api.clear_requests();
    h.request_rotation(NAME, "second").await?;
    h.wait_for(NAME, ROTATION_TIMEOUT, "the second rotation", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.handled_rotation_request.as_deref() == Some("second")
                && s.phase == Some(Phase::Idle)
                && s.step.is_none()
        })
    })
    .await?;
    let methods: Vec<String> = h.api.requests().into_iter().map(|r| r.method).collect();
    assert!(methods.contains(&"PUT".to_owned()), "{methods:?}");
    let newest = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_only_password(&h, USER, &newest).await?;
    h.assert_no_leak(&[new, newest, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn a_target_edit_mid_rotation_never_reaches_another_user() -> Result<()> {
    let mut h = Harness::with_users("target-edit", 1).await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "rollout": {"overlap": "6s", "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    wait_step(&h, Step::Published).await?;
    patch_spec(
        &h,
        json!({"target": {"user": "app-0"}, "secret": {"name": "app-0-redis"}}),
    )
    .await?;
    let pending = h
        .wait_for(NAME, Duration::from_secs(30), "SpecChangePending", |r| {
            has(r, "SpecChangePending", "True", "RotationInFlight")
        })
        .await?;
    let message = &condition(&pending, "SpecChangePending").unwrap().message;
    assert!(
        message.contains("spec.target") && message.contains("spec.secret"),
        "{message}"
    );
    h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;

    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_ne!(new, USER_PASSWORD);
    assert_only_password(&h, USER, &new).await?;
    assert_only_password(&h, "app-0", &extra_password(0)).await?;
    assert_eq!(
        h.secret_value("app-0-redis", "password").await?,
        Some(extra_password(0)),
        "the other user's Secret was not touched"
    );
    check_invariants_of(&h, NAME, "app-0", "app-0-redis").await?;
    h.finish().await
}

/// The same revert and its repair made while no operator runs (a restart, an upgrade): the
/// operator never sees the old password in the Secret, but pods may have started on it. The
/// Secret written since the publish makes it restart the workloads once more before the old
/// password goes.
#[tokio::test]
async fn a_revert_repaired_while_the_operator_was_away_restarts_the_workloads() -> Result<()> {
    let mut h = Harness::new("drift-away").await?;
    h.create_deployment("orders", 2).await?;
    h.start_operator()?;
    let (rotation_id, new) = published_with_orders(&h, "4s").await?;
    h.kill_operator().await?;

    for password in [USER_PASSWORD, &new] {
        gitops_sync(&h, password).await?;
    }
    h.start_operator()?;
    h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    assert_eq!(
        orders_restarted_as(&h).await?,
        Some(format!("{rotation_id}.2")),
        "the workloads restarted once more"
    );
    h.wait_event("SecretRestored", "written since it was published")
        .await?;
    assert_only_password(&h, USER, &new).await?;
    h.finish().await
}

/// Found by the protocol model (`tests/protocol_model.rs`, with a revert): the workloads were
/// restarted right after the publish and the operator died before recording it; then the
/// Secret was reverted and repaired, and a pod that started in between read the old password.
/// The next operator publishes again (into the Secret as repaired) and must restart the
/// workloads once more: the restart it finds was for the Secret before the revert.
#[tokio::test]
async fn a_restart_before_a_revert_and_its_repair_is_not_taken_for_the_rollout() -> Result<()> {
    let mut h = Harness::new("restart-revert").await?;
    h.create_deployment("orders", 1).await?;
    let spec = h.user_spec(json!({
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s", "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    run_until_fail_point(&mut h, "after-restart").await?;
    let new = pending_password(&h).await?;
    let deployments: Api<Deployment> = h.namespace.api();
    cluster::wait_rollout_complete(&deployments, "orders", Duration::from_secs(120)).await?;

    gitops_sync(&h, USER_PASSWORD).await?;
    // A pod starts while the Secret holds the old password (a node drained, a crash).
    let pods: Api<Pod> = h.namespace.api();
    let orders = ListParams::default().labels("app=orders");
    let names =
        |list: Vec<Pod>| -> Vec<String> { list.into_iter().map(|p| p.name_any()).collect() };
    let before = names(pods.list(&orders).await?.items);
    for name in &before {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let started_during_revert = loop {
        let now = names(pods.list(&orders).await?.items);
        if let Some(name) = now.into_iter().find(|n| !before.contains(n)) {
            break name;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no pod replaced the deleted one"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    gitops_sync(&h, &new).await?;

    h.start_operator()?;
    h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    let running = names(pods.list(&orders).await?.items);
    assert!(
        !running.contains(&started_during_revert),
        "pod {started_during_revert}, started while the Secret held the old password, still \
         runs after that password was deleted: {running:?}"
    );
    assert_only_password(&h, USER, &new).await?;
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn a_reverted_secret_holds_the_rotation_with_both_passwords() -> Result<()> {
    let mut h = Harness::new("drift").await?;
    h.create_deployment("orders", 2).await?;
    h.start_operator()?;
    let workloads = Workloads::start(&h, "orders");
    let (rotation_id, new) = published_with_orders(&h, "3s").await?;

    // A GitOps tool syncs the Secret back to what its repository holds.
    gitops_sync(&h, USER_PASSWORD).await?;
    let drifted = h
        .wait_for(NAME, Duration::from_secs(30), "SecretDrifted", |r| {
            has(r, "Degraded", "True", "SecretDrifted")
        })
        .await?;
    let message = &condition(&drifted, "Degraded").unwrap().message;
    assert!(message.contains("argocd-controller"), "{message}");
    assert!(message.contains("the old password"), "{message}");
    // Longer than the overlap: the operator must keep waiting, with both passwords valid.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let held = h.rotation(NAME).await?;
    assert!(
        held.status.as_ref().unwrap().last_rotation_time.is_none(),
        "the rotation did not finish while the Secret held the old password"
    );
    assert!(
        h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password still works"
    );
    assert!(
        h.redis.auth(USER, &new).await?,
        "the new password still works"
    );
    check_invariants(&h, NAME).await?;
    let warned = h.wait_event("SecretDrifted", "argocd-controller").await?;
    assert_eq!(
        warned.type_.as_deref(),
        Some("Warning"),
        "a Warning event names the field manager"
    );

    // The repository is updated: the Secret holds the new password again.
    gitops_sync(&h, &new).await?;
    let done = h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    let (attempts, failures) = workloads.stop().await;
    assert!(
        attempts > 20,
        "the workloads ran ({attempts} authentications)"
    );
    assert_eq!(failures, 0, "authentications failed during the rotation");
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    assert_only_password(&h, USER, &new).await?;
    assert!(!has(&done, "Degraded", "True", "SecretDrifted"));
    // Pods started while the Secret held the old password were restarted once more.
    assert_eq!(
        orders_restarted_as(&h).await?,
        Some(format!("{rotation_id}.2"))
    );
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn two_resources_restarting_one_deployment_roll_it_once_each() -> Result<()> {
    let mut h = Harness::with_users("shared-workload", 1).await?;
    h.create_deployment("orders", 2).await?;
    let deployments: Api<Deployment> = h.namespace.api();
    let revision = |d: &Deployment| -> u32 {
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    let before = revision(&deployments.get("orders").await?);
    h.start_operator()?;
    let rollout = json!({"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s", "timeout": "5m"});
    let mut second = h.user_spec(json!({"rollout": rollout, "rotationRequest": "one"}));
    second["target"]["user"] = json!("app-0");
    second["secret"]["name"] = json!("app-0-redis");
    h.create_rotation(
        NAME,
        h.user_spec(json!({"rollout": rollout, "rotationRequest": "one"})),
    )
    .await?;
    h.create_rotation("app0-cache", second).await?;
    let first = h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    let second = h.wait_rotated("app0-cache", ROTATION_TIMEOUT).await?;

    let orders = deployments.get("orders").await?;
    let rollouts = revision(&orders) - before;
    assert!(
        rollouts <= 2,
        "{rollouts} rollouts of one Deployment for 2 rotations"
    );
    let annotations = orders
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    for (name, done) in [(NAME, first), ("app0-cache", second)] {
        assert_eq!(
            annotations
                .get(&restart_annotation_key(name))
                .map(|value| restarted_for(value)),
            done.status.unwrap().rotation_id.as_deref(),
            "each resource keeps its own restart annotation"
        );
    }
    for (user, secret) in [(USER, USER_SECRET), ("app-0", "app-0-redis")] {
        let new = h.secret_value(secret, "password").await?.unwrap();
        assert_only_password(&h, user, &new).await?;
    }
    h.finish().await
}

#[tokio::test]
async fn deleting_after_the_secret_write_never_rolls_it_back_even_once_reverted() -> Result<()> {
    let mut h = Harness::new("delete-publishing").await?;
    h.create_rotation(NAME, h.user_spec(json!({"rotationRequest": "first"})))
        .await?;
    // The workload Secret is written, and the operator dies before anything records that.
    run_until_fail_point(&mut h, "after-publish-write").await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_ne!(new, USER_PASSWORD, "the new password was published");
    let step = h.rotation(NAME).await?.status.and_then(|s| s.step);
    assert!(
        step < Some(Step::Published),
        "no step since Stage is recorded: {step:?}"
    );
    // A GitOps sync puts the old password back; pods may have read the new one meanwhile.
    h.put_secret(
        USER_SECRET,
        &[("username", USER), ("password", USER_PASSWORD)],
    )
    .await?;

    h.rotations().delete(NAME, &DeleteParams::default()).await?;
    h.start_operator()?;
    wait_gone(&h, NAME).await?;
    assert!(
        h.redis.auth(USER, &new).await?,
        "the password the workload Secret holds still works"
    );
    assert!(
        h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password is kept too"
    );
    assert_eq!(
        h.secret_value(&format!("{NAME}-rotation"), "previous")
            .await?
            .as_deref(),
        Some(USER_PASSWORD),
        "the old password stays known to Kubernetes"
    );
    h.finish().await
}

#[tokio::test]
async fn replace_mode_puts_once_and_survives_a_crash_at_each_end() -> Result<()> {
    let mut h = Harness::new("replace-crash").await?;
    h.create_rotation(
        NAME,
        h.user_spec(json!({"mode": "Replace", "rotationRequest": "first"})),
    )
    .await?;
    // The PUT lands and the operator dies before it records that.
    run_until_fail_point(&mut h, "after-replace").await?;
    h.start_operator()?;
    h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    let applied_puts = h
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.status == Some(200))
        .count();
    assert_eq!(applied_puts, 1, "{:?}", h.api.requests());
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_only_password(&h, USER, &new).await?;
    h.kill_operator().await?;

    // The end recorded, and the operator dies before it clears the state Secret.
    h.request_rotation(NAME, "second").await?;
    run_until_fail_point(&mut h, "after-finish-status").await?;
    let newest = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_ne!(newest, new);
    h.start_operator()?;
    let state = format!("{NAME}-rotation");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while h.secrets().get_opt(&state).await?.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the leftover state Secret was never cleared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = h.rotation(NAME).await?;
    assert_eq!(done.status.as_ref().unwrap().phase, Some(Phase::Idle));
    assert!(
        !has(&done, "Degraded", "True", "StateLost"),
        "a finished rotation is not taken for an abandoned one"
    );
    assert_only_password(&h, USER, &newest).await?;
    h.finish().await
}

/// Found by the protocol model (`tests/protocol_model.rs`, Replace mode, once its PUT names
/// the old password as Redis Software's does): a process that wrote `Replacing` and paused
/// before its PUT, while another read `Replacing` and replayed the PUT, found its own PUT
/// refused (the old password it names is gone) and blocked the rotation
/// `OldPasswordRejected`. As for the DELETE, a refused first PUT asks whether the new
/// password works: then the replay landed, and it is done.
#[tokio::test]
async fn a_replace_whose_replay_lands_first_is_done_not_blocked() -> Result<()> {
    let mut h = Harness::new("replace-race").await?;
    let mut first = h.spawn_operator(&["--fail-point", "before-replace:stop"])?;
    h.create_rotation(
        NAME,
        h.user_spec(json!({"mode": "Replace", "rotationRequest": "first"})),
    )
    .await?;
    stopped_at(&first, "before-replace").await?;
    // Another process reads `Replacing`, replays the PUT, and pauses before recording it.
    let mut replaying = h.spawn_operator(&["--fail-point", "after-replace:stop"])?;
    stopped_at(&replaying, "after-replace").await?;
    let pending = h
        .secret_value(&format!("{NAME}-rotation"), "pending")
        .await?
        .expect("staged");
    assert!(h.redis.auth(USER, &pending).await?, "the replay landed");
    continue_process(&first)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !h.operator_log(1).contains(
        "operation=\"replace_user_password\" method=PUT path=\"/v1/users/password\" elapsed_ms",
    ) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the first PUT was never sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for process in [&mut first, &mut replaying] {
        process.start_kill()?;
        process.wait().await?;
    }
    h.start_operator()?;
    let rotation = h
        .wait_for(NAME, ROTATION_TIMEOUT, "the rotation's end", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Blocked)
                    || (s.phase == Some(Phase::Idle) && s.last_rotation_time.is_some())
            })
        })
        .await?;
    let refused = h.notes_of("OldPasswordRejected").await?;
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        rotation.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Idle)
    );
    assert_only_password(&h, USER, &pending).await?;
    h.assert_no_leak(&[pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

/// Found by the protocol model (`tests/protocol_model.rs`, Replace mode): deleted after the
/// PUT, the cleanup finishes the PUT and publishes, so the Secret holds the only password
/// that works; the running pods hold the replaced one, so the cleanup restarts them too.
#[tokio::test]
async fn deleting_a_replace_rotation_after_its_put_restarts_the_workloads() -> Result<()> {
    let mut h = Harness::new("replace-delete").await?;
    h.create_deployment("orders", 1).await?;
    let spec = h.user_spec(json!({
        "mode": "Replace",
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s", "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    // The PUT lands and the operator dies before publishing.
    run_until_fail_point(&mut h, "after-replace").await?;
    let new = pending_password(&h).await?;
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?, "replaced");
    assert_eq!(orders_restarted_as(&h).await?, None);
    h.rotations().delete(NAME, &DeleteParams::default()).await?;
    h.start_operator()?;
    wait_gone(&h, NAME).await?;
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_ref(),
        Some(&new),
        "the only password that works is published"
    );
    let state = format!("{NAME}-rotation");
    let rotation_id = h.secret_value(&state, "rotationId").await?;
    assert!(rotation_id.is_some(), "the state Secret is kept");
    assert_eq!(
        orders_restarted_as(&h).await?,
        rotation_id,
        "the workloads restart onto the published password"
    );
    let deployments: Api<Deployment> = h.namespace.api();
    cluster::wait_rollout_complete(&deployments, "orders", Duration::from_secs(120)).await?;
    assert_only_password(&h, USER, &new).await?;
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn an_abandoned_rotation_moves_the_next_rotation_forward() -> Result<()> {
    let mut h = Harness::new("abandon").await?;
    h.start_operator()?;
    let spec = h.user_spec(json!({
        "schedule": {"every": "1h"},
        "rollout": {"overlap": "20s", "timeout": "5m"},
        "rotationRequest": "first",
    }));
    h.create_rotation(NAME, spec).await?;
    let published = wait_step(&h, Step::Published).await?;
    let rotation_id = published.status.unwrap().rotation_id;
    // The schedule is due, as it is when a scheduled rotation is in flight. No spec edit: a
    // new generation would make the schedule count again anyway.
    let due = jiff::Timestamp::now() - Duration::from_secs(60);
    patch_status(&h, json!({"nextRotationTime": due.to_string()})).await?;
    h.secrets()
        .delete(&format!("{NAME}-rotation"), &DeleteParams::default())
        .await?;
    // The state Secret is not watched: its loss is seen at the next look, by the overlap's end.
    h.wait_for(NAME, Duration::from_secs(60), "StateLost", |r| {
        has(r, "Degraded", "True", "StateLost")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = h.rotation(NAME).await?;
    let status = after.status.unwrap();
    assert_eq!(
        status.rotation_id, rotation_id,
        "no new rotation started at once"
    );
    assert_eq!(status.phase, Some(Phase::Idle));
    let next = status.next_rotation_time.expect("a next rotation").0;
    assert!(
        next > jiff::Timestamp::now() + Duration::from_secs(50 * 60),
        "the next rotation moved a full interval forward: {next}"
    );
    h.finish().await
}

#[tokio::test]
async fn a_rotation_blocked_on_the_old_password_resumes_when_the_secret_is_fixed() -> Result<()> {
    let mut h = Harness::new("restage").await?;
    h.put_secret(
        USER_SECRET,
        &[("username", USER), ("password", "Wrong-User-Pass-77x")],
    )
    .await?;
    h.start_operator()?;
    h.create_rotation(NAME, h.user_spec(json!({"rotationRequest": "first"})))
        .await?;
    h.wait_for(NAME, Duration::from_secs(60), "Blocked", |r| {
        has(r, "Ready", "False", "OldPasswordRejected")
    })
    .await?;
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    // Someone puts the password the database really has into the Secret.
    h.put_secret(
        USER_SECRET,
        &[("username", USER), ("password", USER_PASSWORD)],
    )
    .await?;
    h.wait_rotated(NAME, Duration::from_secs(30)).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    assert_only_password(&h, USER, &new).await?;
    let restaged = h
        .events()
        .await?
        .into_iter()
        .any(|e| e.reason.as_deref() == Some("Restaged"));
    assert!(restaged, "an event says the rotation started again");
    h.assert_no_leak(&[
        new,
        USER_PASSWORD.into(),
        "Wrong-User-Pass-77x".into(),
        ADMIN_PASSWORD.into(),
    ])
    .await?;
    h.finish().await
}

#[tokio::test]
async fn a_clock_behind_the_publish_time_never_shortens_the_overlap() -> Result<()> {
    let mut h = Harness::new("clock").await?;
    // Published by a replica whose clock runs ten minutes ahead of this one's.
    let ahead = jiff::Timestamp::now() + Duration::from_secs(600);
    published_by_another_clock(&mut h, "4s", ahead).await?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let held = h.rotation(NAME).await?;
    assert_eq!(
        held.status.unwrap().step,
        Some(Step::Published),
        "still waiting out the overlap"
    );
    assert!(
        h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password outlives the overlap"
    );
    check_invariants(&h, NAME).await?;
    let warnings = h
        .events()
        .await?
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .count();
    assert_eq!(warnings, 0);
    h.finish().await
}

/// The other way round: published by a replica whose clock runs behind this one's, so by
/// this clock the overlap passed long ago. What this process has seen at Published, on its
/// monotonic clock, still holds the old password for the whole overlap.
#[tokio::test]
async fn a_clock_ahead_of_the_one_that_published_never_shortens_the_overlap() -> Result<()> {
    let mut h = Harness::new("clock-ahead").await?;
    let behind = jiff::Timestamp::now() - Duration::from_secs(600);
    published_by_another_clock(&mut h, "12s", behind).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let held = h.rotation(NAME).await?;
    assert_eq!(
        held.status.unwrap().step,
        Some(Step::Published),
        "still waiting out the overlap"
    );
    assert!(
        h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password outlives a clock ahead"
    );
    h.wait_rotated(NAME, Duration::from_secs(60)).await?;
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    check_invariants(&h, NAME).await?;
    h.finish().await
}

#[tokio::test]
async fn resources_sharing_a_wrong_admin_spend_one_budget() -> Result<()> {
    let mut h = Harness::with_users("shared-admin", 3).await?;
    const WRONG: &str = "Wrong-Admin-Pass-5q";
    h.put_secret(
        "rs-admin",
        &[("username", ADMIN_EMAIL), ("password", WRONG)],
    )
    .await?;
    h.start_operator()?;
    let names: Vec<String> = (0..3).map(|i| format!("app{i}-cache")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut spec = h.user_spec(json!({"rotationRequest": "one"}));
        spec["target"]["user"] = json!(format!("app-{i}"));
        spec["secret"]["name"] = json!(format!("app-{i}-redis"));
        h.create_rotation(name, spec).await?;
    }
    let refused_logins = |h: &Harness| {
        h.api
            .requests()
            .iter()
            .filter(|r| r.status == Some(401))
            .count()
    };
    for name in &names {
        let blocked = h
            .wait_for(name, Duration::from_secs(60), "Blocked", |r| {
                has(r, "Ready", "False", "Unauthorized")
            })
            .await?;
        let message = &condition(&blocked, "Ready").unwrap().message;
        assert!(message.contains("credentialsSecret"), "{message}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        refused_logins(&h) <= 2,
        "{} failed admin logins for three resources",
        refused_logins(&h)
    );
    let shared = h
        .rotations()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|r| {
            condition(r, "Ready").is_some_and(|c| c.message.contains("for PasswordRotation"))
        })
        .count();
    assert!(shared >= 2, "the others name the shared cause");

    // A touch of the Secret's metadata is no fix: nothing is tried.
    h.secrets()
        .patch(
            "rs-admin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await?;
    // Nor is a restart of the operator, with a fourth resource due at once.
    h.kill_operator().await?;
    h.start_operator()?;
    let mut spec = h.user_spec(json!({"rotationRequest": "one"}));
    spec["secret"]["name"] = json!(USER_SECRET);
    h.create_rotation(NAME, spec).await?;
    h.wait_for(NAME, Duration::from_secs(60), "Blocked", |r| {
        has(r, "Ready", "False", "Unauthorized")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        refused_logins(&h) <= 2,
        "{} failed admin logins after a restart",
        refused_logins(&h)
    );
    assert!(!h.api.is_locked(ADMIN_EMAIL));

    // New data is a fix: every resource goes on.
    h.put_secret(
        "rs-admin",
        &[("username", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
    )
    .await?;
    for name in names.iter().map(String::as_str).chain([NAME]) {
        h.wait_rotated(name, ROTATION_TIMEOUT).await?;
    }
    for i in 0..3 {
        let new = h
            .secret_value(&format!("app-{i}-redis"), "password")
            .await?
            .unwrap();
        assert_only_password(&h, &format!("app-{i}"), &new).await?;
    }
    h.assert_no_leak(&[WRONG.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn referenced_secrets_must_allow_the_resource_and_risky_fields_need_a_flag() -> Result<()> {
    let mut h = Harness::new("tenant").await?;
    h.start_operator()?;
    h.target_checked(TARGET).await?;
    // A tenant's resource names a workload Secret that never allowed it.
    let workload = unshared_secret(
        "other-app",
        &[("username", USER), ("password", USER_PASSWORD)],
    );
    h.secrets().create(&Default::default(), &workload).await?;
    let mut spec = h.user_spec(json!({"rotationRequest": "one"}));
    spec["secret"]["name"] = json!("other-app");
    h.create_rotation(NAME, spec.clone()).await?;
    let refused = h
        .wait_for(NAME, Duration::from_secs(30), "SecretNotAllowed", |r| {
            has(r, "Ready", "False", "SecretNotAllowed")
        })
        .await?;
    let message = &condition(&refused, "Ready").unwrap().message;
    assert!(
        message.contains("other-app") && message.contains("spec.secret"),
        "{message}"
    );

    // The platform team's target serves other users only; then the workload Secret allows
    // the resource. The target's admin Secret needs no annotation: the target is what
    // allows or refuses.
    let admin = unshared_secret(
        "other-admin",
        &[("username", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
    );
    h.secrets().create(&Default::default(), &admin).await?;
    let mut connection = h.rs_connection();
    connection["credentialsSecret"] = json!("other-admin");
    let tenant = |objects: serde_json::Value| json!({"redisSoftware": connection.clone(), "allow": {"objects": objects}});
    assert!(
        h.api.requests().is_empty(),
        "nothing was sent for a resource whose workload Secret does not allow it: {:?}",
        h.api.requests()
    );
    h.put_target("tenant", tenant(json!(["payments-*"])))
        .await?;
    h.target_checked("tenant").await?;
    patch_spec(&h, json!({"target": {"ref": {"name": "tenant"}}})).await?;
    h.wait_for(NAME, Duration::from_secs(30), "the edit seen", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await?;
    h.secrets()
        .patch(
            "other-app",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"rotator.dev/allowed-rotations": NAME}}}),
            ),
        )
        .await?;
    let refused = h
        .wait_for(NAME, Duration::from_secs(30), "TargetNotAllowed", |r| {
            has(r, "Ready", "False", "TargetNotAllowed")
        })
        .await?;
    let message = &condition(&refused, "Ready").unwrap().message;
    assert!(
        message.starts_with(&format!(
            "spec.allow.objects: RotationTarget tenant: {USER} matches none of the allowed objects"
        )),
        "{message}"
    );
    assert_eq!(refused.status.unwrap().step, None, "nothing was staged");
    assert!(
        h.secrets()
            .get_opt(&format!("{NAME}-rotation"))
            .await?
            .is_none(),
        "no password was read into a state Secret"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        h.api.requests().is_empty(),
        "nothing was sent to a target that does not allow the resource: {:?}",
        h.api.requests()
    );
    assert_eq!(
        h.secret_value("other-app", "password").await?.as_deref(),
        Some(USER_PASSWORD),
        "the Secret was not rewritten"
    );
    let warned = h
        .wait_event("TargetNotAllowed", "spec.allow.objects")
        .await?;
    assert_eq!(
        warned.type_.as_deref(),
        Some("Warning"),
        "a Warning event says why"
    );

    // Allowed: the rotation runs.
    h.put_target("tenant", tenant(json!(["payments-*", "orders-*"])))
        .await?;
    h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    let new = h.secret_value("other-app", "password").await?.unwrap();
    assert_only_password(&h, USER, &new).await?;

    // Plain HTTP and verify endpoints are refused by an operator without the flags.
    let mut plain = h.rs_connection();
    plain["url"] = json!(h.api.url().replace("https://", "http://"));
    plain["insecureHttp"] = json!(true);
    h.put_target("plain-http", json!({"redisSoftware": plain}))
        .await?;
    for (name, extra, field) in [
        (
            "plain-http",
            json!({"target": {"ref": {"name": "plain-http"}}}),
            "spec.redisSoftware.insecureHttp",
        ),
        (
            "verify",
            json!({"verify": {"endpoint": h.redis.addr()}}),
            "spec.verify.endpoint",
        ),
    ] {
        let mut spec = h.user_spec(extra);
        spec["rotationRequest"] = json!("one");
        spec["target"]["user"] = json!(format!("{name}-user"));
        h.create_rotation(name, spec).await?;
        let refused = h
            .wait_for(name, Duration::from_secs(30), "InvalidSpec", |r| {
                has(r, "Ready", "False", "InvalidSpec")
            })
            .await?;
        let message = &condition(&refused, "Ready").unwrap().message;
        assert!(
            message.contains(field) && message.contains("--allow-"),
            "{message}"
        );
    }
    h.finish().await
}

#[tokio::test]
async fn one_user_reached_through_two_addresses_is_one_target() -> Result<()> {
    let mut h = Harness::new("two-addresses").await?;
    h.start_operator()?;
    let by_ip = h.user_spec(json!({"rotationRequest": "one"}));
    h.create_rotation(NAME, by_ip).await?;
    let first = h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    assert_eq!(
        first.status.unwrap().cluster.as_deref(),
        Some("cluster.test"),
        "the cluster is known by what it says about itself"
    );
    let rotated = h.secret_value(USER_SECRET, "password").await?.unwrap();

    // The same cluster by name: another string, the same user. Created a second later:
    // creation times are in seconds, and a tie goes by name.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut connection = h.rs_connection();
    connection["url"] = json!(h.api.url().replace("127.0.0.1", "localhost"));
    h.put_target("by-name", json!({"redisSoftware": connection}))
        .await?;
    let by_name =
        h.user_spec(json!({"target": {"ref": {"name": "by-name"}}, "rotationRequest": "one"}));
    h.create_rotation("orders-by-name", by_name).await?;
    only_the_first_rotates(&h, "orders-by-name", &rotated).await?;
    h.finish().await
}

/// `second`, on the user `NAME` rotated to `rotated`, is refused `Conflict` naming `NAME`
/// and changes nothing; requested at once on both, only `NAME` rotates.
async fn only_the_first_rotates(h: &Harness, second: &str, rotated: &str) -> Result<()> {
    let refused = h
        .wait_for(second, Duration::from_secs(30), "Conflict", |r| {
            has(r, "Ready", "False", "Conflict")
        })
        .await?;
    let message = &condition(&refused, "Ready").unwrap().message;
    assert!(message.contains(NAME), "{message}");
    assert_only_password(h, USER, rotated).await?;

    h.request_rotation(NAME, "two").await?;
    h.request_rotation(second, "two").await?;
    h.wait_for(NAME, ROTATION_TIMEOUT, "the second rotation", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.handled_rotation_request.as_deref() == Some("two") && s.step.is_none()
        })
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = h.rotation(second).await?;
    assert!(has(&refused, "Ready", "False", "Conflict"));
    assert!(refused.status.unwrap().last_rotation_time.is_none());
    let newest = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert_only_password(h, USER, &newest).await
}

/// A Redis Software user named by its name in one resource and by its email (in another
/// case) in the next is one user: the second is refused `Conflict` naming the first, and
/// rotates nothing, also when both are asked to rotate at once.
#[tokio::test]
async fn one_user_named_by_its_name_and_its_email_is_one_user() -> Result<()> {
    let mut h = Harness::new("name-and-email").await?;
    h.start_operator()?;
    h.create_rotation(NAME, h.user_spec(json!({"rotationRequest": "one"})))
        .await?;
    let first = h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    assert!(
        first
            .status
            .unwrap()
            .holders
            .iter()
            .any(|h| h.starts_with("user uid ")),
        "the user is recorded as the cluster knows it"
    );
    let rotated = h.secret_value(USER_SECRET, "password").await?.unwrap();
    // A second later: creation times are in seconds, and a tie goes by name.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let by_email =
        h.user_spec(json!({"target": {"user": "Orders-App@Shop.test"}, "rotationRequest": "one"}));
    h.create_rotation("orders-by-email", by_email).await?;
    only_the_first_rotates(&h, "orders-by-email", &rotated).await?;
    h.finish().await
}

#[tokio::test]
async fn a_refusal_that_cannot_be_explained_blocks_instead_of_retrying() -> Result<()> {
    let mut h = Harness::new("unexplained").await?;
    h.put_secret(
        USER_SECRET,
        &[("username", USER), ("password", "Stale-User-Pass-3k")],
    )
    .await?;
    // The admin read that would tell a refused admin login from a refused old password fails.
    h.api
        .inject(FaultRule::status(503, 1000).on("GET", "/v1/users"));
    h.start_operator()?;
    h.create_rotation(NAME, h.user_spec(json!({"rotationRequest": "one"})))
        .await?;
    let blocked = h
        .wait_for(NAME, Duration::from_secs(30), "Blocked", |r| {
            has(r, "Ready", "False", "Unauthorized")
        })
        .await?;
    let message = &condition(&blocked, "Ready").unwrap().message;
    assert!(message.contains("failed too"), "{message}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let refused = h
        .api
        .requests()
        .iter()
        .filter(|r| r.status == Some(401))
        .count();
    assert_eq!(refused, 1, "one refused call, not a retry loop");
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}
