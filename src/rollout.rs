//! Restarting the listed workloads onto a new password, and telling when they run on it.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use crate::Result;
use crate::resource::{WorkloadKind, WorkloadRef};
use crate::rotation::RolloutProgress;

/// Where one workload stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadState {
    Missing,
    /// The pod template does not carry this rotation yet.
    NotRestarted,
    Rolling,
    /// Rolling, and its controller will not finish by itself: why.
    CannotComplete(String),
    /// The controller reports the rollout done; whether any older pod remains is still to
    /// be seen: among the pods of the selector, those the workload owns (`owner`, its uid),
    /// itself or through its ReplicaSets.
    Updated {
        selector: String,
        owner: String,
    },
}

const ON_DELETE: &str = "has updateStrategy OnDelete: its pods keep the old template until \
                         they are deleted";

/// The restart annotation, as `(key, value)`.
pub type Restart<'a> = (&'a str, &'a str);

impl WorkloadState {
    pub fn of_deployment(d: &Deployment, restart: Restart<'_>) -> Self {
        let Some(spec) = &d.spec else {
            return Self::Rolling;
        };
        if !carries(Some(&spec.template), restart) {
            return Self::NotRestarted;
        }
        let wanted = spec.replicas.unwrap_or(1);
        let done = d.status.as_ref().is_some_and(|status| {
            status.observed_generation >= d.meta().generation
                && status.updated_replicas.unwrap_or(0) == wanted
                && status.available_replicas.unwrap_or(0) == wanted
                && status.replicas.unwrap_or(0) == wanted
                && status.terminating_replicas.unwrap_or(0) == 0
        });
        let stuck = (spec.paused == Some(true)).then(|| {
            "is paused: it rolls out nothing until resumed (kubectl rollout resume)".into()
        });
        Self::updated_if(done, stuck, &spec.selector, d.meta())
    }

    pub fn of_stateful_set(s: &StatefulSet, restart: Restart<'_>) -> Self {
        let Some(spec) = &s.spec else {
            return Self::Rolling;
        };
        if !carries(Some(&spec.template), restart) {
            return Self::NotRestarted;
        }
        let wanted = spec.replicas.unwrap_or(1);
        let done = s.status.as_ref().is_some_and(|status| {
            status.observed_generation >= s.meta().generation
                && status.updated_replicas.unwrap_or(0) == wanted
                && status.ready_replicas.unwrap_or(0) == wanted
                && status.current_revision.is_some()
                && status.current_revision == status.update_revision
        });
        let strategy = spec.update_strategy.as_ref();
        let partition = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let stuck = if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
            Some(ON_DELETE.into())
        } else if partition > 0 {
            Some(format!(
                "has updateStrategy.rollingUpdate.partition {partition}: pods with a lower \
                 ordinal keep the old template until it is lowered to 0"
            ))
        } else {
            None
        };
        Self::updated_if(done, stuck, &spec.selector, s.meta())
    }

    pub fn of_daemon_set(d: &DaemonSet, restart: Restart<'_>) -> Self {
        let Some(spec) = &d.spec else {
            return Self::Rolling;
        };
        if !carries(Some(&spec.template), restart) {
            return Self::NotRestarted;
        }
        let done = d.status.as_ref().is_some_and(|status| {
            let wanted = status.desired_number_scheduled;
            status.observed_generation >= d.meta().generation
                && status.updated_number_scheduled.unwrap_or(0) == wanted
                && status.number_available.unwrap_or(0) == wanted
        });
        let on_delete = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            == Some("OnDelete");
        let stuck = on_delete.then(|| ON_DELETE.into());
        Self::updated_if(done, stuck, &spec.selector, d.meta())
    }

    fn updated_if(
        done: bool,
        stuck: Option<String>,
        selector: &LabelSelector,
        workload: &ObjectMeta,
    ) -> Self {
        match (done, stuck) {
            (true, _) => Self::Updated {
                selector: label_selector(selector),
                owner: workload.uid.clone().unwrap_or_default(),
            },
            (false, Some(why)) => Self::CannotComplete(why),
            (false, None) => Self::Rolling,
        }
    }
}

fn carries(template: Option<&PodTemplateSpec>, (key, value): Restart<'_>) -> bool {
    template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == value)
}

/// Pods copy their template's annotations: a pod without this restart's value is of an older
/// template, and may still hold the old password, terminating or not. Only the pods that one
/// of `owners` controls count: another workload's pods may carry the same labels.
pub fn older_pods<'p>(
    pods: impl IntoIterator<Item = &'p ObjectMeta>,
    owners: &[String],
    (key, value): Restart<'_>,
) -> usize {
    pods.into_iter()
        .filter(|pod| controlled_by(pod, owners))
        .filter(|pod| {
            pod.annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .is_none_or(|v| v != value)
        })
        .count()
}

/// Whether the controller owner of `object` is one of `owners` (uids).
fn controlled_by(object: &ObjectMeta, owners: &[String]) -> bool {
    object
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owners.contains(&owner.uid))
}

/// A label selector in the form the list API takes.
pub fn label_selector(selector: &LabelSelector) -> String {
    let labels = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"));
    let expressions = selector.match_expressions.iter().flatten().map(|e| {
        let values = e.values.clone().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        }
    });
    labels.chain(expressions).collect::<Vec<_>>().join(",")
}

fn restart_patch((key, value): Restart<'_>) -> serde_json::Value {
    json!({"spec": {"template": {"metadata": {"annotations": {key: value}}}}})
}

/// Restarts and observes the workloads of one namespace.
pub struct Workloads {
    client: Client,
    namespace: String,
}

impl Workloads {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
        }
    }

    pub async fn state(
        &self,
        workload: &WorkloadRef,
        restart: Restart<'_>,
    ) -> Result<WorkloadState> {
        let name = &workload.name;
        Ok(match workload.kind {
            WorkloadKind::Deployment => self
                .api::<Deployment>()
                .get_opt(name)
                .await?
                .map(|d| WorkloadState::of_deployment(&d, restart)),
            WorkloadKind::StatefulSet => self
                .api::<StatefulSet>()
                .get_opt(name)
                .await?
                .map(|s| WorkloadState::of_stateful_set(&s, restart)),
            WorkloadKind::DaemonSet => self
                .api::<DaemonSet>()
                .get_opt(name)
                .await?
                .map(|d| WorkloadState::of_daemon_set(&d, restart)),
        }
        .unwrap_or(WorkloadState::Missing))
    }

    /// Sets this resource's restart annotation; the same value twice changes nothing.
    pub async fn restart(&self, workload: &WorkloadRef, restart: Restart<'_>) -> Result<()> {
        let patch = restart_patch(restart);
        let params = PatchParams::default();
        let name = &workload.name;
        match workload.kind {
            WorkloadKind::Deployment => drop(
                self.api::<Deployment>()
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await?,
            ),
            WorkloadKind::StatefulSet => drop(
                self.api::<StatefulSet>()
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await?,
            ),
            WorkloadKind::DaemonSet => drop(
                self.api::<DaemonSet>()
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await?,
            ),
        }
        Ok(())
    }

    /// Restarts each workload not yet carrying `restart` and reports which are still rolling.
    pub async fn advance(
        &self,
        workloads: &[WorkloadRef],
        restart: Restart<'_>,
    ) -> Result<RolloutProgress> {
        let mut pending = Vec::new();
        let mut cannot_complete = false;
        for workload in workloads {
            let state = match self.state(workload, restart).await? {
                WorkloadState::NotRestarted => {
                    self.restart(workload, restart).await?;
                    WorkloadState::Rolling
                }
                other => other,
            };
            let name = format!("{:?}/{}", workload.kind, workload.name);
            match state {
                WorkloadState::Updated { selector, owner } => {
                    let by_labels = ListParams::default().labels(&selector);
                    let owners = match workload.kind {
                        // A Deployment's pods belong to its ReplicaSets, one per template.
                        WorkloadKind::Deployment => self
                            .api::<ReplicaSet>()
                            .list_metadata(&by_labels)
                            .await?
                            .items
                            .into_iter()
                            .filter(|set| {
                                controlled_by(&set.metadata, std::slice::from_ref(&owner))
                            })
                            .filter_map(|set| set.metadata.uid)
                            .collect(),
                        WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => vec![owner],
                    };
                    let pods = self.api::<Pod>().list_metadata(&by_labels).await?;
                    let older = older_pods(pods.iter().map(|p| &p.metadata), &owners, restart);
                    if older > 0 {
                        pending.push(format!("{name} ({older} pods of an older template remain)"));
                    }
                }
                WorkloadState::Missing => pending.push(format!("{name} (not found)")),
                WorkloadState::CannotComplete(why) => {
                    cannot_complete = true;
                    pending.push(format!("{name} {why}"));
                }
                WorkloadState::NotRestarted | WorkloadState::Rolling => pending.push(name),
            }
        }
        Ok(match (pending.is_empty(), cannot_complete) {
            (true, _) => RolloutProgress::Complete,
            (false, true) => RolloutProgress::CannotComplete(pending),
            (false, false) => RolloutProgress::Pending(pending),
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "rotation.rotator.dev/app";

    fn deployment(restart: &str, generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "app", "uid": "d1", "generation": generation},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"annotations": {KEY: restart, "rotation.rotator.dev/other": "x"}}},
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_is_updated_only_when_every_replica_is_new_and_none_terminates() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 2, done.clone()), (KEY, "r1")),
            WorkloadState::Updated {
                selector: "app=a".into(),
                owner: "d1".into(),
            }
        );
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r0", 2, done.clone()), (KEY, "r1")),
            WorkloadState::NotRestarted
        );
        assert_eq!(
            WorkloadState::of_deployment(
                &deployment("r1", 2, done.clone()),
                ("rotation.rotator.dev/b", "r1")
            ),
            WorkloadState::NotRestarted,
            "another resource's key is not this one's restart"
        );
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 3, done), (KEY, "r1")),
            WorkloadState::Rolling
        );
        let surging = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 2, surging), (KEY, "r1")),
            WorkloadState::Rolling
        );
        let terminating = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "terminatingReplicas": 1});
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 2, terminating), (KEY, "r1")),
            WorkloadState::Rolling
        );
    }

    #[test]
    fn workloads_that_cannot_finish_by_themselves_say_why() {
        let rolling = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 0});
        let mut paused = deployment("r1", 2, rolling);
        paused.spec.as_mut().unwrap().paused = Some(true);
        assert!(matches!(
            WorkloadState::of_deployment(&paused, (KEY, "r1")),
            WorkloadState::CannotComplete(why) if why.contains("paused")
        ));

        let stateful_set = |strategy: serde_json::Value| -> StatefulSet {
            serde_json::from_value(json!({
                "metadata": {"name": "app", "generation": 2},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "a"}},
                    "serviceName": "app",
                    "updateStrategy": strategy,
                    "template": {"metadata": {"annotations": {KEY: "r1"}}},
                },
                "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                           "currentRevision": "a", "updateRevision": "b"},
            }))
            .unwrap()
        };
        for (strategy, says) in [
            (json!({"type": "OnDelete"}), "OnDelete"),
            (
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
                "partition 2",
            ),
        ] {
            assert!(matches!(
                WorkloadState::of_stateful_set(&stateful_set(strategy), (KEY, "r1")),
                WorkloadState::CannotComplete(why) if why.contains(says)
            ));
        }
        assert_eq!(
            WorkloadState::of_stateful_set(
                &stateful_set(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})),
                (KEY, "r1")
            ),
            WorkloadState::Rolling
        );

        let on_delete: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "app", "generation": 2},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {"metadata": {"annotations": {KEY: "r1"}}},
            },
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 2,
                       "updatedNumberScheduled": 0, "numberAvailable": 2,
                       "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 2},
        }))
        .unwrap();
        assert!(matches!(
            WorkloadState::of_daemon_set(&on_delete, (KEY, "r1")),
            WorkloadState::CannotComplete(why) if why.contains("OnDelete")
        ));
    }

    #[test]
    fn pods_without_this_restart_are_older_terminating_or_not_among_the_owned() {
        let pod = |value: Option<&str>, terminating: bool, owner: &str| -> ObjectMeta {
            let mut meta = json!({"name": "p", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner,
                "controller": true,
            }]});
            if let Some(v) = value {
                meta["annotations"] = json!({KEY: v});
            }
            if terminating {
                meta["deletionTimestamp"] = json!("2026-06-01T12:00:00Z");
            }
            serde_json::from_value(meta).unwrap()
        };
        let pods = [
            pod(Some("r1"), false, "a"),
            pod(Some("r0"), true, "a"),
            pod(None, false, "b"),
            pod(Some("r1"), true, "b"),
            pod(None, false, "another workload's"),
            pod(Some("r0"), false, "another workload's"),
        ];
        let owners = ["a".to_owned(), "b".to_owned()];
        assert_eq!(older_pods(&pods, &owners, (KEY, "r1")), 2);
    }

    #[test]
    fn selectors_render_as_the_list_api_takes_them() {
        let selector: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "a", "tier": "cache"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }))
        .unwrap();
        assert_eq!(
            label_selector(&selector),
            "app=a,tier=cache,env in (prod,stage),!canary"
        );
    }
}
