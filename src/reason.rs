//! Every reason the operator gives, one name per situation: the reasons of its conditions and
//! Events, and the `kind` label of `reconcile_errors_total`. The README's "Conditions and
//! troubleshooting" table has a row for each (a test checks it). The reasons of `Progressing`
//! are the steps themselves ([`crate::resource::Step`]).

/// Why a resource is as it is, or what just happened to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `Ready=True`: waiting for the next rotation.
    Idle,
    /// A target's `Ready=True`: its admin login was accepted and its certificate trusted.
    Connected,
    /// `Ready=True`: the last rotation finished.
    Rotated,
    /// `Ready=True`: a rotation is in flight.
    Rotating,
    /// `Ready=True`: `spec.suspend` is true.
    Suspended,
    /// `Ready=False`: a field is wrong; the message names it.
    InvalidSpec,
    /// `Ready=False`: the target `spec.target.ref` names does not exist (or this operator
    /// serves no ClusterRotationTarget).
    TargetMissing,
    /// `Ready=False`: the target's policy (`spec.allow`) does not allow this resource; the
    /// message names the rule.
    TargetNotAllowed,
    /// `Ready=False`: the workload Secret does not allow this resource.
    SecretNotAllowed,
    /// `Ready=False`: a referenced Secret, or a key of it, is missing.
    SecretMissing,
    /// `Ready=False`: another resource rotates the same password list.
    Conflict,
    /// `Ready=False`: the rotation in flight was staged by another shard's operator.
    ShardMoved,
    /// `Ready=False`: no operator of the shard its target is labelled with acts on it.
    ShardUnserved,
    /// `Ready=False`: the state Secret of this resource's name belongs to no resource or to
    /// another one (kept by the deletion of an earlier resource of this name).
    StateSecretNotOwned,
    /// Blocked: the admin login was refused.
    Unauthorized,
    /// Blocked: the target refuses the password in the workload Secret.
    OldPasswordRejected,
    /// Blocked: the server's certificate is not trusted.
    TlsUntrusted,
    /// Blocked: the admin may not change this password.
    Forbidden,
    /// Blocked: the user, database or account does not exist.
    TargetNotFound,
    /// Blocked: the target's policy refused the generated password.
    PasswordNotComplex,
    /// `Degraded=False`.
    AsExpected,
    /// `Degraded=True`: a workload did not roll out within `rollout.timeout`.
    RolloutTimeout,
    /// `Degraded=True`: a workload cannot finish rolling out by itself (a paused Deployment, a
    /// StatefulSet or DaemonSet with `OnDelete`, a StatefulSet partition).
    RolloutCannotComplete,
    /// `Degraded=True`: the workload Secret stopped holding the new password.
    SecretDrifted,
    /// `Degraded=True`: a node could not persist the new password; the old one is kept.
    NotPersisted,
    /// `Degraded=True`: the state Secret was deleted mid-rotation.
    StateLost,
    /// `SpecChangePending=True`: spec fields changed while a rotation is in flight.
    RotationInFlight,
    /// `SpecChangePending=False`: the changed fields apply now.
    Applied,
    /// Event: a rotation started; its steps show in the `Progressing` condition.
    Started,
    /// Event: the rotation starts again from the password the workload Secret holds now.
    Restaged,
    /// Event: the workload Secret holds the new password again after a drift.
    SecretRestored,
    /// Event: the state Secret was lost; the rotation is given up.
    Abandoned,
    /// Event: a node lacked the published password while the workloads rolled out, and got
    /// it back.
    NodeHealed,
    /// Event: the new password did not pass `AUTH` on `verify.endpoint`.
    VerifyFailed,
    /// Event, retried: the target answered 5xx, timed out or dropped the connection.
    TargetUnavailable,
    /// Event, retried: the target answered something unexpected.
    TargetError,
    /// Event: deleted before publishing; the staged password was removed.
    RolledBack,
    /// Event: deleted before publishing, and the removal of the staged password failed.
    RollbackFailed,
    /// Event: deleted after publishing, or while the rollback could not be done; both passwords
    /// stay valid.
    LeftBothValid,
}

impl Reason {
    pub const ALL: &[Reason] = &[
        Reason::Idle,
        Reason::Connected,
        Reason::Rotated,
        Reason::Rotating,
        Reason::Suspended,
        Reason::InvalidSpec,
        Reason::TargetMissing,
        Reason::TargetNotAllowed,
        Reason::SecretNotAllowed,
        Reason::SecretMissing,
        Reason::Conflict,
        Reason::ShardMoved,
        Reason::ShardUnserved,
        Reason::StateSecretNotOwned,
        Reason::Unauthorized,
        Reason::OldPasswordRejected,
        Reason::TlsUntrusted,
        Reason::Forbidden,
        Reason::TargetNotFound,
        Reason::PasswordNotComplex,
        Reason::AsExpected,
        Reason::RolloutTimeout,
        Reason::RolloutCannotComplete,
        Reason::SecretDrifted,
        Reason::NotPersisted,
        Reason::StateLost,
        Reason::RotationInFlight,
        Reason::Applied,
        Reason::Started,
        Reason::Restaged,
        Reason::SecretRestored,
        Reason::Abandoned,
        Reason::NodeHealed,
        Reason::VerifyFailed,
        Reason::TargetUnavailable,
        Reason::TargetError,
        Reason::RolledBack,
        Reason::RollbackFailed,
        Reason::LeftBothValid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Idle => "Idle",
            Reason::Connected => "Connected",
            Reason::Rotated => "Rotated",
            Reason::Rotating => "Rotating",
            Reason::Suspended => "Suspended",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::TargetMissing => "TargetMissing",
            Reason::TargetNotAllowed => "TargetNotAllowed",
            Reason::SecretNotAllowed => "SecretNotAllowed",
            Reason::SecretMissing => "SecretMissing",
            Reason::Conflict => "Conflict",
            Reason::ShardMoved => "ShardMoved",
            Reason::ShardUnserved => "ShardUnserved",
            Reason::StateSecretNotOwned => "StateSecretNotOwned",
            Reason::Unauthorized => "Unauthorized",
            Reason::OldPasswordRejected => "OldPasswordRejected",
            Reason::TlsUntrusted => "TlsUntrusted",
            Reason::Forbidden => "Forbidden",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::PasswordNotComplex => "PasswordNotComplex",
            Reason::AsExpected => "AsExpected",
            Reason::RolloutTimeout => "RolloutTimeout",
            Reason::RolloutCannotComplete => "RolloutCannotComplete",
            Reason::SecretDrifted => "SecretDrifted",
            Reason::NotPersisted => "NotPersisted",
            Reason::StateLost => "StateLost",
            Reason::RotationInFlight => "RotationInFlight",
            Reason::Applied => "Applied",
            Reason::Started => "Started",
            Reason::Restaged => "Restaged",
            Reason::SecretRestored => "SecretRestored",
            Reason::Abandoned => "Abandoned",
            Reason::NodeHealed => "NodeHealed",
            Reason::VerifyFailed => "VerifyFailed",
            Reason::TargetUnavailable => "TargetUnavailable",
            Reason::TargetError => "TargetError",
            Reason::RolledBack => "RolledBack",
            Reason::RollbackFailed => "RollbackFailed",
            Reason::LeftBothValid => "LeftBothValid",
        }
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_reason_is_listed_once_and_named_as_it_is_spelled() {
        let names: HashSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            assert_eq!(format!("{reason:?}"), reason.as_str());
        }
    }

    #[test]
    fn the_readme_explains_every_reason() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Conditions and troubleshooting")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has the troubleshooting section");
        for reason in Reason::ALL {
            assert!(
                table.contains(&format!("`{reason}`")),
                "the troubleshooting table does not explain {reason}"
            );
        }
    }
}
