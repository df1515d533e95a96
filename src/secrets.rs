//! The two Secrets a rotation touches: the state Secret it owns (`<name>-rotation`), which
//! holds the new and the old password while a rotation is in flight, and the workload Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::kubernetes::Secrets;
use crate::plan::Plan;
use crate::resource::{PasswordRotation, SHARD_LABEL};
use crate::rotation::SecretHolds;
use crate::shard;
use crate::{Error, Result};

pub const MANAGER: &str = "password-rotator";
/// By this annotation a Secret allows PasswordRotations of its namespace to use it: a
/// comma-separated list of their names, or `*` for all of them. Without it a tenant who may
/// create PasswordRotations, but not read Secrets, could have the operator send any Secret to
/// a host of their choosing or overwrite it.
pub const ALLOWED_ROTATIONS_ANNOTATION: &str = "rotator.dev/allowed-rotations";
/// On the workload Secret: the rotation a deletion's cleanup rolled back. Written with the
/// Secret's resourceVersion before the rollback, so that a publish sent from a stale copy of
/// the resource (which carries the version it read) is refused, or sees it.
const ROLLED_BACK_ANNOTATION: &str = "rotator.dev/rolled-back";
const PENDING: &str = "pending";
const PREVIOUS: &str = "previous";
const ROTATION_ID: &str = "rotationId";
const PLAN: &str = "plan";
const PREVIOUS_ACCOUNT: &str = "previousAccount";
const PENDING_ACCOUNT: &str = "pendingAccount";
const RETIREMENT: &str = "retirement";
const WORKLOAD_VERSION: &str = "workloadSecretVersion";
const FOLLOWS: &str = "follows";

/// The passwords of a rotation in flight, and its plan. Debug shows no password.
#[derive(Debug)]
pub struct RotationState {
    pub rotation_id: String,
    pub pending: SecretString,
    pub previous: Option<SecretString>,
    /// Absent in state Secrets written before plans were pinned.
    pub plan: Option<Plan>,
    /// The accounts `previous` and `pending` belong to, where the target has accounts;
    /// they differ for alternating accounts.
    pub previous_account: Option<String>,
    pub pending_account: Option<String>,
    /// For accounts that hold one password: what the retired account's password becomes.
    pub retirement: Option<SecretString>,
    /// The shard of the operator that staged the rotation (its label); `None`: unsharded.
    pub shard: Option<String>,
    /// The workload Secret's resourceVersion when the rotation was staged: while the Secret
    /// still has it, nothing was published into it. Absent in state Secrets of earlier
    /// versions, which recorded `Publishing` in status instead.
    pub workload_version: Option<String>,
    /// The rotation the resource's status named when this one was staged ("" for none): a
    /// status that names another since was written by a rotation that overtook this one.
    /// Absent in state Secrets of earlier versions.
    pub follows: Option<String>,
    /// The UID of the resource that owns the state Secret; `None` once a deletion orphaned it.
    pub owner: Option<String>,
    /// The state Secret's own UID: deleting it deletes no other of the same name, created
    /// since by another operator process for the next rotation.
    pub uid: Option<String>,
}

impl RotationState {
    /// What `password` (from the workload Secret) is to this rotation.
    pub fn holds(&self, password: Option<&SecretString>) -> SecretHolds {
        let Some(password) = password else {
            return SecretHolds::Nothing;
        };
        let same = |other: &SecretString| other.expose_secret() == password.expose_secret();
        if same(&self.pending) {
            SecretHolds::Pending
        } else if self.previous.as_ref().is_some_and(same) {
            SecretHolds::Previous
        } else {
            SecretHolds::Other
        }
    }

    /// Whether `rotation` staged this rotation: a state Secret a deletion kept, found by a new
    /// resource of the same name, is not its own.
    pub fn owned_by(&self, rotation: &PasswordRotation) -> bool {
        self.owner.is_some() && self.owner == rotation.uid()
    }

    /// Whether `workload` (the workload Secret) carries a deletion's mark that this rotation
    /// was rolled back ([`fence_rollback`]).
    pub fn rolled_back_in(&self, workload: Option<&Secret>) -> bool {
        workload
            .and_then(|w| w.metadata.annotations.as_ref())
            .and_then(|a| a.get(ROLLED_BACK_ANNOTATION))
            == Some(&self.rotation_id)
    }
}

pub fn state_secret_name(rotation: &PasswordRotation) -> String {
    format!("{}{STATE_SECRET_SUFFIX}", rotation.name_any())
}

/// How the name of every state Secret ends.
pub const STATE_SECRET_SUFFIX: &str = "-rotation";

/// Whether `secret` allows the PasswordRotation named `rotation` to use it.
pub fn allows(secret: &Secret, rotation: &str) -> bool {
    secret
        .annotations()
        .get(ALLOWED_ROTATIONS_ANNOTATION)
        .is_some_and(|names| {
            names
                .split(',')
                .map(str::trim)
                .any(|name| name == "*" || name == rotation)
        })
}

pub fn value(secret: &Secret, key: &str) -> Option<SecretString> {
    text_value(secret, key)
        .filter(|text| !text.is_empty())
        .map(SecretString::from)
}

pub fn text_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

pub async fn read_state(api: &Secrets<'_>, name: &str) -> Result<Option<RotationState>> {
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let (Some(rotation_id), Some(pending)) =
        (text_value(&secret, ROTATION_ID), value(&secret, PENDING))
    else {
        return Err(Error::Secret {
            name: name.into(),
            problem: "the state Secret lacks rotationId or pending".into(),
        });
    };
    let plan = match text_value(&secret, PLAN) {
        Some(plan) => Some(serde_json::from_str(&plan).map_err(|e| Error::Secret {
            name: name.into(),
            problem: format!("the state Secret's plan is unreadable: {e}"),
        })?),
        None => None,
    };
    Ok(Some(RotationState {
        rotation_id,
        pending,
        previous: value(&secret, PREVIOUS),
        plan,
        previous_account: text_value(&secret, PREVIOUS_ACCOUNT),
        pending_account: text_value(&secret, PENDING_ACCOUNT),
        retirement: value(&secret, RETIREMENT),
        shard: shard::of(&secret).map(str::to_owned),
        workload_version: text_value(&secret, WORKLOAD_VERSION),
        follows: text_value(&secret, FOLLOWS),
        uid: secret.metadata.uid.clone(),
        owner: secret
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone()),
    }))
}

/// Creates the state Secret, owned by the resource so that it goes with it, and labelled with
/// the shard of the operator that stages the rotation; its UID.
pub async fn create_state(
    api: &Secrets<'_>,
    rotation: &PasswordRotation,
    state: &RotationState,
) -> Result<Option<String>> {
    let mut data = BTreeMap::from([
        (ROTATION_ID.to_owned(), bytes(&state.rotation_id)),
        (PENDING.to_owned(), bytes(state.pending.expose_secret())),
    ]);
    if let Some(previous) = &state.previous {
        data.insert(PREVIOUS.to_owned(), bytes(previous.expose_secret()));
    }
    if let Some(plan) = &state.plan {
        let plan = serde_json::to_string(plan).expect("a plan always serializes");
        data.insert(PLAN.to_owned(), bytes(&plan));
    }
    for (key, text) in [
        (PREVIOUS_ACCOUNT, &state.previous_account),
        (PENDING_ACCOUNT, &state.pending_account),
        (WORKLOAD_VERSION, &state.workload_version),
        (FOLLOWS, &state.follows),
    ] {
        if let Some(text) = text {
            data.insert(key.to_owned(), bytes(text));
        }
    }
    if let Some(retirement) = &state.retirement {
        data.insert(RETIREMENT.to_owned(), bytes(retirement.expose_secret()));
    }
    let mut labels = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGER.to_owned(),
    )]);
    if let Some(shard) = &state.shard {
        labels.insert(SHARD_LABEL.to_owned(), shard.clone());
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(state_secret_name(rotation)),
            owner_references: rotation.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    Ok(api.create(&secret).await?.metadata.uid)
}

/// Takes `previous` (of `accounts`: previous, pending), read from the workload Secret at
/// `workload_version`, as the password the rotation starts from (nothing was added yet).
pub async fn restage(
    api: &Secrets<'_>,
    name: &str,
    previous: &SecretString,
    accounts: (Option<&str>, Option<&str>),
    workload_version: Option<&str>,
) -> Result<()> {
    let patch = json!({"data": {
        PREVIOUS: bytes(previous.expose_secret()),
        PREVIOUS_ACCOUNT: accounts.0.map(bytes),
        PENDING_ACCOUNT: accounts.1.map(bytes),
        WORKLOAD_VERSION: workload_version.map(bytes),
    }});
    api.patch_merge(name, &patch).await.map(drop)
}

/// Deletes the state Secret `state` was read from, and no other.
pub async fn delete_state(api: &Secrets<'_>, name: &str, state: &RotationState) -> Result<()> {
    api.delete(name, state.uid.as_deref()).await
}

/// What an orphaned state Secret's annotation says of the passwords it keeps.
pub const KEPT_BOTH_VALID: &str =
    "the PasswordRotation was deleted mid-rotation; previous is still valid in the database";
pub const KEPT_ROLLED_BACK: &str = "the PasswordRotation was deleted mid-rotation and pending \
     was removed from the database; kept because an operator process that read this Secret \
     before the deletion could still add pending; safe to delete once every operator replica \
     has restarted since";

/// Keeps the state Secret beyond its resource deleted mid-rotation, so that every password
/// that is or may become valid in the database stays known to Kubernetes; `kept` says which.
pub async fn orphan_state(api: &Secrets<'_>, name: &str, kept: &str) -> Result<()> {
    let patch = json!({"metadata": {
        "ownerReferences": null,
        "annotations": {"rotator.dev/orphaned": kept},
    }});
    api.patch_merge_if_present(name, &patch).await
}

/// Keys of the workload Secret and what they become in one write: a value, or `None` to
/// remove the key.
pub type SecretKeys<'a> = Vec<(&'a str, Option<SecretString>)>;

/// Marks the workload Secret, as read, with the rotation about to be rolled back; refused
/// (409) when it was written since.
pub async fn fence_rollback(api: &Secrets<'_>, secret: &Secret, rotation_id: &str) -> Result<()> {
    let patch = json!({"metadata": {
        "resourceVersion": secret.metadata.resource_version,
        "annotations": {ROLLED_BACK_ANNOTATION: rotation_id},
    }});
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    api.patch_merge(name, &patch).await.map(drop)
}

/// Writes `keys` into the workload Secret in one write, and returns the Secret as written;
/// with `version`, only if the Secret is still at that resourceVersion.
pub async fn write_keys(
    api: &Secrets<'_>,
    name: &str,
    version: Option<&str>,
    keys: SecretKeys<'_>,
) -> Result<Secret> {
    let data: serde_json::Map<String, serde_json::Value> = keys
        .into_iter()
        .map(|(key, value)| {
            let value = value.map_or(serde_json::Value::Null, |v| json!(bytes(v.expose_secret())));
            (key.to_owned(), value)
        })
        .collect();
    let patch = match version {
        Some(version) => json!({"metadata": {"resourceVersion": version}, "data": data}),
        None => json!({"data": data}),
    };
    api.patch_merge(name, &patch).await
}

/// Who last wrote `key` of the Secret, and when, from its managed fields.
pub fn last_writer(secret: &Secret, key: &str) -> Option<(String, Option<String>)> {
    let field = format!("f:{key}");
    secret
        .metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:data"))
                .and_then(|data| data.get(&field))
                .is_some()
        })
        .max_by_key(|entry| entry.time.as_ref().map(|t| t.0))
        .map(|entry| {
            (
                entry.manager.clone().unwrap_or_else(|| "(unnamed)".into()),
                entry.time.as_ref().map(|t| t.0.to_string()),
            )
        })
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_password() {
        let state = RotationState {
            rotation_id: "r1".into(),
            pending: SecretString::from("Pending-Pass-123456"),
            previous: Some(SecretString::from("Previous-Pass-654321")),
            plan: None,
            previous_account: Some("svc-a".into()),
            pending_account: Some("svc-b".into()),
            retirement: Some(SecretString::from("Retirement-Pass-1234")),
            shard: Some("a".into()),
            workload_version: Some("41".into()),
            follows: Some("r0".into()),
            owner: Some("c0ffee".into()),
            uid: Some("beef".into()),
        };
        let debug = format!("{state:?}");
        assert!(debug.contains("r1"));
        assert!(
            !debug.contains("Pending-Pass")
                && !debug.contains("Previous-Pass")
                && !debug.contains("Retirement-Pass"),
            "{debug}"
        );
    }

    #[test]
    fn a_secret_allows_only_the_rotations_it_names() {
        let annotated = |value: Option<&str>| -> Secret {
            let mut meta = json!({"name": "s"});
            if let Some(v) = value {
                meta["annotations"] = json!({ALLOWED_ROTATIONS_ANNOTATION: v});
            }
            serde_json::from_value(json!({"metadata": meta})).unwrap()
        };
        assert!(!allows(&annotated(None), "a"));
        assert!(allows(&annotated(Some("a")), "a"));
        assert!(allows(&annotated(Some("b, a")), "a"));
        assert!(!allows(&annotated(Some("ab,b")), "a"));
        assert!(allows(&annotated(Some("*")), "a"));
        assert!(!allows(&annotated(Some("")), "a"));
    }

    #[test]
    fn the_last_writer_of_a_key_comes_from_managed_fields() {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "s", "managedFields": [
                {"manager": "password-rotator", "operation": "Update", "time": "2026-06-01T12:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:password": {}, "f:username": {}}}},
                {"manager": "argocd-controller", "operation": "Apply", "time": "2026-06-01T12:05:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:password": {}}}},
                {"manager": "kubectl-label", "operation": "Update", "time": "2026-06-01T12:09:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
            ]},
        }))
        .unwrap();
        let (manager, time) = last_writer(&secret, "password").unwrap();
        assert_eq!(manager, "argocd-controller");
        assert_eq!(time.as_deref(), Some("2026-06-01T12:05:00Z"));
        assert_eq!(
            last_writer(&secret, "username").unwrap().0,
            "password-rotator"
        );
        assert_eq!(last_writer(&secret, "other"), None);
    }
}
