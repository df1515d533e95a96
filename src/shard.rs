//! Sharding: several operators split the targets between them by the label
//! `rotator.dev/shard` ([`SHARD_LABEL`]) that the platform team puts on a target, each
//! operator with its own Lease. A target, and every resource that names it, belongs to exactly
//! one operator: the one run with `--shard <its label>`, or the unsharded one when it has no
//! such label. So one target's budget, claims and status have one writer.

use std::time::Duration;

use kube::ResourceExt;

use crate::resource::{PasswordRotationStatus, SHARD_LABEL, TargetReference};
use crate::rotation_target::TargetKind;

/// The Lease of the unsharded operator; a shard's is this name, `-`, the shard.
const LEASE_PREFIX: &str = "password-rotator";

/// `name` as a shard's name: a label value that can also end the name of a Lease and of a
/// Deployment, so lowercase letters, digits and `-`, at most 63.
pub fn parse(name: &str) -> Result<String, String> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = (1..=63).contains(&name.len())
        && name.chars().all(|c| alphanumeric(c) || c == '-')
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric);
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} cannot name a shard: 1 to 63 lowercase letters, digits or '-', starting \
             and ending with a letter or digit (it is the value of the label {SHARD_LABEL} and \
             ends the name of the shard's Lease)"
        ))
    }
}

/// The Lease that the replicas of `shard`'s operator elect their leader with, unless
/// `--lease-name` names another.
pub fn lease_name(shard: Option<&str>) -> String {
    match shard {
        Some(shard) => format!("{LEASE_PREFIX}-{shard}"),
        None => LEASE_PREFIX.to_owned(),
    }
}

/// The shard an object is labelled with; `None`: the unsharded operator's.
pub fn of(object: &impl ResourceExt) -> Option<&str> {
    object.labels().get(SHARD_LABEL).map(String::as_str)
}

/// The kubectl command that labels `target` (of a resource in `namespace`), up to the label.
fn label_target(namespace: &str, target: &TargetReference) -> String {
    match target.kind {
        TargetKind::RotationTarget => {
            format!("-n {namespace} label rotationtarget {}", target.name)
        }
        TargetKind::ClusterRotationTarget => {
            format!("label clusterrotationtarget {}", target.name)
        }
    }
}

/// How a message names the operator of `shard`.
fn operator(shard: Option<&str>) -> String {
    match shard {
        Some(shard) => format!("shard {shard}"),
        None => "the unsharded operator".to_owned(),
    }
}

/// Why the operator of shard `mine` leaves rotation `rotation_id` (state Secret `state` in
/// `namespace`, of a resource on `target`) to the shard that staged it, and how to let it
/// finish.
pub fn moved_message(
    rotation_id: &str,
    started_by: Option<&str>,
    mine: Option<&str>,
    (namespace, target, state): (&str, &TargetReference, &str),
) -> String {
    let label_arg = |shard: Option<&str>| match shard {
        Some(shard) => format!("{SHARD_LABEL}={shard} --overwrite"),
        None => format!("{SHARD_LABEL}-"),
    };
    let by = operator(started_by);
    let this = match mine {
        Some(shard) => format!("shard {shard}"),
        None => "unsharded".to_owned(),
    };
    format!(
        "rotation {rotation_id} was started by {by}; this operator ({this}) does not touch it. \
         Let it finish by labelling its target as before (kubectl {} {}), or, once {by} runs \
         no more, hand it over with: kubectl -n {namespace} label secret {state} {}",
        label_target(namespace, target),
        label_arg(started_by),
        label_arg(mine),
    )
}

/// Whether a resource whose target is in `shard` shows no sign of that shard's operator: no
/// status at all, or one last written by another shard's operator (`status.shard`).
pub fn unserved(status: Option<&PasswordRotationStatus>, shard: Option<&str>) -> bool {
    status.is_none_or(|status| {
        *status == PasswordRotationStatus::default() || status.shard.as_deref() != shard
    })
}

/// Why a resource of `namespace` on `target` (in `shard`) is said to be unserved after
/// `waited`, and what to do.
pub fn unserved_message(
    shard: Option<&str>,
    waited: Duration,
    (namespace, target): (&str, &TargetReference),
) -> String {
    let (label, run) = match shard {
        Some(shard) => (
            format!("is labelled {SHARD_LABEL}={shard}"),
            format!("--shard {shard}"),
        ),
        None => (
            format!("has no {SHARD_LABEL} label"),
            "without --shard".to_owned(),
        ),
    };
    format!(
        "its target {label}, and no operator run {run} has acted on this resource for {}s: \
         correct the label (kubectl {} {SHARD_LABEL}=<shard> --overwrite) or run an operator \
         for that shard",
        waited.as_secs(),
        label_target(namespace, target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_name_is_a_label_value_that_can_end_a_lease_name() {
        for good in ["a", "team-1", "0", &"x".repeat(63)] {
            assert_eq!(parse(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["", "A", "team_1", "-a", "a-", "a.b", "a b", &"x".repeat(64)] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains(SHARD_LABEL), "{error}");
        }
    }

    #[test]
    fn a_resource_is_unserved_until_its_shards_operator_writes_its_status() {
        assert!(unserved(None, Some("a")));
        assert!(unserved(Some(&PasswordRotationStatus::default()), None));
        let written_by = |shard: Option<&str>| PasswordRotationStatus {
            shard: shard.map(str::to_owned),
            observed_generation: Some(1),
            ..Default::default()
        };
        assert!(!unserved(Some(&written_by(Some("a"))), Some("a")));
        assert!(!unserved(Some(&written_by(None)), None));
        assert!(unserved(Some(&written_by(None)), Some("a")));
        assert!(unserved(Some(&written_by(Some("a"))), Some("aa")));
    }

    #[test]
    fn the_unserved_message_names_the_label_and_how_to_correct_it() {
        let target = TargetReference {
            kind: TargetKind::RotationTarget,
            name: "rs".into(),
        };
        assert_eq!(
            unserved_message(Some("aa"), Duration::from_secs(300), ("shop", &target)),
            "its target is labelled rotator.dev/shard=aa, and no operator run --shard aa has \
             acted on this resource for 300s: correct the label (kubectl -n shop label \
             rotationtarget rs rotator.dev/shard=<shard> --overwrite) or run an operator for \
             that shard"
        );
        let message = unserved_message(None, Duration::from_secs(5), ("shop", &target));
        assert!(
            message.starts_with(
                "its target has no rotator.dev/shard label, and no operator run without --shard"
            ),
            "{message}"
        );
    }

    #[test]
    fn each_shard_has_a_lease_of_its_own() {
        assert_eq!(lease_name(Some("a")), "password-rotator-a");
        assert_eq!(lease_name(None), "password-rotator");
    }

    #[test]
    fn the_message_says_who_started_the_rotation_and_how_to_let_it_finish() {
        let cluster = TargetReference {
            kind: TargetKind::ClusterRotationTarget,
            name: "rs-prod".into(),
        };
        let message = moved_message(
            "r1",
            Some("a"),
            Some("b"),
            ("shop", &cluster, "orders-rotation"),
        );
        assert_eq!(
            message,
            "rotation r1 was started by shard a; this operator (shard b) does not touch it. \
             Let it finish by labelling its target as before (kubectl label \
             clusterrotationtarget rs-prod rotator.dev/shard=a --overwrite), or, once shard a \
             runs no more, hand it over with: kubectl -n shop label secret orders-rotation \
             rotator.dev/shard=b --overwrite"
        );
        let namespaced = TargetReference {
            kind: TargetKind::RotationTarget,
            name: "rs".into(),
        };
        let message = moved_message(
            "r1",
            None,
            Some("b"),
            ("shop", &namespaced, "orders-rotation"),
        );
        assert!(
            message.starts_with("rotation r1 was started by the unsharded operator;")
                && message.contains("(kubectl -n shop label rotationtarget rs rotator.dev/shard-)"),
            "{message}"
        );
        let message = moved_message(
            "r1",
            Some("a"),
            None,
            ("shop", &namespaced, "orders-rotation"),
        );
        assert!(
            message.contains("this operator (unsharded)")
                && message.ends_with("secret orders-rotation rotator.dev/shard-"),
            "{message}"
        );
    }
}
