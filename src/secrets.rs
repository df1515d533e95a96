//! The two Secrets a rotation touches: the state Secret it owns (`<name>-rotation`), which
//! holds the new and the old password while a rotation is in flight, and the workload Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::resource::PasswordRotation;
use crate::{Error, Result};

pub const MANAGER: &str = "password-rotator";
const PENDING: &str = "pending";
const PREVIOUS: &str = "previous";
const ROTATION_ID: &str = "rotationId";

/// The passwords of a rotation in flight. Debug shows no password.
#[derive(Debug)]
pub struct RotationState {
    pub rotation_id: String,
    pub pending: SecretString,
    pub previous: Option<SecretString>,
}

pub fn state_secret_name(rotation: &PasswordRotation) -> String {
    format!("{}-rotation", rotation.name_any())
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

pub async fn read_state(api: &Api<Secret>, name: &str) -> Result<Option<RotationState>> {
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
    Ok(Some(RotationState {
        rotation_id,
        pending,
        previous: value(&secret, PREVIOUS),
    }))
}

/// Creates the state Secret, owned by the resource so that it goes with it.
pub async fn create_state(
    api: &Api<Secret>,
    rotation: &PasswordRotation,
    state: &RotationState,
) -> Result<()> {
    let mut data = BTreeMap::from([
        (ROTATION_ID.to_owned(), bytes(&state.rotation_id)),
        (PENDING.to_owned(), bytes(state.pending.expose_secret())),
    ]);
    if let Some(previous) = &state.previous {
        data.insert(PREVIOUS.to_owned(), bytes(previous.expose_secret()));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(state_secret_name(rotation)),
            owner_references: rotation.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

pub async fn delete_state(api: &Api<Secret>, name: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the state Secret when its resource is deleted after publishing, so that the old
/// password, still valid in the database, stays known to Kubernetes.
pub async fn orphan_state(api: &Api<Secret>, name: &str) -> Result<()> {
    let patch = json!({"metadata": {
        "ownerReferences": null,
        "annotations": {"rotator.dev/orphaned": "the PasswordRotation was deleted mid-rotation; previous is still valid in the database"},
    }});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the password (and the user name, for user targets) into the workload Secret.
pub async fn publish(
    api: &Api<Secret>,
    name: &str,
    password_key: &str,
    username: Option<(&str, &str)>,
    password: &SecretString,
) -> Result<()> {
    let mut data = serde_json::Map::new();
    data.insert(password_key.into(), json!(bytes(password.expose_secret())));
    if let Some((key, user)) = username {
        data.insert(key.into(), json!(bytes(user)));
    }
    let patch = json!({"data": data});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

/// The watch on Secrets sees metadata only; this maps a Secret to the resources that read it.
pub fn references(rotation: &PasswordRotation, namespace: Option<&str>, name: &str) -> bool {
    if rotation.namespace().as_deref() != namespace {
        return false;
    }
    let spec = &rotation.spec;
    let rs = spec.target.redis_software.as_ref();
    spec.secret.name == name
        || rs.is_some_and(|rs| {
            rs.credentials_secret == name || rs.ca_secret.as_ref().is_some_and(|c| c.name == name)
        })
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
        };
        let debug = format!("{state:?}");
        assert!(debug.contains("r1"));
        assert!(
            !debug.contains("Pending-Pass") && !debug.contains("Previous-Pass"),
            "{debug}"
        );
    }
}
