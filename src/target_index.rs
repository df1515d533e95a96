//! The targets as the watches see them: each resource's target is looked up here, and a
//! change of a target (or of a namespace's labels, which a ClusterRotationTarget's policy may
//! select by) reconciles the resources that name it.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::resource::{PasswordRotation, SHARD_LABEL};
use crate::resource_index::NamedTarget;
use crate::rotation_spec::{Found, RotationSpec, Unresolved};
use crate::rotation_target::{
    ClusterRotationTarget, RotationTarget, TargetKind, TargetStatus, TargetView,
};
use crate::targets::Connection;

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
        let held = self.target_of(rotation);
        let labels = match &held {
            Some(Held::Cluster(_, cluster)) => cluster
                .namespaces
                .get(&ObjectRef::new(&namespace))
                .map(|ns| ns.labels().clone()),
            _ => None,
        };
        let found = held.as_ref().map(|held| match held {
            Held::Namespaced(target) => Found {
                target: TargetView::of_namespaced(target),
                secrets_namespace: &namespace,
                namespace_labels: None,
            },
            Held::Cluster(target, cluster) => Found {
                target: TargetView::of_cluster(target),
                secrets_namespace: &cluster.secrets_namespace,
                namespace_labels: labels.as_ref(),
            },
        });
        RotationSpec::resolve(&rotation.spec, &namespace, found)
    }

    /// The shard whose operator acts on `rotation`: its target's label
    /// `rotator.dev/shard`. A resource whose target is not served belongs to the unsharded
    /// operator, which reports it.
    pub fn shard_of(&self, rotation: &PasswordRotation) -> Option<String> {
        self.target_of(rotation)?.labels().get(SHARD_LABEL).cloned()
    }

    /// Whether `rotation` belongs to `shard` (see [`Self::shard_of`]), without a copy of
    /// the label.
    pub fn serves(&self, rotation: &PasswordRotation, shard: Option<&str>) -> bool {
        let target = self.target_of(rotation);
        let label = target.as_ref().and_then(|t| t.labels().get(SHARD_LABEL));
        label.map(String::as_str) == shard
    }

    /// Whether `target` exists and belongs to `shard`.
    pub fn named_in_shard(&self, target: &NamedTarget, shard: Option<&str>) -> bool {
        let namespace = target.namespace.as_deref().unwrap_or_default();
        self.target_in_shard(target.kind, namespace, &target.name, shard)
    }

    /// The status of `rotation`'s target, as the watch shows it.
    pub fn status_of(&self, rotation: &PasswordRotation) -> Option<TargetStatus> {
        self.target_of(rotation)?.status().cloned()
    }

    /// What `rotation`'s target's system says it is, once its status shows it.
    pub fn identity_of(&self, rotation: &PasswordRotation) -> Option<String> {
        self.target_of(rotation)?.status()?.identity.clone()
    }

    /// Whether the target `kind` `namespace`/`name` exists and belongs to `shard`.
    pub fn in_shard(&self, kind: &str, namespace: &str, name: &str, shard: Option<&str>) -> bool {
        let kind = match kind {
            "RotationTarget" => TargetKind::RotationTarget,
            "ClusterRotationTarget" => TargetKind::ClusterRotationTarget,
            _ => return false,
        };
        self.target_in_shard(kind, namespace, name, shard)
    }

    fn target_in_shard(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
        shard: Option<&str>,
    ) -> bool {
        self.target(kind, namespace, name)
            .is_some_and(|held| held.labels().get(SHARD_LABEL).map(String::as_str) == shard)
    }

    /// The target `rotation` names, as its store holds it.
    fn target_of(&self, rotation: &PasswordRotation) -> Option<Held<'_>> {
        let reference = &rotation.spec.target.reference;
        let namespace = rotation.namespace().unwrap_or_default();
        self.target(reference.kind, &namespace, &reference.name)
    }

    /// The targets that read the Secret `namespace`/`name` (admin credentials, a CA).
    pub fn reading_secret(&self, namespace: &str, name: &str) -> Vec<NamedTarget> {
        let reads = |connection: &Connection| {
            connection.for_checks().is_ok_and(|target| {
                target
                    .members()
                    .iter()
                    .any(|member| member.secrets().iter().any(|used| used.name == name))
            })
        };
        let mut found: Vec<NamedTarget> = self
            .namespaced
            .iter()
            .flat_map(Store::state)
            .filter(|t| t.namespace().as_deref() == Some(namespace) && reads(&t.spec.connection))
            .map(|t| NamedTarget {
                kind: TargetKind::RotationTarget,
                namespace: t.namespace(),
                name: t.name_any(),
            })
            .collect();
        if let Some(cluster) = self
            .cluster
            .as_ref()
            .filter(|c| c.secrets_namespace == namespace)
        {
            found.extend(
                cluster
                    .targets
                    .state()
                    .iter()
                    .filter(|t| reads(&t.spec.connection))
                    .map(|t| NamedTarget {
                        kind: TargetKind::ClusterRotationTarget,
                        namespace: None,
                        name: t.name_any(),
                    }),
            );
        }
        found
    }

    /// What `target` uses, as its spec says: the namespace of its Secrets, their names, and
    /// the systems it calls (vendor and address). `None` when it is not served.
    pub fn uses(&self, target: &NamedTarget) -> Option<TargetUses> {
        let namespace = target.namespace.as_deref().unwrap_or_default();
        let held = self.target(target.kind, namespace, &target.name)?;
        let (connection, secrets_namespace) = match &held {
            Held::Namespaced(t) => (&t.spec.connection, namespace.to_owned()),
            Held::Cluster(t, cluster) => (&t.spec.connection, cluster.secrets_namespace.clone()),
        };
        let checked = connection.for_checks().ok()?;
        let members = checked.members();
        Some(TargetUses {
            secrets_namespace,
            secrets: members
                .iter()
                .flat_map(|m| m.secrets().into_iter().map(|used| used.name))
                .collect(),
            systems: members.iter().map(|m| (m.vendor(), m.address())).collect(),
        })
    }

    /// Changes whenever what a resource's password lists are computed from changes: a
    /// target's spec or the identity its status records, a namespace's labels.
    pub fn basis(&self) -> u64 {
        fn hash(item: impl Hash) -> u64 {
            let mut hasher = DefaultHasher::new();
            item.hash(&mut hasher);
            hasher.finish()
        }
        let of_target = |meta: &ObjectMeta, identity: Option<&String>| {
            hash((
                &meta.namespace,
                &meta.name,
                &meta.uid,
                meta.generation,
                identity,
            ))
        };
        // Summed, so that the order the stores list them in does not matter.
        let mut basis = self
            .namespaced
            .iter()
            .flat_map(Store::state)
            .map(|t| {
                of_target(
                    &t.metadata,
                    t.status.as_ref().and_then(|s| s.identity.as_ref()),
                )
            })
            .fold(0u64, u64::wrapping_add);
        if let Some(cluster) = &self.cluster {
            for t in cluster.targets.state() {
                let identity = t.status.as_ref().and_then(|s| s.identity.as_ref());
                basis = basis.wrapping_add(of_target(&t.metadata, identity));
            }
            for ns in cluster.namespaces.state() {
                basis = basis.wrapping_add(hash((&ns.metadata.name, ns.labels())));
            }
        }
        basis
    }

    /// A target (a RotationTarget of `namespace`), as its store holds it.
    fn target(&self, kind: TargetKind, namespace: &str, name: &str) -> Option<Held<'_>> {
        match kind {
            TargetKind::RotationTarget => {
                let key = ObjectRef::new(name).within(namespace);
                let target = self.namespaced.iter().find_map(|store| store.get(&key))?;
                Some(Held::Namespaced(target))
            }
            TargetKind::ClusterRotationTarget => {
                let cluster = self.cluster.as_ref()?;
                let target = cluster.targets.get(&ObjectRef::new(name))?;
                Some(Held::Cluster(target, cluster))
            }
        }
    }
}

/// See [`TargetIndex::uses`].
pub struct TargetUses {
    pub secrets_namespace: String,
    pub secrets: Vec<String>,
    pub systems: Vec<(&'static str, String)>,
}

/// A target as its store holds it; a ClusterRotationTarget with what serves it.
enum Held<'a> {
    Namespaced(Arc<RotationTarget>),
    Cluster(Arc<ClusterRotationTarget>, &'a ClusterTargets),
}

impl Held<'_> {
    fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Held::Namespaced(target) => target.labels(),
            Held::Cluster(target, _) => target.labels(),
        }
    }

    fn status(&self) -> Option<&TargetStatus> {
        match self {
            Held::Namespaced(target) => target.status.as_ref(),
            Held::Cluster(target, _) => target.status.as_ref(),
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
