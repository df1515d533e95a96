//! Checks the end-to-end tests share: what status says, the invariants of the rotation
//! protocol with real `AUTH`, and workloads that authenticate throughout.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use password_rotator::resource::{PasswordRotation, Phase, Step, restart_annotation_key};
use rotator_test_support::cluster;
use rotator_test_support::redis_server::password_hash;

use super::{Harness, USER, USER_PASSWORD, USER_SECRET};

pub fn phase(r: &PasswordRotation) -> Option<Phase> {
    r.status.as_ref().and_then(|s| s.phase)
}

pub fn step(r: &PasswordRotation) -> Option<Step> {
    r.status.as_ref().and_then(|s| s.step)
}

/// The restart annotation of resource `orders-cache` on a pod template.
/// The rotation (and round) resource orders-cache last restarted the workload onto.
pub fn template_rotation(meta: Option<kube::api::ObjectMeta>) -> Option<String> {
    meta?
        .annotations?
        .remove(&restart_annotation_key("orders-cache"))
        .map(|value| super::restarted_for(&value).to_owned())
}

pub fn ready_message(r: &PasswordRotation) -> String {
    condition_message(r, "Ready")
}

pub fn condition_message(r: &PasswordRotation, type_: &str) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

pub fn condition_reason(r: &PasswordRotation, type_: &str) -> Option<String> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
}

/// Every password the user's password list accepts must be known to Kubernetes: the
/// workload Secret or the state Secret. And the workload Secret's password must work.
pub async fn check_invariants(h: &Harness, rotation: &str) -> Result<Vec<String>> {
    check_invariants_of(h, rotation, USER, USER_SECRET).await
}

/// `check_invariants` for the ACL user `user` whose workload Secret is `secret`.
pub async fn check_invariants_of(
    h: &Harness,
    rotation: &str,
    user: &str,
    secret: &str,
) -> Result<Vec<String>> {
    let workload = h
        .secret_value(secret, "password")
        .await?
        .expect("the workload Secret keeps a password");
    assert!(
        h.redis.auth(user, &workload).await?,
        "the password in the workload Secret is refused by the database"
    );
    let state_name = format!("{rotation}-rotation");
    let mut known = vec![workload];
    for key in ["pending", "previous"] {
        if let Some(value) = h.secret_value(&state_name, key).await? {
            known.push(value);
        }
    }
    let known_hashes: HashSet<String> = known.iter().map(|p| password_hash(p)).collect();
    for hash in h.redis.password_hashes(user).await? {
        assert!(
            known_hashes.contains(&hash),
            "the database accepts a password that Kubernetes does not hold"
        );
    }
    Ok(known)
}

/// A workload that reads the Secret and authenticates with what it holds, like a pod that
/// restarts onto the new Secret, and one that keeps the password it started with until its
/// Deployment has rolled out, like a pod of the old ReplicaSet.
pub struct Workloads {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
    failures: Arc<AtomicU32>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workloads {
    pub fn start(h: &Harness, deployment: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU32::new(0));
        let failures = Arc::new(AtomicU32::new(0));
        let redis = h.redis.addr();
        let secrets = h.secrets();
        let deployments: Api<Deployment> = h.namespace.api();
        let reader = {
            let (stop, attempts, failures, redis) = (
                stop.clone(),
                attempts.clone(),
                failures.clone(),
                redis.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let secret = secrets.get(USER_SECRET).await.expect("read the Secret");
                    let password =
                        String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if !auth(&redis, &password).await {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let old_pod = {
            let (stop, attempts, failures) = (stop.clone(), attempts.clone(), failures.clone());
            let deployment = deployment.to_owned();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let d = deployments
                        .get(&deployment)
                        .await
                        .expect("read the Deployment");
                    let restarted = d
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref())
                        .and_then(|m| m.annotations.as_ref())
                        .is_some_and(|a| a.contains_key(&restart_annotation_key("orders-cache")));
                    if restarted && cluster::rollout_complete(&d) {
                        return;
                    }
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if !auth(&redis, USER_PASSWORD).await {
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

    pub async fn stop(self) -> (u32, u32) {
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

pub async fn auth(redis: &str, password: &str) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://{redis}")) else {
        return false;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("AUTH")
        .arg(USER)
        .arg(password)
        .query_async::<()>(&mut con)
        .await
        .is_ok()
}

/// The user's password was rotated: the workload Secret holds a new password, which the
/// database accepts, and the initial one is refused. Returns the new password.
pub async fn assert_rotated(h: &Harness) -> Result<String> {
    let new = h
        .secret_value(USER_SECRET, "password")
        .await?
        .context("no password in the workload Secret")?;
    assert_ne!(new, USER_PASSWORD, "the password was rotated");
    assert!(h.redis.auth(USER, &new).await?, "the new password works");
    assert!(
        !h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password is refused"
    );
    Ok(new)
}

/// The database accepts exactly one password for `user`, and it is `password`.
pub async fn assert_only_password(h: &Harness, user: &str, password: &str) -> Result<()> {
    assert_eq!(
        h.redis.password_hashes(user).await?,
        vec![password_hash(password)],
        "{user} holds exactly one password, the expected one"
    );
    Ok(())
}
