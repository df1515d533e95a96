//! Checks of the spec that admission (CEL) cannot make, and the parsed form the engine uses.

use std::time::Duration;

use crate::rotation_spec::RotationSpec;
use crate::schedule::{Schedule, ScheduleRule, Window};

/// The spec, checked and parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    pub schedule: Option<Schedule>,
    /// How long before the password expires (where the target says) a rotation starts.
    pub before_expiry: Duration,
    pub overlap: Duration,
    pub timeout: Duration,
    pub password_length: usize,
}

/// A spec field that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

/// Checks `spec` of a resource in `namespace`.
pub fn validate(spec: &RotationSpec, namespace: &str) -> Result<ValidSpec, InvalidField> {
    let target = spec.target.selected()?;
    target.validate()?;
    target.supports(spec.mode)?;
    if spec.secret.name.is_empty() {
        return Err(invalid("spec.secret.name", "must not be empty"));
    }
    if let Some(used) = target
        .secrets()
        .into_iter()
        .find(|used| used.name == spec.secret.name && spec.secrets_namespace == namespace)
    {
        return Err(invalid(
            "spec.secret.name",
            format!(
                "is the Secret {} names: the workloads' Secret must be one of its own, never \
                 one that holds the target's credentials",
                used.field
            ),
        ));
    }
    for (key, text) in &spec.secret.template {
        crate::template::check(text)
            .map_err(|e| invalid("spec.secret.template", format!("key {key}: {e}")))?;
        if text.contains(".username") && !target.publishes_username() {
            return Err(invalid(
                "spec.secret.template",
                format!("key {key}: this target publishes no user name"),
            ));
        }
    }
    let schedule = match &spec.schedule {
        None => None,
        Some(s) => {
            let rule = match (&s.every, &s.cron) {
                (Some(_), Some(_)) => {
                    return Err(invalid("spec.schedule", "set at most one of every or cron"));
                }
                (Some(every), None) => {
                    let every = every
                        .parse()
                        .map_err(|e| invalid("spec.schedule.every", e))?;
                    if every < Duration::from_secs(3600) {
                        return Err(invalid("spec.schedule.every", "must be at least 1h"));
                    }
                    Some(ScheduleRule::Every(every))
                }
                (None, Some(cron)) => {
                    Some(ScheduleRule::cron(cron).map_err(|e| invalid("spec.schedule.cron", e))?)
                }
                (None, None) => None,
            };
            let jitter = match &s.jitter {
                Some(jitter) => jitter
                    .parse()
                    .map_err(|e| invalid("spec.schedule.jitter", e))?,
                None => Duration::ZERO,
            };
            let window = s
                .window
                .as_ref()
                .map(|w| Window::new(&w.days, w.hours.as_deref()))
                .transpose()
                .map_err(|e| invalid("spec.schedule.window.hours", e))?;
            rule.map(|rule| Schedule {
                rule,
                jitter,
                window,
            })
        }
    };
    let before_expiry = match spec
        .schedule
        .as_ref()
        .and_then(|s| s.before_expiry.as_ref())
    {
        Some(before) => before
            .parse()
            .map_err(|e| invalid("spec.schedule.beforeExpiry", e))?,
        None => Duration::from_secs(72 * 3600),
    };
    let overlap = spec
        .rollout
        .overlap
        .parse()
        .map_err(|e| invalid("spec.rollout.overlap", e))?;
    let timeout = spec
        .rollout
        .timeout
        .parse()
        .map_err(|e| invalid("spec.rollout.timeout", e))?;
    if overlap > timeout {
        return Err(invalid(
            "spec.rollout.overlap",
            "must not exceed spec.rollout.timeout",
        ));
    }
    let length = spec.password.length;
    if !(16..=128).contains(&length) {
        return Err(invalid(
            "spec.password.length",
            "must be between 16 and 128",
        ));
    }
    Ok(ValidSpec {
        schedule,
        before_expiry,
        overlap,
        timeout,
        password_length: length as usize,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(target: serde_json::Value, secret: serde_json::Value) -> RotationSpec {
        RotationSpec::from_v1alpha1(json!({"target": target, "secret": secret}))
    }

    #[test]
    fn the_workload_secret_is_never_a_secret_of_the_target() {
        let redis_software = json!({"redisSoftware": {
            "url": "https://rs:9443", "credentialsSecret": "admin", "user": "app",
            "caSecret": {"name": "rs-ca"},
        }});
        for name in ["admin", "rs-ca"] {
            let refused = validate(&spec(redis_software.clone(), json!({"name": name})), "ns");
            assert_eq!(refused.unwrap_err().field, "spec.secret.name", "{name}");
        }
        assert!(
            validate(
                &spec(redis_software.clone(), json!({"name": "app-redis"})),
                "ns"
            )
            .is_ok()
        );
        assert!(
            validate(&spec(redis_software, json!({"name": "admin"})), "shop").is_ok(),
            "the target's Secrets are in another namespace: the names may be the same"
        );
    }
}
