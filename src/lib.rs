//! password-rotator: rotates Redis Software passwords without downtime.

pub mod controller;
pub mod convert;
pub mod duration;
pub mod events;
pub mod freshness;
pub mod http;
pub mod kubernetes;
pub mod leader;
pub mod login_budget;
pub mod metrics;
pub mod password;
pub mod plan;
pub mod reason;
pub mod resource;
pub mod resource_index;
pub mod rollout;
pub mod rotation;
pub mod rotation_spec;
pub mod rotation_target;
pub mod schedule;
pub mod secret_cache;
pub mod secrets;
pub mod shard;
pub mod status;
pub mod target_controller;
pub mod target_index;
pub mod target_status;
pub mod targets;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod validation;
pub mod verify;

use kube::CustomResourceExt;

/// The CustomResourceDefinitions, each as a file name of `crds/` and its YAML, as
/// `password-rotator crd` prints them.
pub fn crds() -> Vec<(String, String)> {
    let mut rotations =
        serde_json::to_value(resource::PasswordRotation::crd()).expect("a CRD always serializes");
    keep_v1alpha1_stored(&mut rotations);
    [
        rotations,
        serde_json::to_value(rotation_target::RotationTarget::crd()).expect("serializes"),
        serde_json::to_value(rotation_target::ClusterRotationTarget::crd()).expect("serializes"),
    ]
    .into_iter()
    .map(|mut crd| {
        to_known_formats(&mut crd);
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let yaml = serde_yaml::to_string(&crd).expect("a CRD always serializes");
        (format!("{name}.yaml"), yaml)
    })
    .collect()
}

/// v1alpha1 stays listed, neither served nor stored: the API server refuses a CRD that drops a
/// version its objects may still be stored in. The README says how to move them to v1alpha2
/// (`password-rotator convert`).
fn keep_v1alpha1_stored(crd: &mut serde_json::Value) {
    if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
        versions.push(serde_json::json!({
            "name": "v1alpha1",
            "served": false,
            "storage": false,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            }},
        }));
    }
}

/// Rewrites the integer formats schemars gives Rust's types (`uint32`, `uint64`, ...) to the
/// two the API server knows: any other `format` makes every `kubectl apply` of the CRD print a
/// warning. The range is kept by the `minimum` schemars writes beside an unsigned format.
fn to_known_formats(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                match format.as_str() {
                    "int8" | "int16" | "uint8" | "uint16" => *format = "int32".to_owned(),
                    "uint32" | "uint64" | "uint" | "int" => *format = "int64".to_owned(),
                    _ => {}
                }
            }
            map.values_mut().for_each(to_known_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(to_known_formats),
        _ => {}
    }
}

/// Everything a reconcile can fail with. Messages never carry a password: target clients
/// scrub what servers say, and Secret values are never formatted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A call to the target failed in a way worth retrying.
    #[error("{reason}: {detail}")]
    Target {
        reason: reason::Reason,
        detail: String,
    },
    #[error("Secret {name}: {problem}")]
    Secret { name: String, problem: String },
    #[error(
        "Secret {name} ({field}) does not allow PasswordRotation {rotation} to use it: annotate \
         it rotator.dev/allowed-rotations={rotation} (or *) if it should"
    )]
    SecretNotAllowed {
        name: String,
        field: &'static str,
        rotation: String,
    },
    #[error("verifying the new password on {endpoint}: {detail}")]
    Verify { endpoint: String, detail: String },
    /// A rotation in flight was staged by another shard's operator; the message says which.
    #[error("{0}")]
    ShardMoved(String),
}

impl Error {
    /// A short, bounded label for metrics and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(_) => "kubernetes",
            Error::Target { reason, .. } => reason.as_str(),
            Error::Secret { .. } => "secret",
            Error::SecretNotAllowed { .. } => "SecretNotAllowed",
            Error::Verify { .. } => "verify",
            Error::ShardMoved(_) => "ShardMoved",
        }
    }

    /// Retrying does not clear it: a person has to change a resource, a Secret or a label.
    pub fn needs_a_change(&self) -> bool {
        use reason::Reason::*;
        match self {
            Error::Secret { .. } | Error::SecretNotAllowed { .. } | Error::ShardMoved(_) => true,
            Error::Target { reason, .. } => matches!(
                reason,
                InvalidSpec | TargetMissing | TargetNotAllowed | SecretNotAllowed | SecretMissing
            ),
            Error::Kube(_) | Error::Verify { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::Error;

    fn api_error(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(
            Status::failure("refused", "").with_code(code),
        )))
    }

    #[test]
    fn a_write_refused_for_a_stale_version_is_a_conflict_not_a_failure() {
        assert_eq!(api_error(409).kind(), "conflict");
        assert_eq!(api_error(500).kind(), "kubernetes");
        assert_eq!(api_error(404).kind(), "kubernetes");
    }
}
