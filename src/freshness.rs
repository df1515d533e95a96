//! Whether the watch cache's copy of a resource is fresh enough to decide on: it is unless it
//! is older than the newest version this process wrote (or read since). Its own status writes
//! come back through the watch a little later, and a decision on an older copy would repeat a
//! step that is already done. This saves wasted work only: another actor may have written
//! since, which is why every status write carries the version it was decided on, and a write
//! refused for it makes the resource distrusted until it is read again.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::resource::PasswordRotation;
use crate::resource_index::bare_key;

#[derive(Default)]
pub struct Freshness(Mutex<HashMap<Key, Remembered>>);

type Key = ObjectRef<PasswordRotation>;

/// What this process knows of one resource's versions.
struct Remembered {
    /// The newest resourceVersion it knows the resource had.
    newest: u64,
    /// The resourceVersion it last wrote the resource at with a settled status, knowing no
    /// state Secret existed.
    settled: Option<u64>,
}

/// resourceVersions are opaque, but etcd's are increasing integers; anything else is never
/// taken as fresh, so that the resource is read instead.
fn version(resource_version: Option<&str>) -> Option<u64> {
    resource_version?.parse().ok()
}

impl Freshness {
    /// True unless `cached` is older than the newest version this process knows.
    pub fn is_fresh(&self, cached: &PasswordRotation) -> bool {
        let key = ObjectRef::from_obj(cached);
        self.is_fresh_at(&key, cached.resource_version().as_deref())
    }

    fn is_fresh_at(&self, key: &Key, cached: Option<&str>) -> bool {
        let known = self.0.lock().expect("not poisoned");
        match (known.get(key), version(cached)) {
            (None, _) => true,
            (Some(known), Some(cached)) => cached >= known.newest,
            (Some(_), None) => false,
        }
    }

    /// Records a version this process wrote or read.
    pub fn saw(&self, key: &Key, resource_version: Option<&str>) {
        self.record(key, resource_version, u64::max);
    }

    /// Records the version a read from the API server returned: the newest there is.
    pub fn read(&self, key: &Key, resource_version: Option<&str>) {
        self.record(key, resource_version, |_, read| read);
    }

    /// Records `resource_version`, the newest known becoming `newest(known, it)`.
    fn record(&self, key: &Key, resource_version: Option<&str>, newest: fn(u64, u64) -> u64) {
        // Never taken as fresh, so that the resource is read instead.
        let seen = version(resource_version).unwrap_or(u64::MAX);
        let mut known = self.0.lock().expect("not poisoned");
        match known.get_mut(key) {
            Some(known) => known.newest = newest(known.newest, seen),
            None => {
                let remembered = Remembered {
                    newest: seen,
                    settled: None,
                };
                known.insert(bare_key(key.namespace.as_deref(), &key.name), remembered);
            }
        }
    }

    /// Records that this process wrote the resource at `resource_version` with a settled
    /// status, and knew that no state Secret existed.
    pub fn settled_at(&self, key: &Key, resource_version: Option<&str>) {
        if let Some(known) = self.0.lock().expect("not poisoned").get_mut(key) {
            known.settled = version(resource_version);
        }
    }

    /// Whether `cached` is at exactly the version this process wrote settled: any write
    /// since, by anyone, changed its version.
    pub fn settled_by_this_process(&self, cached: &PasswordRotation) -> bool {
        let key = ObjectRef::from_obj(cached);
        let known = self.0.lock().expect("not poisoned");
        known
            .get(&key)
            .and_then(|k| k.settled)
            .is_some_and(|written| version(cached.resource_version().as_deref()) == Some(written))
    }

    /// Another actor wrote the resource since this process decided on it: the cached copy
    /// is not fresh until the resource is read again.
    pub fn distrust(&self, key: &Key) {
        self.saw(key, None);
    }

    pub fn forget(&self, key: &Key) {
        self.0.lock().expect("not poisoned").remove(key);
    }

    /// Forgets every resource but those `live` keeps.
    pub fn retain(&self, live: impl Fn(&Key) -> bool) {
        self.0
            .lock()
            .expect("not poisoned")
            .retain(|key, _| live(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_older_than_the_newest_known_version_is_stale() {
        let freshness = Freshness::default();
        let key = ObjectRef::new("r").within("ns");
        let fresh = |v: &str| freshness.is_fresh_at(&key, Some(v));
        assert!(fresh("9"), "never written: as the watch keeps it");
        freshness.saw(&key, Some("10"));
        freshness.saw(&key, Some("7"));
        assert!(!fresh("9"));
        assert!(fresh("10"));
        assert!(fresh("11"), "a later edit by someone else");
        freshness.saw(&key, Some("not-a-number"));
        assert!(!fresh("11"), "opaque versions are never trusted");
        freshness.retain(|kept| *kept == key);
        assert!(!fresh("11"), "kept while the watch shows it");
        freshness.retain(|_| false);
        assert!(
            fresh("11"),
            "gone: a resource by that name is as fresh as the watch keeps it"
        );
        freshness.forget(&key);
        assert!(fresh("11"));
        freshness.saw(&key, Some("12"));
        freshness.distrust(&key);
        assert!(
            !fresh("13"),
            "refused for another actor's write: read again"
        );
        freshness.read(&key, Some("13"));
        assert!(fresh("13"), "the read is the newest version");
        assert!(!fresh("12"));
    }
}
