//! The targets as the watches see them: each resource's target is looked up here, and a
//! change of a target (or of a namespace's labels, which a ClusterRotationTarget's policy may
//! select by) reconciles the resources that name it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::resource::{PasswordRotation, SHARD_LABEL};
use crate::rotation_spec::{Found, RotationSpec, Unresolved};
use crate::rotation_target::{
    ClusterRotationTarget, RotationTarget, TargetKind, TargetStatus, TargetView,
};

/// The targets every reconcile resolves against.
#[derive(Clone, Default)]
pub struct TargetIndex {
    /// One store per watched namespace (or one for all).
    namespaced: Vec<Store<RotationTarget>>,
    /// With `--cluster-target-namespace`: the ClusterRotationTargets, the namespace their
    /// Secrets are in, and the namespaces' labels.
    cluster: Option<ClusterTargets>,
    synced: Vec<Arc<AtomicBool>>,
}

#[derive(Clone)]
struct ClusterTargets {
    targets: Store<ClusterRotationTarget>,
    secrets_namespace: String,
    namespaces: Store<PartialObjectMeta<Namespace>>,
}

const BUFFER: usize = 1024;

impl TargetIndex {
    /// Starts the watches of targets for `scopes` (namespaces, `None` for all) and, when
    /// `cluster_namespace` is given, of ClusterRotationTargets and namespaces.
    pub fn watch(
        client: &Client,
        scopes: &[Option<&str>],
        cluster_namespace: Option<String>,
    ) -> (
        TargetIndex,
        Vec<ReflectHandle<RotationTarget>>,
        Option<ClusterHandles>,
    ) {
        let mut index = TargetIndex::default();
        let mut handles = Vec::new();
        for scope in scopes {
            let api = match scope {
                Some(ns) => Api::<RotationTarget>::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (store, handle) = index.shared_watch(api);
            index.namespaced.push(store);
            handles.push(handle);
        }
        let cluster = cluster_namespace.map(|secrets_namespace| {
            let (targets, targets_handle) =
                index.shared_watch(Api::<ClusterRotationTarget>::all(client.clone()));
            let (namespaces, namespaces_handle) =
                index.shared_watch(Api::<PartialObjectMeta<Namespace>>::all(client.clone()));
            index.cluster = Some(ClusterTargets {
                targets,
                secrets_namespace,
                namespaces,
            });
            ClusterHandles {
                targets: targets_handle,
                namespaces: namespaces_handle,
            }
        });
        (index, handles, cluster)
    }

    /// A watch of `api` into a store that every controller may subscribe to, counted in
    /// [`Self::synced`].
    fn shared_watch<K>(&mut self, api: Api<K>) -> (Store<K>, ReflectHandle<K>)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
        K: 'static,
    {
        let (store, writer) = reflector::store_shared(BUFFER);
        let handle = writer.subscribe().expect("a shared store");
        self.synced.push(drive(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect_shared(writer),
        ));
        (store, handle)
    }

    /// The RotationTargets these stores hold, as if their watches had listed them: for
    /// reconciles driven without watches.
    pub fn of(namespaced: Vec<Store<RotationTarget>>) -> TargetIndex {
        TargetIndex {
            namespaced,
            ..TargetIndex::default()
        }
    }

    /// Whether every target watch has listed what there is: until then a target not found
    /// may only not be seen yet.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Relaxed))
    }

    /// `rotation`'s spec on the target it names, as the watches show it now.
    pub fn resolve(&self, rotation: &PasswordRotation) -> Result<RotationSpec, Unresolved> {
        let namespace = rotation.namespace().unwrap_or_default();
        let reference = &rotation.spec.target.reference;
        let namespaced;
        let cluster;
        let labels;
        let found = match reference.kind {
            TargetKind::RotationTarget => {
                let key = ObjectRef::new(&reference.name).within(&namespace);
                namespaced = self.namespaced.iter().find_map(|store| store.get(&key));
                namespaced.as_deref().map(|target| Found {
                    target: TargetView::of_namespaced(target),
                    secrets_namespace: &namespace,
                    namespace_labels: None,
                })
            }
            TargetKind::ClusterRotationTarget => {
                let served = self.cluster.as_ref();
                cluster = served.and_then(|c| c.targets.get(&ObjectRef::new(&reference.name)));
                labels = served.and_then(|c| {
                    c.namespaces
                        .get(&ObjectRef::new(&namespace))
                        .map(|ns| ns.labels().clone())
                });
                cluster
                    .as_deref()
                    .zip(served)
                    .map(|(target, served)| Found {
                        target: TargetView::of_cluster(target),
                        secrets_namespace: &served.secrets_namespace,
                        namespace_labels: labels.as_ref(),
                    })
            }
        };
        RotationSpec::resolve(&rotation.spec, &namespace, found)
    }

    /// The shard whose operator acts on `rotation`: its target's label
    /// `rotator.dev/shard`. A resource whose target is not served belongs to the unsharded
    /// operator, which reports it.
    pub fn shard_of(&self, rotation: &PasswordRotation) -> Option<String> {
        let reference = &rotation.spec.target.reference;
        let namespace = rotation.namespace().unwrap_or_default();
        let (labels, _) = self.find(reference.kind, &namespace, &reference.name)?;
        labels.get(SHARD_LABEL).cloned()
    }

    /// The status of `rotation`'s target, as the watch shows it.
    pub fn status_of(&self, rotation: &PasswordRotation) -> Option<TargetStatus> {
        let reference = &rotation.spec.target.reference;
        let namespace = rotation.namespace().unwrap_or_default();
        self.find(reference.kind, &namespace, &reference.name)?.1
    }

    /// Whether the target `kind` `namespace`/`name` exists and belongs to `shard`.
    pub fn in_shard(&self, kind: &str, namespace: &str, name: &str, shard: Option<&str>) -> bool {
        let kind = match kind {
            "RotationTarget" => TargetKind::RotationTarget,
            "ClusterRotationTarget" => TargetKind::ClusterRotationTarget,
            _ => return false,
        };
        self.find(kind, namespace, name)
            .is_some_and(|(labels, _)| labels.get(SHARD_LABEL).map(String::as_str) == shard)
    }

    /// The labels and status of a target (a RotationTarget of `namespace`).
    fn find(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
    ) -> Option<(BTreeMap<String, String>, Option<TargetStatus>)> {
        match kind {
            TargetKind::RotationTarget => {
                let key = ObjectRef::new(name).within(namespace);
                let target = self.namespaced.iter().find_map(|store| store.get(&key))?;
                Some((target.labels().clone(), target.status.clone()))
            }
            TargetKind::ClusterRotationTarget => {
                let cluster = self.cluster.as_ref()?;
                let target = cluster.targets.get(&ObjectRef::new(name))?;
                Some((target.labels().clone(), target.status.clone()))
            }
        }
    }
}

/// The subscriptions to ClusterRotationTargets and namespaces, for every controller.
pub struct ClusterHandles {
    pub targets: ReflectHandle<ClusterRotationTarget>,
    pub namespaces: ReflectHandle<PartialObjectMeta<Namespace>>,
}

/// Polls a shared reflector for as long as the process runs (its subscribers see events only
/// while it is polled); the flag says when its first list is in the store.
fn drive<K, S>(events: S) -> Arc<AtomicBool>
where
    K: Resource + Clone + DeserializeOwned + Send + Sync + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
{
    let synced = Arc::new(AtomicBool::new(false));
    let flag = synced.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(error) => warn!(%error, "a watch of targets failed; retrying"),
            }
        }
    });
    synced
}

/// The resources of `store` that name the target `kind`/`name` (a RotationTarget in
/// `namespace`).
pub fn naming(
    store: &Store<PasswordRotation>,
    kind: TargetKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<PasswordRotation>> {
    store
        .state()
        .into_iter()
        .filter(|r| {
            let reference = &r.spec.target.reference;
            reference.kind == kind
                && reference.name == name
                && (kind == TargetKind::ClusterRotationTarget
                    || r.namespace().as_deref() == namespace)
        })
        .map(|r| ObjectRef::from_obj(&*r))
        .collect()
}

/// The labels a namespace had when its resources were last resolved are not kept: a change of
/// any namespace's labels reconciles the resources there that use a ClusterRotationTarget.
pub fn in_namespace_on_cluster_targets(
    store: &Store<PasswordRotation>,
    namespace: &str,
) -> Vec<ObjectRef<PasswordRotation>> {
    store
        .state()
        .into_iter()
        .filter(|r| {
            r.spec.target.reference.kind == TargetKind::ClusterRotationTarget
                && r.namespace().as_deref() == Some(namespace)
        })
        .map(|r| ObjectRef::from_obj(&*r))
        .collect()
}
