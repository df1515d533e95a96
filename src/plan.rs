//! The plan a rotation runs to its end: what the spec said when the rotation was staged.
//! It is kept in the state Secret, so that an edit of the spec mid-rotation (a GitOps sync, a
//! `kubectl edit`) can never make one rotation publish one user's password under another's
//! name, switch modes half-way, or delete nothing.

use serde::{Deserialize, Serialize};

use crate::resource::{Mode, Verify, WorkloadRef, WorkloadSecret};
use crate::rotation_spec::RotationSpec;
use crate::rotation_target::LockoutPolicy;
use crate::targets::Target;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The target as resolved: an edit of the target resource does not reach the rotation
    /// either.
    pub target: Target,
    /// Absent in plans staged by v1alpha1 operators: their Secrets were the resource's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockout: Option<LockoutPolicy>,
    pub secret: WorkloadSecret,
    pub mode: Mode,
    pub workloads: Vec<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

impl Plan {
    pub fn of(spec: &RotationSpec) -> Self {
        Self {
            target: spec.target.clone(),
            secrets_namespace: Some(spec.secrets_namespace.clone()),
            lockout: spec.lockout.clone(),
            secret: spec.secret.clone(),
            mode: spec.mode,
            workloads: spec.rollout.workloads.clone(),
            verify: spec.verify.clone(),
        }
    }

    /// `spec` with the pinned fields put back: what the rotation in flight acts on. The rest
    /// (schedule, suspend, requests, overlap, timeout) stays as the spec says now.
    pub fn applied_to(&self, spec: &RotationSpec) -> RotationSpec {
        let mut effective = spec.clone();
        effective.target = self.target.clone();
        if let Some(namespace) = &self.secrets_namespace {
            effective.secrets_namespace = namespace.clone();
        }
        effective.lockout = self.lockout.clone();
        effective.secret = self.secret.clone();
        effective.mode = self.mode;
        effective.rollout.workloads = self.workloads.clone();
        effective.verify = self.verify.clone();
        effective
    }

    /// The spec fields edited since the plan was pinned; they apply to the next rotation.
    pub fn changed_fields(&self, spec: &RotationSpec) -> Vec<&'static str> {
        let now = Self::of(spec);
        let target_moved = self.secrets_namespace.is_some()
            && (self.secrets_namespace != now.secrets_namespace || self.lockout != now.lockout);
        [
            ("spec.target", self.target != now.target || target_moved),
            ("spec.secret", self.secret != now.secret),
            ("spec.mode", self.mode != now.mode),
            ("spec.rollout.workloads", self.workloads != now.workloads),
            ("spec.verify", self.verify != now.verify),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(extra: serde_json::Value) -> RotationSpec {
        let mut base = json!({
            "target": {"redisSoftware": {"url": "https://rs:9443", "credentialsSecret": "admin", "user": "app"}},
            "secret": {"name": "app-redis"},
            "rollout": {"workloads": [{"kind": "Deployment", "name": "app"}], "overlap": "1m"},
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        RotationSpec::from_v1alpha1(base)
    }

    #[test]
    fn an_edit_mid_rotation_is_named_and_does_not_reach_the_rotation() {
        let pinned = Plan::of(&spec(json!({})));
        let edited = spec(json!({
            "mode": "Replace",
            "target": {"redisSoftware": {"url": "https://rs:9443", "credentialsSecret": "admin", "user": "other"}},
            "rollout": {"workloads": [], "overlap": "2m"},
            "suspend": true,
        }));
        assert_eq!(
            pinned.changed_fields(&edited),
            vec!["spec.target", "spec.mode", "spec.rollout.workloads"]
        );
        let effective = pinned.applied_to(&edited);
        assert_eq!(effective.mode, Mode::AddThenDelete);
        assert_eq!(
            effective.target.redis_software.unwrap().user.as_deref(),
            Some("app")
        );
        assert_eq!(effective.rollout.workloads.len(), 1);
        assert_eq!(effective.rollout.overlap, edited.rollout.overlap);
        assert!(effective.suspend, "suspend is never pinned");
    }

    #[test]
    fn the_plan_survives_the_state_secret() {
        let plan = Plan::of(&spec(json!({"verify": {"endpoint": "db:6379"}})));
        let stored = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&stored).unwrap(), plan);
        assert!(
            plan.changed_fields(&spec(json!({"verify": {"endpoint": "db:6379"}})))
                .is_empty()
        );
    }
}
