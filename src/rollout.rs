//! Restarting the listed workloads onto a new password, and telling when they run on it.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use crate::Result;
use crate::resource::{ROTATION_ANNOTATION, WorkloadKind, WorkloadRef};
use crate::rotation::RolloutProgress;

/// Where one workload stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadState {
    Missing,
    /// The pod template does not carry this rotation yet.
    NotRestarted,
    Rolling,
    Complete,
}

impl WorkloadState {
    pub fn of_deployment(d: &Deployment, rotation_id: &str) -> Self {
        if template_rotation(d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()))
            != Some(rotation_id)
        {
            return Self::NotRestarted;
        }
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(status) = &d.status else {
            return Self::Rolling;
        };
        let done = status.observed_generation >= d.meta().generation
            && status.updated_replicas.unwrap_or(0) == wanted
            && status.available_replicas.unwrap_or(0) == wanted
            && status.replicas.unwrap_or(0) == wanted;
        if done { Self::Complete } else { Self::Rolling }
    }

    pub fn of_stateful_set(s: &StatefulSet, rotation_id: &str) -> Self {
        if template_rotation(s.spec.as_ref().and_then(|s| s.template.metadata.as_ref()))
            != Some(rotation_id)
        {
            return Self::NotRestarted;
        }
        let wanted = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(status) = &s.status else {
            return Self::Rolling;
        };
        let done = status.observed_generation >= s.meta().generation
            && status.updated_replicas.unwrap_or(0) == wanted
            && status.ready_replicas.unwrap_or(0) == wanted
            && status.current_revision.is_some()
            && status.current_revision == status.update_revision;
        if done { Self::Complete } else { Self::Rolling }
    }

    pub fn of_daemon_set(d: &DaemonSet, rotation_id: &str) -> Self {
        if template_rotation(d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()))
            != Some(rotation_id)
        {
            return Self::NotRestarted;
        }
        let Some(status) = &d.status else {
            return Self::Rolling;
        };
        let wanted = status.desired_number_scheduled;
        let done = status.observed_generation >= d.meta().generation
            && status.updated_number_scheduled.unwrap_or(0) == wanted
            && status.number_available.unwrap_or(0) == wanted;
        if done { Self::Complete } else { Self::Rolling }
    }
}

fn template_rotation(meta: Option<&kube::api::ObjectMeta>) -> Option<&str> {
    meta?
        .annotations
        .as_ref()?
        .get(ROTATION_ANNOTATION)
        .map(String::as_str)
}

fn restart_patch(rotation_id: &str) -> serde_json::Value {
    json!({"spec": {"template": {"metadata": {"annotations": {ROTATION_ANNOTATION: rotation_id}}}}})
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

    pub async fn state(&self, workload: &WorkloadRef, rotation_id: &str) -> Result<WorkloadState> {
        let name = &workload.name;
        Ok(match workload.kind {
            WorkloadKind::Deployment => self
                .api::<Deployment>()
                .get_opt(name)
                .await?
                .map(|d| WorkloadState::of_deployment(&d, rotation_id)),
            WorkloadKind::StatefulSet => self
                .api::<StatefulSet>()
                .get_opt(name)
                .await?
                .map(|s| WorkloadState::of_stateful_set(&s, rotation_id)),
            WorkloadKind::DaemonSet => self
                .api::<DaemonSet>()
                .get_opt(name)
                .await?
                .map(|d| WorkloadState::of_daemon_set(&d, rotation_id)),
        }
        .unwrap_or(WorkloadState::Missing))
    }

    /// Sets the pod-template annotation; the same value twice changes nothing.
    pub async fn restart(&self, workload: &WorkloadRef, rotation_id: &str) -> Result<()> {
        let patch = restart_patch(rotation_id);
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

    /// Restarts each workload not yet on `rotation_id` and reports which are still rolling.
    pub async fn advance(
        &self,
        workloads: &[WorkloadRef],
        rotation_id: &str,
    ) -> Result<RolloutProgress> {
        let mut pending = Vec::new();
        for workload in workloads {
            let state = match self.state(workload, rotation_id).await? {
                WorkloadState::NotRestarted => {
                    self.restart(workload, rotation_id).await?;
                    WorkloadState::Rolling
                }
                other => other,
            };
            match state {
                WorkloadState::Complete => {}
                WorkloadState::Missing => {
                    pending.push(format!("{:?}/{} (not found)", workload.kind, workload.name))
                }
                _ => pending.push(format!("{:?}/{}", workload.kind, workload.name)),
            }
        }
        Ok(if pending.is_empty() {
            RolloutProgress::Complete
        } else {
            RolloutProgress::Pending(pending)
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

    fn deployment(
        template_rotation: &str,
        generation: i64,
        status: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "app", "generation": generation},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"annotations": {ROTATION_ANNOTATION: template_rotation}}},
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_is_complete_only_when_every_replica_is_new_and_available() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 2, done.clone()), "r1"),
            WorkloadState::Complete
        );
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r0", 2, done.clone()), "r1"),
            WorkloadState::NotRestarted
        );
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 3, done), "r1"),
            WorkloadState::Rolling
        );
        let surging = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            WorkloadState::of_deployment(&deployment("r1", 2, surging), "r1"),
            WorkloadState::Rolling
        );
    }
}
