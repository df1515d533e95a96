//! What a reconcile reads and writes in Kubernetes, behind one small trait: the apiserver in
//! production, and an in-memory fake in tests that run the engine without a control plane.

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::events::EventPublisher;
use crate::resource::{PasswordRotation, PasswordRotationStatus, WorkloadRef};
use crate::rollout::{Restart, Workloads};
use crate::rotation::RolloutProgress;
use crate::secrets::MANAGER;
use crate::targets::BoxFuture;
use crate::{Error, Result};

/// The Kubernetes side of a reconcile, for the resources of one namespace at a time.
pub trait Kubernetes: Send + Sync {
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>>>;

    /// The Secret as created.
    fn create_secret<'a>(
        &'a self,
        namespace: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, Result<Secret>>;

    /// A JSON merge patch; `None` when the Secret does not exist.
    fn patch_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Option<Secret>>>;

    /// Done when the Secret is gone, whether or not it was there; with `uid`, only that
    /// Secret: another created since under the same name stays.
    fn delete_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>>;

    /// The resource as the API server has it now; `None` once it is gone.
    fn current<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
    ) -> BoxFuture<'a, Result<Option<PasswordRotation>>>;

    /// Server-side apply of the resource's status, by this operator, only while the resource
    /// is at `version` (a conflict otherwise: another actor moved it); the resource's
    /// resourceVersion after it.
    fn write_status<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
        version: Option<&'a str>,
        status: &'a PasswordRotationStatus,
    ) -> BoxFuture<'a, Result<Option<String>>>;

    /// Sets the resource's finalizers, unless it changed since it was read (a conflict then);
    /// its resourceVersion after it.
    fn set_finalizers<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
        finalizers: Vec<String>,
    ) -> BoxFuture<'a, Result<Option<String>>>;

    /// Restarts each workload not yet carrying `restart` and reports which still roll.
    fn advance_rollout<'a>(
        &'a self,
        namespace: &'a str,
        workloads: &'a [WorkloadRef],
        restart: Restart<'a>,
    ) -> BoxFuture<'a, Result<RolloutProgress>>;

    /// Best effort and off the reconcile's path: a lost Event is logged, never an error.
    fn publish_event<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
        event: Event,
    ) -> BoxFuture<'a, ()>;
}

/// The Secrets of one namespace, as the engine uses them.
pub struct Secrets<'a> {
    pub kubernetes: &'a dyn Kubernetes,
    pub namespace: String,
}

impl Secrets<'_> {
    pub async fn get_opt(&self, name: &str) -> Result<Option<Secret>> {
        self.kubernetes.get_secret(&self.namespace, name).await
    }

    pub async fn create(&self, secret: &Secret) -> Result<Secret> {
        self.kubernetes.create_secret(&self.namespace, secret).await
    }

    pub async fn patch_merge(&self, name: &str, patch: &serde_json::Value) -> Result<Secret> {
        self.kubernetes
            .patch_secret(&self.namespace, name, patch)
            .await?
            .ok_or_else(|| Error::Secret {
                name: name.to_owned(),
                problem: "not found".into(),
            })
    }

    /// As [`patch_merge`](Self::patch_merge), and done when the Secret is gone.
    pub async fn patch_merge_if_present(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        self.kubernetes
            .patch_secret(&self.namespace, name, patch)
            .await
            .map(drop)
    }

    pub async fn delete(&self, name: &str, uid: Option<&str>) -> Result<()> {
        self.kubernetes
            .delete_secret(&self.namespace, name, uid)
            .await
    }
}

/// The apiserver.
pub struct ApiServer {
    client: Client,
    events: mpsc::Sender<(ObjectReference, Event)>,
}

/// Events waiting to be published; beyond this many a reconcile waits for room.
const EVENT_QUEUE: usize = 1024;

impl ApiServer {
    /// Publishes Events in the order they are raised, from one task, so that no reconcile
    /// waits for them.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let (events, mut queue) = mpsc::channel::<(ObjectReference, Event)>(EVENT_QUEUE);
        let mut publisher = EventPublisher::new(client.clone(), reporter);
        tokio::spawn(async move {
            while let Some((regarding, event)) = queue.recv().await {
                if let Err(error) = publisher.publish(&event, &regarding).await {
                    tracing::warn!(%error, reason = event.reason, "could not publish event");
                }
            }
        });
        ApiServer { client, events }
    }
}

fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

impl Kubernetes for ApiServer {
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Box::pin(async move { Ok(api.get_opt(name).await?) })
    }

    fn create_secret<'a>(
        &'a self,
        namespace: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, Result<Secret>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Box::pin(async move { Ok(api.create(&PostParams::default(), secret).await?) })
    }

    fn patch_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Option<Secret>>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Box::pin(async move {
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(secret) => Ok(Some(secret)),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        Box::pin(async move {
            match api.delete(name, &params).await {
                Ok(_) => Ok(()),
                // The UID precondition failed: that Secret is gone, and another has the name.
                Err(kube::Error::Api(status)) if uid.is_some() && status.code == 409 => Ok(()),
                Err(e) if not_found(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn current<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
    ) -> BoxFuture<'a, Result<Option<PasswordRotation>>> {
        let api: Api<PasswordRotation> = Api::namespaced(
            self.client.clone(),
            &rotation.namespace().unwrap_or_default(),
        );
        Box::pin(async move { Ok(api.get_opt(&rotation.name_any()).await?) })
    }

    fn write_status<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
        version: Option<&'a str>,
        status: &'a PasswordRotationStatus,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        let api: Api<PasswordRotation> = Api::namespaced(
            self.client.clone(),
            &rotation.namespace().unwrap_or_default(),
        );
        Box::pin(async move {
            let patch = json!({
                "apiVersion": PasswordRotation::api_version(&()),
                "kind": PasswordRotation::kind(&()),
                "metadata": {"resourceVersion": version},
                "status": status,
            });
            let written = api
                .patch_status(
                    &rotation.name_any(),
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
            Ok(written.resource_version())
        })
    }

    fn set_finalizers<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
        finalizers: Vec<String>,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        let api: Api<PasswordRotation> = Api::namespaced(
            self.client.clone(),
            &rotation.namespace().unwrap_or_default(),
        );
        Box::pin(async move {
            // The resourceVersion makes it a compare-and-swap: no finalizer another
            // controller set meanwhile is dropped.
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": rotation.resource_version(),
            }});
            let patched = api
                .patch(
                    &rotation.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            Ok(patched.resource_version())
        })
    }

    fn advance_rollout<'a>(
        &'a self,
        namespace: &'a str,
        workloads: &'a [WorkloadRef],
        restart: Restart<'a>,
    ) -> BoxFuture<'a, Result<RolloutProgress>> {
        Box::pin(async move {
            Workloads::new(self.client.clone(), namespace)
                .advance(workloads, restart)
                .await
        })
    }

    fn publish_event<'a>(
        &'a self,
        rotation: &'a PasswordRotation,
        event: Event,
    ) -> BoxFuture<'a, ()> {
        // Without its resourceVersion the reference stays the same across status writes, so
        // a repeated warning is counted in its series instead of being a new object.
        let regarding = ObjectReference {
            resource_version: None,
            ..rotation.object_ref(&())
        };
        Box::pin(async move {
            if self.events.send((regarding, event)).await.is_err() {
                tracing::warn!("the event queue is closed; event dropped");
            }
        })
    }
}
