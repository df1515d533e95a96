//! Sharding on the real parts: several operator processes, each with its own `--shard` and
//! Lease, in one namespace of the local control plane, against a real redis-server behind the
//! Redis Software API test server. Each process has its own `POD_NAME`, so the Events'
//! `reportingInstance` and the Leases' holders say which one acted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::checks::{assert_only_password, condition_reason, ready_message, step};
use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use password_rotator::resource::{PasswordRotation, SHARD_LABEL, Step};
use password_rotator::rotation_target::RotationTarget;
use serde_json::{Value, json};
use tokio::process::Child;

const ROTATION_TIMEOUT: Duration = Duration::from_secs(120);

/// An operator process and the `POD_NAME` it reports as.
struct Operator {
    pod: &'static str,
    run: u32,
    child: Child,
}

/// Starts an operator as `pod`, with `args` and `env` beside the harness's own.
fn start(
    h: &mut Harness,
    pod: &'static str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Operator> {
    let mut env = env.to_vec();
    env.push(("POD_NAME", pod));
    let child = h.spawn_operator_with_env(args, &env)?;
    Ok(Operator {
        pod,
        run: h.operator_runs(),
        child,
    })
}

async fn wait_log(h: &Harness, operator: &Operator, needle: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.operator_log(operator.run).contains(needle) {
        ensure!(
            Instant::now() < deadline,
            "{} never logged {needle:?}:\n{}",
            operator.pod,
            h.operator_log(operator.run)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Creates RotationTarget `name` (the API server's connection), labelled with `shard` when
/// given, before any resource names it.
async fn target_in_shard(h: &Harness, name: &str, shard: Option<&str>) -> Result<()> {
    let mut metadata = json!({"name": name});
    if let Some(shard) = shard {
        metadata["labels"] = json!({ SHARD_LABEL: shard });
    }
    let target: RotationTarget = serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2",
        "kind": "RotationTarget",
        "metadata": metadata,
        "spec": {"redisSoftware": h.rs_connection()},
    }))?;
    h.targets().create(&PostParams::default(), &target).await?;
    Ok(())
}

/// Creates PasswordRotation `name` on RotationTarget `target`.
async fn create_on(h: &Harness, name: &str, target: &str, mut spec: Value) -> Result<()> {
    spec["target"]["ref"] = json!({"kind": "RotationTarget", "name": target});
    let rotation: PasswordRotation = serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2",
        "kind": "PasswordRotation",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    h.rotations()
        .create(&PostParams::default(), &rotation)
        .await?;
    Ok(())
}

async fn label_shard(h: &Harness, target: &str, shard: &str) -> Result<()> {
    let patch = json!({"metadata": {"labels": { SHARD_LABEL: shard }}});
    h.targets()
        .patch(target, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// One Event about a PasswordRotation.
#[derive(Debug)]
struct RotationEvent {
    resource: String,
    instance: String,
    type_: String,
    reason: String,
}

async fn rotation_events(h: &Harness) -> Result<Vec<RotationEvent>> {
    Ok(h.events()
        .await?
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("PasswordRotation"))
        .map(|e| RotationEvent {
            resource: e.involved_object.name.unwrap_or_default(),
            instance: e.reporting_instance.unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
        })
        .collect())
}

/// Deletes the resources while their operators run, so that the finalizers finish, then
/// stops the operators and removes the namespace.
async fn tear_down(h: Harness, operators: Vec<Operator>) -> Result<()> {
    let rotations = h.rotations();
    rotations
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rotations
        .list(&ListParams::default())
        .await?
        .items
        .is_empty()
    {
        ensure!(
            Instant::now() < deadline,
            "the operators did not finish the finalizers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut operator in operators {
        operator.child.start_kill()?;
        operator.child.wait().await?;
    }
    h.finish().await
}

/// Three operators at once, with leader election: shard a (`--shard a`), shard b (`SHARD=b`)
/// and the unsharded one. Each of three resources, on targets labelled a, b and not at all,
/// rotates exactly once, by its target's shard's operator only, which holds a Lease of its
/// own. The resources' own shard labels count for nothing: a tenant cannot move its resource.
#[tokio::test]
async fn three_operators_split_the_resources_by_shard() -> Result<()> {
    let mut h = Harness::with_users("sharding", 2).await?;
    let ns = h.ns().to_owned();
    let election = [
        "--leader-election",
        "--lease-namespace",
        &ns,
        "--lease-seconds",
        "5",
    ];
    let with = |more: &[&'static str]| -> Vec<&str> {
        election
            .iter()
            .copied()
            .chain(more.iter().copied())
            .collect()
    };
    let operators = vec![
        start(&mut h, "shard-a", &with(&["--shard", "a"]), &[])?,
        start(&mut h, "shard-b", &with(&[]), &[("SHARD", "b")])?,
        start(&mut h, "unsharded", &with(&[]), &[])?,
    ];
    for operator in &operators {
        wait_log(&h, operator, "leading").await?;
    }
    wait_log(
        &h,
        &operators[0],
        "acting only on the targets of this shard shard=a",
    )
    .await?;
    wait_log(
        &h,
        &operators[1],
        "acting only on the targets of this shard shard=b",
    )
    .await?;
    wait_log(
        &h,
        &operators[2],
        "unsharded: acting only on the targets without a shard label",
    )
    .await?;

    // resource, its target's shard, the operator that must act on it, its user, workload
    // Secret and initial password.
    let resources = [
        (
            "in-a",
            Some("a"),
            "shard-a",
            "app-0",
            "app-0-redis",
            extra_password(0),
        ),
        (
            "in-b",
            Some("b"),
            "shard-b",
            "app-1",
            "app-1-redis",
            extra_password(1),
        ),
        (
            "in-none",
            None,
            "unsharded",
            USER,
            USER_SECRET,
            USER_PASSWORD.to_owned(),
        ),
    ];
    for (name, shard, _, user, secret, _) in &resources {
        let target = match shard {
            Some(shard) => {
                let target = format!("rs-{shard}");
                target_in_shard(&h, &target, Some(shard)).await?;
                target
            }
            None => TARGET.to_owned(),
        };
        let spec = h.user_spec(json!({
            "target": {"user": user},
            "secret": {"name": secret},
            "rotationRequest": "first",
        }));
        create_on(&h, name, &target, spec).await?;
        // The tenant's label on its resource: ignored.
        let wrong_shard = json!({"metadata": {"labels": { SHARD_LABEL: "b" }}});
        h.rotations()
            .patch(name, &PatchParams::default(), &Patch::Merge(&wrong_shard))
            .await?;
    }
    let mut passwords = vec![ADMIN_PASSWORD.to_owned()];
    for (name, _, _, user, secret, initial) in &resources {
        h.wait_rotated(name, ROTATION_TIMEOUT).await?;
        let new = h
            .secret_value(secret, "password")
            .await?
            .context("the workload Secret keeps a password")?;
        assert_ne!(&new, initial, "{name}: rotated");
        assert!(
            h.redis.auth(user, &new).await?,
            "{name}: the new password works"
        );
        assert!(
            !h.redis.auth(user, initial).await?,
            "{name}: the old password is refused"
        );
        assert_only_password(&h, user, &new).await?;
        passwords.extend([new, initial.clone()]);
    }

    // Exactly one rotation each: one POST and one DELETE per user, one Started and one
    // Rotated event per resource.
    let applied = |method: &str| {
        h.api
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == "/v1/users/password")
            .filter(|r| r.status == Some(200))
            .count()
    };
    assert_eq!(applied("POST"), 3, "{:?}", h.api.requests());
    assert_eq!(applied("DELETE"), 3, "{:?}", h.api.requests());
    let events = rotation_events(&h).await?;
    for (name, _, operator, ..) in &resources {
        for reason in ["Started", "Rotated"] {
            let count = events
                .iter()
                .filter(|e| e.resource == *name && e.reason == reason)
                .count();
            assert_eq!(count, 1, "{name}: {reason} events: {events:#?}");
        }
        // Every Event about it came from its own shard's operator.
        let reporters: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.resource == *name)
            .map(|e| e.instance.as_str())
            .collect();
        assert_eq!(
            reporters,
            BTreeSet::from([*operator]),
            "{name}: who reported: {events:#?}"
        );
    }

    // A Lease per shard, each held by that shard's operator.
    let leases: Api<Lease> = h.namespace.api();
    let mut holders = BTreeMap::new();
    for (lease, pod) in [
        ("password-rotator-a", "shard-a"),
        ("password-rotator-b", "shard-b"),
        ("password-rotator", "unsharded"),
    ] {
        let holder = leases
            .get(lease)
            .await?
            .spec
            .and_then(|s| s.holder_identity)
            .with_context(|| format!("Lease {lease} has no holder"))?;
        assert!(
            holder.starts_with(&format!("{pod}_")),
            "Lease {lease} is held by {holder}, not by {pod}"
        );
        holders.insert(holder, lease);
    }
    assert_eq!(holders.len(), 3, "three distinct holders: {holders:?}");

    h.assert_no_leak(&passwords).await?;
    tear_down(h, operators).await
}

/// A target relabelled from shard a to shard b while a rotation on it waits out its overlap
/// at Published: shard b reports `ShardMoved` and does nothing else, shard a (which no longer
/// owns it) does nothing either, so both passwords stay valid well past the overlap.
/// Labelled a again, shard a finishes the rotation.
#[tokio::test]
async fn a_rotation_relabelled_mid_way_is_left_to_the_shard_that_started_it() -> Result<()> {
    const NAME: &str = "orders-cache";
    const OVERLAP: Duration = Duration::from_secs(15);
    let mut h = Harness::new("shard-move").await?;
    let operators = vec![
        start(&mut h, "shard-a", &["--shard", "a"], &[])?,
        start(&mut h, "shard-b", &["--shard", "b"], &[])?,
    ];
    let spec = h.user_spec(json!({
        "rollout": {"overlap": format!("{}s", OVERLAP.as_secs()), "timeout": "5m"},
        "rotationRequest": "first",
    }));
    target_in_shard(&h, "rs-a", Some("a")).await?;
    create_on(&h, NAME, "rs-a", spec).await?;
    let published = h
        .wait_for(NAME, Duration::from_secs(60), "Published", |r| {
            step(r) == Some(Step::Published)
        })
        .await?;
    label_shard(&h, "rs-a", "b").await?;
    let status = published.status.clone().context("status")?;
    let rotation_id = status.rotation_id.clone().context("rotationId")?;
    let published_time = status.published_time.clone().context("publishedTime")?.0;
    let state_name = format!("{NAME}-rotation");
    let state = h.secrets().get(&state_name).await?;
    assert_eq!(
        state
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SHARD_LABEL)),
        Some(&"a".to_owned()),
        "the state Secret carries the shard that staged it"
    );
    let pending = h
        .secret_value(&state_name, "pending")
        .await?
        .context("pending")?;

    let moved = h
        .wait_for(NAME, Duration::from_secs(60), "ShardMoved", |r| {
            condition_reason(r, "Ready").as_deref() == Some("ShardMoved")
        })
        .await?;
    let message = ready_message(&moved);
    assert!(
        message.starts_with(&format!(
            "rotation {rotation_id} was started by shard a; this operator (shard b) does not touch it."
        )) && message.contains(&format!("kubectl -n {} label secret {state_name} rotator.dev/shard=b --overwrite", h.ns())),
        "{message}"
    );

    // Past the overlap (and some), the rotation has not moved: nobody retired the old
    // password, nobody touched the state or the workload Secret.
    let past_overlap = published_time + OVERLAP + Duration::from_secs(5);
    while jiff::Timestamp::now() < past_overlap {
        let now = h.rotation(NAME).await?;
        assert_eq!(step(&now), Some(Step::Published), "the rotation moved on");
        assert!(
            h.redis.auth(USER, USER_PASSWORD).await?,
            "the old password works"
        );
        assert!(
            h.redis.auth(USER, &pending).await?,
            "the new password works"
        );
        assert_eq!(
            h.secrets()
                .get(&state_name)
                .await?
                .metadata
                .resource_version,
            state.metadata.resource_version,
            "the state Secret is unchanged"
        );
        assert_eq!(
            h.secret_value(USER_SECRET, "password").await?,
            Some(pending.clone())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let by_b: Vec<(String, String)> = rotation_events(&h)
        .await?
        .into_iter()
        .filter(|e| e.instance == "shard-b")
        .map(|e| (e.type_, e.reason))
        .collect();
    assert_eq!(
        by_b,
        [("Warning".to_owned(), "ShardMoved".to_owned())],
        "shard b only reported"
    );
    assert!(
        !h.operator_log(operators[1].run)
            .contains("rotation step done")
    );

    // Back in shard a: it finishes, and the old password is gone.
    label_shard(&h, "rs-a", "a").await?;
    let done = h.wait_rotated(NAME, ROTATION_TIMEOUT).await?;
    assert_eq!(condition_reason(&done, "Ready").as_deref(), Some("Rotated"));
    assert_only_password(&h, USER, &pending).await?;
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    let events = rotation_events(&h).await?;
    let by_a: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.instance == "shard-a")
        .map(|e| e.reason.as_str())
        .collect();
    assert!(
        by_a.is_superset(&BTreeSet::from(["Started", "Rotated"])),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.instance == "shard-a" || e.reason == "ShardMoved"),
        "{events:#?}"
    );
    h.assert_no_leak(&[pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    tear_down(h, operators).await
}

/// A shard label no operator serves (a typo) is not silent: after `--shard-patience-seconds`
/// the resource says so (Ready=False `ShardUnserved` naming the label, a Warning event) and
/// nothing touches its password. Labelled right, it is served. Relabelled to a shard no
/// operator runs mid-rotation and deleted, it is released after twice the patience, both
/// passwords kept valid in the orphaned state Secret, instead of staying Terminating.
#[tokio::test]
async fn a_shard_no_operator_serves_is_reported_and_its_deletion_released() -> Result<()> {
    const NAME: &str = "orders-cache";
    let mut h = Harness::new("shard-typo").await?;
    let patience = ["--shard-patience-seconds", "3", "--allow-verify-endpoints"];
    let operators = vec![
        start(
            &mut h,
            "shard-a",
            &[&["--shard", "a"][..], &patience].concat(),
            &[],
        )?,
        start(&mut h, "unsharded", &patience, &[])?,
    ];
    // The verify endpoint refuses: the rotation holds at Added once it starts.
    let spec = h.user_spec(json!({"rotationRequest": "r", "verify": {"endpoint": "127.0.0.1:1"}}));
    target_in_shard(&h, "rs-a", Some("aa")).await?;
    create_on(&h, NAME, "rs-a", spec).await?;
    let reported = h
        .wait_for(NAME, Duration::from_secs(60), "ShardUnserved", |r| {
            condition_reason(r, "Ready").as_deref() == Some("ShardUnserved")
        })
        .await?;
    let message = ready_message(&reported);
    assert!(
        message.starts_with(
            "its target is labelled rotator.dev/shard=aa, and no operator run --shard aa"
        ),
        "{message}"
    );
    h.wait_event("ShardUnserved", "rotator.dev/shard=aa")
        .await?;
    assert_only_password(&h, USER, USER_PASSWORD).await?;
    assert!(
        h.secrets()
            .get_opt(&format!("{NAME}-rotation"))
            .await?
            .is_none()
    );

    label_shard(&h, "rs-a", "a").await?;
    let served = h
        .wait_for(NAME, Duration::from_secs(60), "Added", |r| {
            step(r) == Some(Step::Added)
        })
        .await?;
    assert_eq!(
        condition_reason(&served, "Ready").as_deref(),
        Some("Rotating")
    );
    assert_eq!(
        served.status.as_ref().and_then(|s| s.shard.as_deref()),
        Some("a")
    );
    let pending = h
        .secret_value(&format!("{NAME}-rotation"), "pending")
        .await?
        .context("pending")?;

    label_shard(&h, "rs-a", "zz").await?;
    h.rotations().delete(NAME, &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.rotations().get_opt(NAME).await?.is_some() {
        ensure!(Instant::now() < deadline, "{NAME} stayed Terminating");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.wait_event("LeftBothValid", "rotator.dev/shard=zz")
        .await?;
    assert!(h.redis.auth(USER, USER_PASSWORD).await? && h.redis.auth(USER, &pending).await?);
    let state = h.secrets().get(&format!("{NAME}-rotation")).await?;
    assert!(
        state.owner_references().is_empty(),
        "the state Secret is orphaned"
    );
    h.assert_no_leak(&[pending, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    tear_down(h, operators).await
}
