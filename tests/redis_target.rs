//! A RotationTarget's `spec.redis` end to end, beyond the scenarios every target runs
//! (`tests/targets.rs`): the operator process on the local control plane rotates an ACL user of
//! real redis-servers (a primary with a replica found from the primary, a three-primary
//! cluster, a node restarted or down). Which passwords work is proven with real `AUTH` on every
//! node.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::checks::*;
use common::*;
use kube::api::Api;
use password_rotator::resource::Phase;
use password_rotator::targets::redis::client::ADMIN_ACL_RULES;
use rotator_test_support::redis_topology::{Options, Persist, Topology};
use serde_json::json;

const SECRET: &str = "cache-credentials";
const ADMIN_SECRET: &str = "redis-admin";
const REDIS_TARGET: &str = "redis-target";

/// Puts the admin and workload Secrets of `topology` into the test's namespace.
async fn secrets_for(h: &Harness, topology: &Topology) -> Result<()> {
    h.put_secret(
        ADMIN_SECRET,
        &[
            ("username", &topology.admin.user),
            ("password", &topology.admin.password),
        ],
    )
    .await?;
    h.put_secret(
        SECRET,
        &[
            ("username", &topology.app.user),
            ("password", &topology.app.password),
        ],
    )
    .await
}

/// The RotationTarget on `endpoints`, in plaintext with the admin Secret, and the resource
/// `cache` on it that rotates the app user at once (request `request`).
async fn create_cache(
    h: &Harness,
    topology: &Topology,
    endpoints: &[String],
    request: &str,
) -> Result<()> {
    create_cache_overlapping(h, topology, endpoints, request, "0s").await
}

/// As [`create_cache`], with both passwords kept valid for `overlap` after the publish.
async fn create_cache_overlapping(
    h: &Harness,
    topology: &Topology,
    endpoints: &[String],
    request: &str,
    overlap: &str,
) -> Result<()> {
    h.put_target(
        REDIS_TARGET,
        json!({"redis": {
            "endpoints": endpoints,
            "credentialsSecret": ADMIN_SECRET,
            "insecurePlaintext": true,
        }}),
    )
    .await?;
    h.create_rotation(
        "cache",
        json!({
            "target": {
                "ref": {"kind": "RotationTarget", "name": REDIS_TARGET},
                "user": topology.app.user,
            },
            "secret": {"name": SECRET},
            "rollout": {"overlap": overlap, "timeout": "5m"},
            "rotationRequest": request,
        }),
    )
    .await?;
    Ok(())
}

/// A harness with the operator started (plaintext allowed), beside `topology` and its
/// Secrets.
async fn operator_beside(prefix: &str, topology: &Topology) -> Result<Harness> {
    let mut h = Harness::new(prefix).await?;
    secrets_for(&h, topology).await?;
    h.operator_flags.push("--allow-insecure-http");
    h.start_operator()?;
    Ok(h)
}

async fn new_password(h: &Harness, initial: &str) -> Result<String> {
    let new = h
        .secret_value(SECRET, "password")
        .await?
        .expect("a password in the workload Secret");
    assert_ne!(new, initial, "the workload Secret holds a new password");
    Ok(new)
}

/// The full rotation with workloads authenticating throughout is in `tests/targets.rs`; this
/// one shows what only the redis target has: discovery from the primary alone, the
/// replication identity and the persistence status.
#[tokio::test]
async fn a_primary_and_its_replica_rotate_together_found_from_the_primary() -> Result<()> {
    let topology = Topology::replicated(&Options::new(Persist::AclFile, ADMIN_ACL_RULES)).await?;
    let h = operator_beside("redis-repl", &topology).await?;
    let initial = topology.app.password.clone();
    // Only the primary is named: the replica is found from it.
    let primary = topology.nodes[0].addr();
    create_cache(&h, &topology, &[primary], "first").await?;
    let rotated = h.wait_rotated("cache", Duration::from_secs(60)).await?;
    let new = new_password(&h, &initial).await?;
    topology.assert_passwords(&[&new], &[&initial]).await;
    let status = rotated.status.expect("status");
    assert_eq!(status.persistence.as_deref(), Some("AclFile"));
    assert!(
        status
            .cluster
            .is_some_and(|c| c.starts_with("replication:"))
    );
    assert_eq!(
        h.secret_value(SECRET, "username").await?.as_deref(),
        Some(topology.app.user.as_str())
    );
    h.assert_no_leak(&[initial, new, topology.admin.password.clone()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn a_cluster_rotates_on_every_node_and_a_restarted_node_keeps_only_the_new_password()
-> Result<()> {
    let mut topology = Topology::cluster(&Options::new(Persist::AclFile, ADMIN_ACL_RULES)).await?;
    let h = operator_beside("redis-cluster", &topology).await?;
    let initial = topology.app.password.clone();
    let seed = topology.nodes[1].addr();
    create_cache(&h, &topology, &[seed], "first").await?;
    let rotated = h.wait_rotated("cache", Duration::from_secs(60)).await?;
    let new = new_password(&h, &initial).await?;
    topology.assert_passwords(&[&new], &[&initial]).await;
    let status = rotated.status.expect("status");
    assert!(status.cluster.is_some_and(|c| c.starts_with("cluster:")));

    topology.nodes[2].restart().await?;
    topology.assert_passwords(&[&new], &[&initial]).await;
    h.finish().await
}

#[tokio::test]
async fn a_node_down_mid_rotation_leaves_both_passwords_valid_until_it_is_back() -> Result<()> {
    let mut topology =
        Topology::replicated(&Options::new(Persist::AclFile, ADMIN_ACL_RULES)).await?;
    let h = operator_beside("redis-down", &topology).await?;
    let initial = topology.app.password.clone();
    // Both nodes are listed: a replica that is down is not listed by its primary.
    let endpoints = topology.addrs();
    create_cache(&h, &topology, &endpoints, "first").await?;
    let rotated = h.wait_rotated("cache", Duration::from_secs(60)).await?;
    let first = new_password(&h, &initial).await?;
    let first_rotation = rotated.status.and_then(|s| s.last_rotation_time);

    topology.nodes[1].stop().await?;
    h.request_rotation("cache", "second").await?;
    // The rotation cannot add the new password on the replica: it waits, retrying, and the
    // workload Secret keeps the password that works on every node.
    let waiting = h
        .wait_for("cache", Duration::from_secs(30), "a retried add", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Rotating)
                    && s.handled_rotation_request.as_deref() == Some("second")
            })
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.secret_value(SECRET, "password").await?.as_deref(),
        Some(first.as_str()),
        "nothing is published while a node misses the new password"
    );
    assert!(topology.nodes[0].auth(&topology.app.user, &first).await?);
    h.wait_event_mentioning(&topology.nodes[1].addr()).await?;
    assert_ne!(
        waiting.status.and_then(|s| s.last_rotation_time),
        None,
        "the first rotation stays recorded"
    );

    topology.nodes[1].restart().await?;
    h.wait_for(
        "cache",
        Duration::from_secs(90),
        "the second rotation",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Idle)
                    && s.step.is_none()
                    && s.last_rotation_time != first_rotation
            })
        },
    )
    .await?;
    let second = new_password(&h, &first).await?;
    topology
        .assert_passwords(&[&second], &[&first, &initial])
        .await;
    h.finish().await
}

/// A node that cannot persist its ACLs (no aclfile, no config file): the rotation holds
/// before deleting the old password, says why (`Degraded` `NotPersisted`, an event), and both
/// passwords stay valid; with `spec.persistence: Optional` it finishes.
#[tokio::test]
async fn a_change_a_node_cannot_persist_holds_before_retire_unless_optional() -> Result<()> {
    let topology = Topology::standalone(&Options::new(Persist::Nothing, ADMIN_ACL_RULES)).await?;
    let h = operator_beside("redis-nopersist", &topology).await?;
    let initial = topology.app.password.clone();
    create_cache(&h, &topology, &[topology.nodes[0].addr()], "first").await?;
    let held = h
        .wait_for("cache", Duration::from_secs(60), "NotPersisted", |r| {
            condition_reason(r, "Degraded").as_deref() == Some("NotPersisted")
        })
        .await?;
    assert_eq!(
        step(&held),
        Some(password_rotator::resource::Step::RolledOut)
    );
    let message = condition_message(&held, "Degraded");
    assert!(message.contains("spec.persistence: Optional"), "{message}");
    h.wait_event("NotPersisted", "could not persist").await?;
    let new = new_password(&h, &initial).await?;
    topology.assert_passwords(&[&new, &initial], &[]).await;

    let api: Api<password_rotator::resource::PasswordRotation> = h.rotations();
    api.patch(
        "cache",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"persistence": "Optional"}})),
    )
    .await?;
    h.wait_rotated("cache", Duration::from_secs(60)).await?;
    topology.assert_passwords(&[&new], &[&initial]).await;
    h.finish().await
}

/// A replica restarted from an older ACL file right after the publish lacks the password the
/// workloads now hold: it gets it back within seconds, during the overlap, not at Retire.
#[tokio::test]
async fn a_replica_restarted_from_an_older_acl_file_is_healed_during_the_overlap() -> Result<()> {
    let mut topology =
        Topology::replicated(&Options::new(Persist::AclFile, ADMIN_ACL_RULES)).await?;
    let h = operator_beside("redis-heal", &topology).await?;
    let initial = topology.app.password.clone();
    let acl_file = topology.nodes[1].dir().join("users.acl");
    let older = std::fs::read(&acl_file)?;
    let primary = topology.nodes[0].addr();
    create_cache_overlapping(&h, &topology, &[primary], "first", "40s").await?;
    h.wait_for("cache", Duration::from_secs(60), "Published", |r| {
        step(r) == Some(password_rotator::resource::Step::Published)
    })
    .await?;
    let new = new_password(&h, &initial).await?;
    topology.nodes[1].stop().await?;
    std::fs::write(&acl_file, &older)?;
    topology.nodes[1].restart().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !topology.nodes[1].auth(&topology.app.user, &new).await? {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the restarted replica still refuses the published password"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    h.wait_event("NodeHealed", &topology.nodes[1].addr())
        .await?;
    let now = h.rotations().get("cache").await?;
    assert_eq!(
        step(&now),
        Some(password_rotator::resource::Step::Published),
        "healed during the overlap"
    );
    topology.assert_passwords(&[&new, &initial], &[]).await;
    h.wait_rotated("cache", Duration::from_secs(90)).await?;
    topology.assert_passwords(&[&new], &[&initial]).await;
    h.finish().await
}

/// A replica down, and so unlisted by its primary, during a rotation comes back from its ACL
/// file with the password of the rotation before. The next rotation's Retire leaves every node
/// holding exactly the published password: no password from before stays valid there.
#[tokio::test]
async fn after_retire_every_node_holds_exactly_the_published_password() -> Result<()> {
    let mut topology =
        Topology::replicated(&Options::new(Persist::AclFile, ADMIN_ACL_RULES)).await?;
    let h = operator_beside("redis-exact", &topology).await?;
    let initial = topology.app.password.clone();
    topology.nodes[1].stop().await?;
    create_cache(&h, &topology, &[topology.nodes[0].addr()], "first").await?;
    h.wait_rotated("cache", Duration::from_secs(60)).await?;
    let first = new_password(&h, &initial).await?;
    topology.nodes[1].restart().await?;
    assert!(
        topology.nodes[1].auth(&topology.app.user, &initial).await?,
        "the replica is back with the password of the rotation before"
    );

    h.request_rotation("cache", "second").await?;
    h.wait_for(
        "cache",
        Duration::from_secs(90),
        "the second rotation",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Idle)
                    && s.step.is_none()
                    && s.handled_rotation_request.as_deref() == Some("second")
            })
        },
    )
    .await?;
    let second = new_password(&h, &first).await?;
    topology
        .assert_passwords(&[&second], &[&first, &initial])
        .await;
    h.finish().await
}

#[tokio::test]
async fn plaintext_needs_the_operator_flag() -> Result<()> {
    let mut h = Harness::new("redis-plain").await?;
    let topology = Topology::standalone(&Options::new(Persist::Nothing, ADMIN_ACL_RULES)).await?;
    secrets_for(&h, &topology).await?;
    h.start_operator()?;
    let endpoint = topology.nodes[0].addr();
    create_cache(&h, &topology, &[endpoint], "first").await?;
    let refused = h
        .wait_for("cache", Duration::from_secs(30), "InvalidSpec", |r| {
            condition_reason(r, "Ready").as_deref() == Some("InvalidSpec")
        })
        .await?;
    assert!(
        ready_message(&refused).contains("spec.redis.insecurePlaintext"),
        "{}",
        ready_message(&refused)
    );
    topology
        .assert_passwords(&[&topology.app.password], &[])
        .await;
    let api: Api<password_rotator::resource::PasswordRotation> = h.rotations();
    assert!(
        api.get("cache")
            .await?
            .status
            .and_then(|s| s.step)
            .is_none()
    );
    h.finish().await
}

#[tokio::test]
async fn exactly_one_target_is_admitted() -> Result<()> {
    let h = Harness::new("one-of").await?;
    // A resource names exactly one object on its target.
    let mut both = h.user_spec(json!({"mode": "Replace"}));
    both["target"]["account"] = json!("orders-a");
    let mut none = h.user_spec(json!({}));
    none["target"] = json!({"ref": {"kind": "RotationTarget", "name": TARGET}});
    for spec in [both, none] {
        let refused = h
            .create_rotation("two", spec)
            .await
            .expect_err("refused at admission");
        assert!(
            refused
                .to_string()
                .contains("set exactly one of user, databaseUid, account or alternatingAccounts"),
            "{refused}"
        );
    }
    // A target is exactly one system.
    let redis = json!({
        "endpoints": ["127.0.0.1:6379"],
        "credentialsSecret": ADMIN_SECRET,
        "insecurePlaintext": true,
    });
    let both = json!({"redisSoftware": h.rs_connection(), "redis": redis});
    let none = json!({});
    for spec in [both, none] {
        let refused = h
            .put_target("two", spec)
            .await
            .expect_err("refused at admission");
        assert!(
            refused
                .to_string()
                .contains("exactly one of redisSoftware, redis or ontap must be set"),
            "{refused}"
        );
    }
    assert!(h.rotations().get_opt("two").await?.is_none());
    assert!(h.targets().get_opt("two").await?.is_none());
    h.finish().await
}
