//! The Secrets a target is reached with (admin credentials, CA), as last read, reused until
//! the Secret watch shows another version of them. Every reconcile that may call a target
//! needs them, and many resources share one admin: reading them each time was a third of a
//! rotation's reads. The watch sees only metadata; any event of a kept Secret at a version
//! other than the one read (newer, or a deletion) drops it, so the next use reads it again.
//! A change is seen as late as the watch delivers it, as for everything the controller
//! caches; one the watch missed (a deletion while it reconnected, which its relist cannot
//! show) is seen once the Secret is read again, within two minutes (see
//! [`TargetSecretCache::retain`]). Workload and state Secrets are always read: only the
//! target's come from here.
//!
//! The values kept are the ones the target clients hold anyway. No `Debug`: a Secret's data
//! is never formatted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

type Key = (String, String);

#[derive(Default)]
pub struct TargetSecretCache {
    /// Each target Secret as last read, without its managed fields, and when.
    read: Mutex<HashMap<Key, (Secret, Instant)>>,
}

/// resourceVersions are opaque, but etcd's are increasing integers: a watch event older than
/// the read (the watch is behind) changes nothing. Anything else counts as another version.
fn older(event: &str, read: &str) -> bool {
    match (event.parse::<u64>(), read.parse::<u64>()) {
        (Ok(event), Ok(read)) => event < read,
        _ => false,
    }
}

impl TargetSecretCache {
    /// What the Secret watch showed: a Secret changed, created or deleted, at `version`.
    pub fn watched(&self, namespace: &str, name: &str, version: Option<&str>) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut read = self.read.lock().expect("not poisoned");
        let Some((kept, _)) = read.get(&key) else {
            return;
        };
        let same_or_older = match (version, kept.metadata.resource_version.as_deref()) {
            (Some(event), Some(kept)) => event == kept || older(event, kept),
            _ => false,
        };
        if !same_or_older {
            read.remove(&key);
        }
    }

    /// The Secret as last read, unless the watch showed another version since.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Secret> {
        let key = (namespace.to_owned(), name.to_owned());
        let read = self.read.lock().expect("not poisoned");
        read.get(&key).map(|(secret, _)| secret.clone())
    }

    /// Drops every Secret but those `used` keeps, by namespace and name, and read less than
    /// `max_age` ago.
    pub fn retain(&self, used: impl Fn(&str, &str) -> bool, max_age: Duration) {
        self.read
            .lock()
            .expect("not poisoned")
            .retain(|(namespace, name), (_, at)| at.elapsed() < max_age && used(namespace, name));
    }

    /// Keeps a Secret as just read.
    pub fn keep(&self, namespace: &str, mut secret: Secret) {
        secret.metadata.managed_fields = None;
        let key = (namespace.to_owned(), secret.name_any());
        self.read
            .lock()
            .expect("not poisoned")
            .insert(key, (secret, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn secret(name: &str, version: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    #[test]
    fn a_secret_is_kept_until_the_watch_shows_another_version() {
        let cache = TargetSecretCache::default();
        assert!(cache.get("ns", "rs-admin").is_none());
        cache.keep("ns", secret("rs-admin", "15"));
        assert!(cache.get("ns", "rs-admin").is_some());
        assert!(cache.get("other", "rs-admin").is_none());
        cache.watched("ns", "rs-admin", Some("9"));
        cache.watched("ns", "rs-admin", Some("15"));
        cache.watched("ns", "rs-other", Some("20"));
        assert!(
            cache.get("ns", "rs-admin").is_some(),
            "the watch was behind the read, then caught up"
        );
        cache.watched("ns", "rs-admin", Some("16"));
        assert!(cache.get("ns", "rs-admin").is_none(), "changed since read");
        cache.keep("ns", secret("rs-admin", "16"));
        cache.watched("ns", "rs-admin", Some("opaque"));
        assert!(
            cache.get("ns", "rs-admin").is_none(),
            "a version that is no number is another one"
        );
    }

    #[test]
    fn a_secret_is_kept_while_it_is_used_and_read_recently() {
        let cache = TargetSecretCache::default();
        cache.keep("ns", secret("rs-admin", "15"));
        cache.keep("ns", secret("rs-ca", "16"));
        let minute = Duration::from_secs(60);
        cache.retain(|_, name| name == "rs-admin", minute);
        assert!(cache.get("ns", "rs-admin").is_some());
        assert!(cache.get("ns", "rs-ca").is_none(), "no resource uses it");
        cache.retain(|_, _| true, Duration::ZERO);
        assert!(
            cache.get("ns", "rs-admin").is_none(),
            "read again now and then: the watch may have missed a deletion"
        );
    }
}
