//! What the engine acts on: a resource's spec with its target resolved, that is the target's
//! connection joined with the object the resource names, once the target's policy allows it.

use std::collections::BTreeMap;

use crate::reason::Reason;
use crate::resource::{
    Mode, PasswordRotationSpec, PasswordSpec, PersistencePolicy, Rollout, Schedule, Verify,
    WorkloadSecret,
};
use crate::rotation_target::{self, LockoutPolicy, Request, TargetKind, TargetView};
use crate::targets::Target;

/// A resource's spec, with the target it names resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct RotationSpec {
    pub target: Target,
    /// Where the target's Secrets are: the target's namespace, or the operator's cluster
    /// target namespace for a `ClusterRotationTarget`.
    pub secrets_namespace: String,
    pub lockout: Option<LockoutPolicy>,
    pub secret: WorkloadSecret,
    pub schedule: Option<Schedule>,
    pub password: PasswordSpec,
    pub rollout: Rollout,
    pub mode: Mode,
    pub verify: Option<Verify>,
    pub persistence: PersistencePolicy,
    pub suspend: bool,
    pub rotation_request: Option<String>,
}

/// Why a resource's target could not be resolved: the `Ready=False` reason and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub reason: Reason,
    pub message: String,
}

/// Where the target a resource names is, as the operator found it.
pub struct Found<'a> {
    pub target: TargetView<'a>,
    /// Where its Secrets are.
    pub secrets_namespace: &'a str,
    /// The resource's namespace's labels, when known.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

impl RotationSpec {
    /// `spec` on the target `found` (`None`: no such target is served), if its policy allows
    /// what `spec` asks of it in `namespace`.
    pub fn resolve(
        spec: &PasswordRotationSpec,
        namespace: &str,
        found: Option<Found<'_>>,
    ) -> Result<RotationSpec, Unresolved> {
        let reference = &spec.target.reference;
        let Some(found) = found else {
            return Err(Unresolved {
                reason: Reason::TargetMissing,
                message: match reference.kind {
                    TargetKind::RotationTarget => format!(
                        "spec.target.ref: RotationTarget {} not found in namespace {namespace}",
                        reference.name
                    ),
                    TargetKind::ClusterRotationTarget => format!(
                        "spec.target.ref: ClusterRotationTarget {} not found (or this operator \
                         serves no ClusterRotationTarget: --cluster-target-namespace)",
                        reference.name
                    ),
                },
            });
        };
        let request = Request {
            namespace,
            namespace_labels: found.namespace_labels,
            objects: spec.target.objects(),
            mode: spec.mode,
            templates: !spec.secret.template.is_empty(),
        };
        rotation_target::check(&found.target, &request).map_err(|refused| Unresolved {
            reason: Reason::TargetNotAllowed,
            message: format!("{}: {}", refused.rule, refused.message),
        })?;
        let target = found
            .target
            .connection
            .with_object(&spec.target)
            .map_err(|invalid| Unresolved {
                reason: Reason::InvalidSpec,
                message: format!("{}: {}", invalid.field, invalid.message),
            })?;
        Ok(RotationSpec::on(
            spec,
            target,
            found.secrets_namespace.to_owned(),
            found.target.lockout.cloned(),
        ))
    }

    /// `spec` on no target, for a reconcile that only reports why its target is unresolved
    /// (or runs a rotation on its pinned plan).
    pub fn unresolved(spec: &PasswordRotationSpec, namespace: &str) -> RotationSpec {
        RotationSpec::on(spec, Target::default(), namespace.to_owned(), None)
    }

    fn on(
        spec: &PasswordRotationSpec,
        target: Target,
        secrets_namespace: String,
        lockout: Option<LockoutPolicy>,
    ) -> RotationSpec {
        RotationSpec {
            target,
            secrets_namespace,
            lockout,
            secret: spec.secret.clone(),
            schedule: spec.schedule.clone(),
            password: spec.password.clone(),
            rollout: spec.rollout.clone(),
            mode: spec.mode,
            verify: spec.verify.clone(),
            persistence: spec.persistence,
            suspend: spec.suspend,
            rotation_request: spec.rotation_request.clone(),
        }
    }

    /// For tests: a resolved spec from one in the v1alpha1 shape, whose `target` holds the
    /// connection and the object; its Secrets are in namespace `ns`.
    #[cfg(test)]
    pub fn from_v1alpha1(mut spec: serde_json::Value) -> RotationSpec {
        let target: Target = serde_json::from_value(spec["target"].take()).expect("a target");
        spec["target"] =
            serde_json::json!({"ref": {"kind": "RotationTarget", "name": "t"}, "user": "u"});
        let resource: PasswordRotationSpec = serde_json::from_value(spec).expect("a spec");
        RotationSpec::on(&resource, target, "ns".into(), None)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rotation_target::RotationTarget;

    fn spec(target: serde_json::Value) -> PasswordRotationSpec {
        serde_json::from_value(json!({"target": target, "secret": {"name": "app-redis"}})).unwrap()
    }

    fn target(allow: serde_json::Value) -> RotationTarget {
        serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2", "kind": "RotationTarget",
            "metadata": {"name": "rs", "namespace": "shop"},
            "spec": {"redisSoftware": {"url": "https://rs:9443", "credentialsSecret": "rs-admin"}, "allow": allow},
        }))
        .unwrap()
    }

    fn resolve(
        spec: &PasswordRotationSpec,
        target: &RotationTarget,
    ) -> Result<RotationSpec, Unresolved> {
        RotationSpec::resolve(
            spec,
            "shop",
            Some(Found {
                target: TargetView::of_namespaced(target),
                secrets_namespace: "shop",
                namespace_labels: None,
            }),
        )
    }

    #[test]
    fn a_resolved_spec_joins_the_connection_and_the_object() {
        let spec = spec(json!({"ref": {"kind": "RotationTarget", "name": "rs"}, "user": "app"}));
        let resolved = resolve(&spec, &target(json!({}))).unwrap();
        let rs = resolved.target.redis_software.unwrap();
        assert_eq!(rs.connection.url, "https://rs:9443");
        assert_eq!(rs.user.as_deref(), Some("app"));
        assert_eq!(resolved.secrets_namespace, "shop");
    }

    #[test]
    fn a_missing_target_a_refused_object_and_a_wrong_kind_of_object_are_named() {
        let spec_user =
            spec(json!({"ref": {"kind": "RotationTarget", "name": "rs"}, "user": "admin"}));
        let missing = RotationSpec::resolve(&spec_user, "shop", None).unwrap_err();
        assert_eq!(missing.reason, Reason::TargetMissing);
        assert!(
            missing.message.contains("RotationTarget rs not found"),
            "{}",
            missing.message
        );

        let refused = resolve(&spec_user, &target(json!({"objects": ["orders-*"]}))).unwrap_err();
        assert_eq!(refused.reason, Reason::TargetNotAllowed);
        assert!(
            refused
                .message
                .starts_with("spec.allow.objects: RotationTarget rs"),
            "{}",
            refused.message
        );

        let account =
            spec(json!({"ref": {"kind": "RotationTarget", "name": "rs"}, "account": "svc"}));
        let wrong = resolve(&account, &target(json!({}))).unwrap_err();
        assert_eq!(wrong.reason, Reason::InvalidSpec);
        assert!(
            wrong
                .message
                .contains("account is not an object of a redisSoftware target"),
            "{}",
            wrong.message
        );
    }
}
