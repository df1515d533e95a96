//! Proof that the local control plane (tests/cluster/up.sh) runs Deployments for
//! real: kube-controller-manager makes ReplicaSets and Pods, kube-scheduler binds
//! them to the kwok node, kwok marks them Ready, and a pod-template change rolls
//! out to a new ReplicaSet.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use rotator_test_support::cluster::{self, TestNamespace};

const TIMEOUT: Duration = Duration::from_secs(90);

fn deployment(name: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": name } },
            "strategy": { "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": { "rotator.test/revision": "1" } },
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.invalid/app:1"
                    }]
                }
            }
        }
    }))?)
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ReplicaSet that owns a pod (its controller owner reference), if any.
fn owner_replicaset(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")
        .map(|o| o.name.clone())
}

/// Waits until the Deployment's pods are exactly the live ones of one ReplicaSet:
/// no pod left terminating (kwok deletes them shortly after the controller does).
async fn settled_pods(pods: &kube::Api<Pod>, selector: &str, want: usize) -> Result<Vec<Pod>> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await?
            .items;
        if list.len() == want && list.iter().all(|p| p.metadata.deletion_timestamp.is_none()) {
            return Ok(list);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "pods did not settle to {want}: {:?}",
            list.iter()
                .map(|p| (
                    p.metadata.name.clone(),
                    p.metadata.deletion_timestamp.is_some()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn deployment_rolls_out_on_the_local_cluster() -> Result<()> {
    let client = cluster::client().await?;
    let ns = TestNamespace::new(&client, "rollout").await?;
    let deployments = ns.api::<Deployment>();
    let replicasets = ns.api::<ReplicaSet>();
    let pods = ns.api::<Pod>();
    let name = "app";
    let selector = format!("app={name}");

    // 1. Create: both replicas become Available, scheduled onto the kwok node and Ready.
    deployments
        .create(&PostParams::default(), &deployment(name)?)
        .await?;
    cluster::wait_rollout_complete(&deployments, name, TIMEOUT).await?;

    let d = deployments.get(name).await?;
    let status = d.status.clone().context("deployment has no status")?;
    assert_eq!(
        status.available_replicas,
        Some(2),
        "available replicas after create"
    );
    assert!(
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True"),
        "deployment not Available: {status:?}"
    );
    let first = settled_pods(&pods, &selector, 2).await?;
    for p in &first {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert_eq!(
            node,
            Some(cluster::NODE_NAME),
            "pod {:?} not on the kwok node",
            p.metadata.name
        );
        assert!(
            pod_ready(p),
            "pod {:?} not Ready: {:?}",
            p.metadata.name,
            p.status
        );
        assert_eq!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
    }
    let old_rs: Vec<_> = first.iter().filter_map(owner_replicaset).collect();
    assert_eq!(old_rs.len(), 2, "every pod is owned by a ReplicaSet");
    assert_eq!(old_rs[0], old_rs[1], "both pods come from one ReplicaSet");

    // 2. Change the pod template: a new ReplicaSet takes over all pods.
    let generation_before = d.metadata.generation.context("no generation")?;
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": { "rotator.test/revision": "2" } } } }
    });
    let patched = deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let generation_after = patched.metadata.generation.context("no generation")?;
    assert!(
        generation_after > generation_before,
        "the patch bumped the generation"
    );

    cluster::wait_rollout_complete(&deployments, name, TIMEOUT).await?;
    let d = deployments.get(name).await?;
    let status = d.status.clone().context("deployment has no status")?;
    assert!(
        status.observed_generation.unwrap_or(0) >= generation_after,
        "observedGeneration: {status:?}"
    );
    assert_eq!(status.updated_replicas, Some(2), "updated replicas");
    assert_eq!(status.available_replicas, Some(2), "available replicas");
    assert_eq!(status.replicas, Some(2), "no old replicas left");

    // The ReplicaSet with the new template owns every pod; the old one is scaled to 0.
    let sets = replicasets
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let new_rs = sets
        .iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a: &BTreeMap<String, String>| a.get("rotator.test/revision"))
                .is_some_and(|v| v == "2")
        })
        .context("no ReplicaSet with the new template")?;
    let new_rs_name = new_rs.metadata.name.clone().context("unnamed ReplicaSet")?;
    assert_ne!(new_rs_name, old_rs[0], "the rollout made a new ReplicaSet");
    let old = sets
        .iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(old_rs[0].as_str()))
        .context("old ReplicaSet is gone")?;
    assert_eq!(
        old.spec.as_ref().and_then(|s| s.replicas),
        Some(0),
        "old ReplicaSet scaled down"
    );

    let second = settled_pods(&pods, &selector, 2).await?;
    for p in &second {
        assert_eq!(
            owner_replicaset(p).as_deref(),
            Some(new_rs_name.as_str()),
            "pod {:?}",
            p.metadata.name
        );
        assert!(pod_ready(p), "new pod {:?} not Ready", p.metadata.name);
        let first_names: Vec<_> = first.iter().map(|f| f.metadata.name.clone()).collect();
        assert!(
            !first_names.contains(&p.metadata.name),
            "pod {:?} was not replaced",
            p.metadata.name
        );
    }

    ns.cleanup().await
}
