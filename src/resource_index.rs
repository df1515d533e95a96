//! The resources each Secret, target and password list concerns, kept by the watch of
//! PasswordRotations: a Secret's event, a target's change and a reconcile's conflict check
//! look up the few resources concerned rather than scan them all (100,000 at scale, where a
//! scan per Secret event made getting ready alone billions of calls).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::resource::{PasswordRotation, Phase};
use crate::rotation_target::TargetKind;

/// One password list across resources: the system (what it calls itself, else its
/// address), the vendor, and what holds the passwords there.
pub type PasswordList = (String, &'static str, String);

type Key = ObjectRef<PasswordRotation>;

/// A resource as the index holds it: without its version and uid, one allocation that every
/// map it is in shares (at 100,000 resources, a copy per map was most of the index).
type Held = Arc<Key>;

fn held(rotation: &PasswordRotation) -> Held {
    Arc::new(bare_key(
        rotation.namespace().as_deref(),
        &rotation.name_any(),
    ))
}

/// The key of a resource without the version and uid an [`ObjectRef`] may carry, which no
/// lookup compares: what maps that hold one per resource keep.
pub(crate) fn bare_key(namespace: Option<&str>, name: &str) -> Key {
    let key = ObjectRef::new(name);
    match namespace {
        Some(namespace) => key.within(namespace),
        None => key,
    }
}

/// A target as a resource names it; `namespace` is `None` for a ClusterRotationTarget.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamedTarget {
    pub kind: TargetKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl NamedTarget {
    pub fn of(rotation: &PasswordRotation) -> NamedTarget {
        let reference = &rotation.spec.target.reference;
        NamedTarget {
            kind: reference.kind,
            namespace: match reference.kind {
                TargetKind::RotationTarget => rotation.namespace(),
                TargetKind::ClusterRotationTarget => None,
            },
            name: reference.name.clone(),
        }
    }
}

/// One watch of PasswordRotations (of a namespace, or of all): its cache and its index.
#[derive(Clone)]
pub struct Watched {
    pub store: Store<PasswordRotation>,
    pub index: ResourceIndex,
}

impl Watched {
    /// A cache whose index is fed by whoever feeds the cache ([`ResourceIndex::observe`]).
    pub fn new(store: Store<PasswordRotation>) -> Watched {
        Watched {
            store,
            index: ResourceIndex::default(),
        }
    }
}

/// The index of one watch, fed with its events once its cache applied them, and with the
/// events of the Secret watch of the same scope.
#[derive(Clone, Default)]
pub struct ResourceIndex {
    entries: Arc<Mutex<Entries>>,
    state_secrets: Arc<Mutex<StateSecrets>>,
}

/// The Secrets named like a state Secret, once the Secret watch has listed them: a restarted
/// operator then knows that a settled resource has none (the one read of each resource it
/// made otherwise, 100,000 reads at 100,000 resources) without reading it. A state Secret is
/// created long before a leftover of it matters (a crash at the end of a rotation), so the
/// list shows it; one seen late reconciles its resource again ([`state_secret_owner`]).
#[derive(Default)]
struct StateSecrets {
    listed: bool,
    names: HashSet<(String, String)>,
    /// What a relist has shown so far: when it ends, it is all there is.
    relisted: Option<HashSet<(String, String)>>,
}

/// Whether a Secret's name is a state Secret's ([`crate::secrets::state_secret_name`]).
fn named_like_state(name: &str) -> bool {
    name.ends_with(crate::secrets::STATE_SECRET_SUFFIX)
}

/// The PasswordRotation that owns `secret`, if it is named like a state Secret.
pub fn state_secret_owner(secret: &PartialObjectMeta<Secret>) -> Option<Key> {
    if !named_like_state(&secret.name_any()) {
        return None;
    }
    let owner = secret
        .owner_references()
        .iter()
        .find(|o| o.kind == "PasswordRotation")?;
    Some(ObjectRef::new(&owner.name).within(&secret.namespace()?))
}

#[derive(Default)]
struct Entries {
    indexed: HashMap<Held, Indexed>,
    by_workload_secret: Multimap<(Arc<str>, String)>,
    by_target: Multimap<Arc<NamedTarget>>,
    /// Resources on ClusterRotationTargets, by their namespace (whose labels the targets'
    /// policies may select by).
    on_cluster_targets: Multimap<Arc<str>>,
    blocked: HashSet<Held>,
    /// What a relist has shown so far: when it ends, the resources it did not show are gone.
    relisted: Option<HashSet<Held>>,
    lists: ListIndex,
    /// Namespaces and targets, each held once however many resources name it.
    namespaces: HashSet<Arc<str>>,
    targets: HashSet<Arc<NamedTarget>>,
}

struct Indexed {
    workload_secret: (Arc<str>, String),
    target: Arc<NamedTarget>,
}

/// The password lists of each resource. They depend on its target and namespace too, so
/// they are computed when looked up: again for the resources changed since, and all again
/// when the targets or namespaces changed (`basis`).
#[derive(Default)]
struct ListIndex {
    basis: Option<u64>,
    of: HashMap<Held, Vec<Arc<PasswordList>>>,
    by_list: Multimap<Arc<PasswordList>>,
    changed: HashSet<Held>,
}

struct Multimap<K>(HashMap<K, Keys>);

/// The resources at one key of a [`Multimap`]: most keys (a workload Secret, a password
/// list) have one, which needs no set of its own.
enum Keys {
    One(Held),
    Many(HashSet<Held>),
}

impl<K> Default for Multimap<K> {
    fn default() -> Self {
        Multimap(HashMap::new())
    }
}

impl<K: Hash + Eq> Multimap<K> {
    fn insert(&mut self, at: K, key: Held) {
        match self.0.remove(&at) {
            None => self.0.insert(at, Keys::One(key)),
            Some(Keys::One(one)) if one == key => self.0.insert(at, Keys::One(one)),
            Some(Keys::One(one)) => self.0.insert(at, Keys::Many(HashSet::from([one, key]))),
            Some(Keys::Many(mut many)) => {
                many.insert(key);
                self.0.insert(at, Keys::Many(many))
            }
        };
    }

    fn remove<Q>(&mut self, at: &Q, key: &Key)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(keys) = self.0.get_mut(at) else {
            return;
        };
        let empty = match keys {
            Keys::One(one) => **one == *key,
            Keys::Many(many) => {
                many.remove(key);
                many.is_empty()
            }
        };
        if empty {
            self.0.remove(at);
        }
    }

    fn get<Q>(&self, at: &Q) -> impl Iterator<Item = &Held>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (one, many) = match self.0.get(at) {
            Some(Keys::One(one)) => (Some(one), None),
            Some(Keys::Many(many)) => (None, Some(many)),
            None => (None, None),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn count<Q>(&self, at: &Q) -> usize
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.0.get(at) {
            None => 0,
            Some(Keys::One(_)) => 1,
            Some(Keys::Many(many)) => many.len(),
        }
    }
}

/// `value`, held once in `pool` however many resources name it.
pub(crate) fn interned<T: Hash + Eq + ?Sized>(
    pool: &mut HashSet<Arc<T>>,
    value: &T,
    hold: impl FnOnce(&T) -> Arc<T>,
) -> Arc<T> {
    if let Some(held) = pool.get(value) {
        return held.clone();
    }
    let held = hold(value);
    pool.insert(held.clone());
    held
}

/// Drops `value` from `pool` once nothing but the pool and the caller hold it.
fn release<T: Hash + Eq + ?Sized>(pool: &mut HashSet<Arc<T>>, value: &Arc<T>) {
    if Arc::strong_count(value) <= 2 {
        pool.remove(value);
    }
}

impl ResourceIndex {
    /// Takes in one event of the watch, after its cache applied it.
    pub fn observe(&self, event: &watcher::Event<PasswordRotation>) {
        let mut entries = self.entries.lock().expect("not poisoned");
        match event {
            watcher::Event::Apply(rotation) => {
                entries.put(rotation);
            }
            watcher::Event::Delete(rotation) => entries.remove(&ObjectRef::from_obj(rotation)),
            watcher::Event::Init => entries.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(rotation) => {
                let key = entries.put(rotation);
                entries.relisted.get_or_insert_default().insert(key);
            }
            watcher::Event::InitDone => {
                let Some(seen) = entries.relisted.take() else {
                    return;
                };
                let gone: Vec<Held> = entries
                    .indexed
                    .keys()
                    .filter(|key| !seen.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    entries.remove(&key);
                }
            }
        }
    }

    /// Takes in one event of the Secret watch of this index's scope.
    pub fn observe_secret(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let key = |secret: &PartialObjectMeta<Secret>| {
            let name = secret.name_any();
            named_like_state(&name).then(|| (secret.namespace().unwrap_or_default(), name))
        };
        let mut state = self.state_secrets.lock().expect("not poisoned");
        match event {
            watcher::Event::Apply(secret) => {
                if let Some(key) = key(secret) {
                    state.names.insert(key);
                }
            }
            watcher::Event::Delete(secret) => {
                if let Some(key) = key(secret) {
                    state.names.remove(&key);
                }
            }
            watcher::Event::Init => state.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(secret) => {
                if let Some(key) = key(secret) {
                    state.names.insert(key.clone());
                    state.relisted.get_or_insert_default().insert(key);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = state.relisted.take() {
                    state.names = relisted;
                }
                state.listed = true;
            }
        }
    }

    /// Whether the Secret watch has listed this scope's Secrets and `namespace`/`name` is
    /// not among them; `false` while it has not.
    pub fn listed_without_secret(&self, namespace: &str, name: &str) -> bool {
        let state = self.state_secrets.lock().expect("not poisoned");
        state.listed
            && !state
                .names
                .contains(&(namespace.to_owned(), name.to_owned()))
    }

    /// The resources whose workload Secret is `namespace`/`name`.
    pub fn reading_workload_secret(&self, namespace: &str, name: &str) -> Vec<Key> {
        let entries = self.entries.lock().expect("not poisoned");
        let at = (Arc::from(namespace), name.to_owned());
        entries
            .by_workload_secret
            .get(&at)
            .map(|k| (**k).clone())
            .collect()
    }

    /// The resources that name `target`.
    pub fn naming(&self, target: &NamedTarget) -> Vec<Key> {
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .by_target
            .get(target)
            .map(|k| (**k).clone())
            .collect()
    }

    /// The targets resources name, each once.
    pub fn named_targets(&self) -> Vec<Arc<NamedTarget>> {
        let entries = self.entries.lock().expect("not poisoned");
        entries.by_target.0.keys().cloned().collect()
    }

    /// How many resources name `target`.
    pub fn count_naming(&self, target: &NamedTarget) -> usize {
        self.entries
            .lock()
            .expect("not poisoned")
            .by_target
            .count(target)
    }

    /// The resources of `namespace` that name a ClusterRotationTarget.
    pub fn on_cluster_targets_in(&self, namespace: &str) -> Vec<Key> {
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .on_cluster_targets
            .get(namespace)
            .map(|k| (**k).clone())
            .collect()
    }

    /// The resources that are Blocked.
    pub fn blocked(&self) -> Vec<Key> {
        let entries = self.entries.lock().expect("not poisoned");
        entries.blocked.iter().map(|k| (**k).clone()).collect()
    }

    /// The resources of `store` that rotate one of `mine`, as `lists_of` says for each
    /// against targets and namespaces as they are now (`basis`, which changes with them).
    pub fn sharing(
        &self,
        mine: &[PasswordList],
        basis: u64,
        store: &Store<PasswordRotation>,
        lists_of: impl Fn(&PasswordRotation) -> Vec<PasswordList>,
    ) -> Vec<Key> {
        let mut entries = self.entries.lock().expect("not poisoned");
        let entries = &mut *entries;
        let lists = &mut entries.lists;
        if lists.basis != Some(basis) {
            *lists = ListIndex {
                basis: Some(basis),
                changed: entries.indexed.keys().cloned().collect(),
                ..ListIndex::default()
            };
        }
        for key in std::mem::take(&mut lists.changed) {
            lists.forget(&key);
            if let Some(rotation) = store.get(&key) {
                let of: Vec<Arc<PasswordList>> =
                    lists_of(&rotation).into_iter().map(Arc::new).collect();
                for list in &of {
                    lists.by_list.insert(list.clone(), key.clone());
                }
                lists.of.insert(key, of);
            }
        }
        let mut found: HashSet<&Held> = HashSet::new();
        for list in mine {
            found.extend(lists.by_list.get(list));
        }
        found.into_iter().map(|k| (**k).clone()).collect()
    }
}

impl Entries {
    fn put(&mut self, rotation: &PasswordRotation) -> Held {
        let key = held(rotation);
        self.remove(&key);
        let namespace = rotation.namespace().unwrap_or_default();
        let namespace = interned(&mut self.namespaces, namespace.as_str(), |n| Arc::from(n));
        let target = interned(&mut self.targets, &NamedTarget::of(rotation), |t| {
            Arc::new(t.clone())
        });
        let indexed = Indexed {
            workload_secret: (namespace.clone(), rotation.spec.secret.name.clone()),
            target,
        };
        self.by_workload_secret
            .insert(indexed.workload_secret.clone(), key.clone());
        self.by_target.insert(indexed.target.clone(), key.clone());
        if indexed.target.kind == TargetKind::ClusterRotationTarget {
            self.on_cluster_targets.insert(namespace, key.clone());
        }
        if rotation.status.as_ref().and_then(|s| s.phase) == Some(Phase::Blocked) {
            self.blocked.insert(key.clone());
        }
        self.lists.changed.insert(key.clone());
        self.indexed.insert(key.clone(), indexed);
        key
    }

    fn remove(&mut self, key: &Key) {
        let Some(indexed) = self.indexed.remove(key) else {
            return;
        };
        let namespace = &indexed.workload_secret.0;
        self.by_workload_secret
            .remove(&indexed.workload_secret, key);
        self.by_target.remove(&indexed.target, key);
        self.on_cluster_targets.remove(namespace, key);
        self.blocked.remove(key);
        self.lists.forget(key);
        self.lists.changed.remove(key);
        release(&mut self.targets, &indexed.target);
        release(&mut self.namespaces, namespace);
    }
}

impl ListIndex {
    fn forget(&mut self, key: &Key) {
        for list in self.of.remove(key).unwrap_or_default() {
            self.by_list.remove(&list, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use serde_json::json;

    use super::*;

    fn rotation(name: &str, secret: &str, target: (&str, &str), user: &str) -> PasswordRotation {
        serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2",
            "kind": "PasswordRotation",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {
                "target": {"ref": {"kind": target.0, "name": target.1}, "user": user},
                "secret": {"name": secret},
            },
        }))
        .expect("a resource")
    }

    fn names(mut keys: Vec<Key>) -> Vec<String> {
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        keys.into_iter().map(|key| key.name).collect()
    }

    fn feed(
        writer: &mut Writer<PasswordRotation>,
        index: &ResourceIndex,
        event: watcher::Event<PasswordRotation>,
    ) {
        writer.apply_watcher_event(&event);
        index.observe(&event);
    }

    #[test]
    fn an_edit_moves_a_resource_and_a_relist_drops_what_it_did_not_show() {
        let index = ResourceIndex::default();
        let mut writer = Writer::default();
        let a = rotation("a", "cache", ("RotationTarget", "rs"), "app");
        let b = rotation("b", "cache", ("ClusterRotationTarget", "shared"), "app");
        feed(&mut writer, &index, watcher::Event::Apply(a.clone()));
        feed(&mut writer, &index, watcher::Event::Apply(b.clone()));
        assert_eq!(
            names(index.reading_workload_secret("apps", "cache")),
            ["a", "b"]
        );
        let rs = NamedTarget::of(&a);
        assert_eq!(names(index.naming(&rs)), ["a"]);
        assert_eq!(names(index.on_cluster_targets_in("apps")), ["b"]);

        let moved = rotation("a", "other", ("RotationTarget", "rs2"), "app");
        feed(&mut writer, &index, watcher::Event::Apply(moved.clone()));
        assert_eq!(names(index.reading_workload_secret("apps", "cache")), ["b"]);
        assert_eq!(names(index.reading_workload_secret("apps", "other")), ["a"]);
        assert_eq!(index.count_naming(&rs), 0);
        assert_eq!(index.count_naming(&NamedTarget::of(&moved)), 1);

        feed(&mut writer, &index, watcher::Event::Init);
        feed(&mut writer, &index, watcher::Event::InitApply(moved));
        feed(&mut writer, &index, watcher::Event::InitDone);
        assert_eq!(
            names(index.reading_workload_secret("apps", "cache")),
            Vec::<String>::new()
        );
        assert_eq!(index.on_cluster_targets_in("apps"), Vec::new());
    }

    #[test]
    fn namespaces_and_targets_are_held_once_and_let_go_with_their_last_resource() {
        let index = ResourceIndex::default();
        let mut writer = Writer::default();
        let a = rotation("a", "one", ("ClusterRotationTarget", "shared"), "app");
        let b = rotation("b", "two", ("ClusterRotationTarget", "shared"), "app");
        feed(&mut writer, &index, watcher::Event::Apply(a.clone()));
        feed(&mut writer, &index, watcher::Event::Apply(b.clone()));
        {
            let entries = index.entries.lock().unwrap();
            assert_eq!((entries.namespaces.len(), entries.targets.len()), (1, 1));
            let [x, y] = [&a, &b].map(|r| entries.indexed[&ObjectRef::from_obj(r)].target.clone());
            assert!(Arc::ptr_eq(&x, &y), "one target, held once");
        }
        assert_eq!(names(index.on_cluster_targets_in("apps")), ["a", "b"]);
        feed(&mut writer, &index, watcher::Event::Delete(a));
        assert_eq!(names(index.on_cluster_targets_in("apps")), ["b"]);
        assert_eq!(index.count_naming(&NamedTarget::of(&b)), 1);
        feed(&mut writer, &index, watcher::Event::Delete(b));
        let entries = index.entries.lock().unwrap();
        assert_eq!((entries.namespaces.len(), entries.targets.len()), (0, 0));
        assert!(entries.by_target.0.is_empty() && entries.on_cluster_targets.0.is_empty());
    }

    fn secret(name: &str, owner: Option<&str>) -> PartialObjectMeta<Secret> {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": "apps",
                "ownerReferences": owner.map(|o| vec![json!({
                    "apiVersion": "rotator.dev/v1alpha2", "kind": "PasswordRotation",
                    "name": o, "uid": "u"})]),
            },
        }))
        .expect("a Secret")
    }

    #[test]
    fn a_state_secret_is_known_absent_only_once_the_secret_watch_listed_them() {
        let index = ResourceIndex::default();
        let absent = |name: &str| index.listed_without_secret("apps", name);
        index.observe_secret(&watcher::Event::Init);
        index.observe_secret(&watcher::Event::InitApply(secret("a-rotation", Some("a"))));
        assert!(!absent("b-rotation"), "not listed yet: unknown");
        index.observe_secret(&watcher::Event::InitDone);
        assert!(absent("b-rotation"));
        assert!(!absent("a-rotation"));
        index.observe_secret(&watcher::Event::Apply(secret("b-rotation", Some("b"))));
        assert!(!absent("b-rotation"));
        index.observe_secret(&watcher::Event::Delete(secret("a-rotation", Some("a"))));
        assert!(absent("a-rotation"));

        // A relist that no longer shows b: gone while the watch was away.
        index.observe_secret(&watcher::Event::Init);
        assert!(!absent("b-rotation"), "what was listed stands meanwhile");
        index.observe_secret(&watcher::Event::InitDone);
        assert!(absent("b-rotation"));

        let owner = state_secret_owner(&secret("c-rotation", Some("c"))).expect("its owner");
        assert_eq!(
            (owner.name.as_str(), owner.namespace.as_deref()),
            ("c", Some("apps"))
        );
        assert!(state_secret_owner(&secret("c-password", Some("c"))).is_none());
        assert!(state_secret_owner(&secret("c-rotation", None)).is_none());
    }

    #[test]
    fn password_lists_are_computed_again_for_what_changed_and_when_the_basis_does() {
        let index = ResourceIndex::default();
        let mut writer = Writer::default();
        let store = writer.as_reader();
        let lists_of = |system: &'static str| {
            move |r: &PasswordRotation| {
                vec![(
                    system.to_owned(),
                    "redis",
                    r.spec.target.user.clone().unwrap_or_default(),
                )]
            }
        };
        let list = |system: &str, user: &str| (system.to_owned(), "redis", user.to_owned());
        feed(
            &mut writer,
            &index,
            watcher::Event::Apply(rotation("a", "s", ("RotationTarget", "rs"), "app")),
        );
        feed(
            &mut writer,
            &index,
            watcher::Event::Apply(rotation("b", "s", ("RotationTarget", "rs"), "other")),
        );
        let sharing = |mine: &[PasswordList], basis, system| {
            names(index.sharing(mine, basis, &store, lists_of(system)))
        };
        assert_eq!(sharing(&[list("one", "app")], 1, "one"), ["a"]);

        feed(
            &mut writer,
            &index,
            watcher::Event::Apply(rotation("b", "s", ("RotationTarget", "rs"), "app")),
        );
        assert_eq!(sharing(&[list("one", "app")], 1, "one"), ["a", "b"]);

        // The same basis: nothing is computed again, so the lists stay on system "one".
        assert_eq!(
            sharing(&[list("two", "app")], 1, "two"),
            Vec::<String>::new()
        );
        assert_eq!(sharing(&[list("two", "app")], 2, "two"), ["a", "b"]);

        feed(
            &mut writer,
            &index,
            watcher::Event::Delete(rotation("a", "s", ("RotationTarget", "rs"), "app")),
        );
        assert_eq!(sharing(&[list("two", "app")], 2, "two"), ["b"]);
    }
}
