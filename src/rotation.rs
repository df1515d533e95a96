//! The rotation step machine: a pure function of what was observed and the time, returning
//! what to do next. No IO here; `controller.rs` observes, asks, and acts.

use std::time::Duration;

use jiff::Timestamp;

use crate::reason::Reason;
use crate::resource::{Mode, PasswordRotationStatus, PersistencePolicy, Phase, Step};
use crate::rotation_spec::RotationSpec;
use crate::schedule::Trigger;
use crate::validation::ValidSpec;

/// How long a Blocked resource waits before it tries again with unchanged credentials.
/// Longer than Redis Software's 30-minute lockout, so retries can never lock an account.
pub const BLOCKED_RETRY: Duration = Duration::from_secs(31 * 60);

/// What the state Secret (`<name>-rotation`) says, without the passwords themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSummary {
    pub rotation_id: String,
    /// The state Secret holds the password that was current before the rotation.
    pub has_previous: bool,
    /// The workload Secret says a deletion's cleanup rolled this rotation back.
    pub rolled_back: bool,
    /// The state Secret is owned by this resource (and not kept by the deletion of an
    /// earlier one of the same name).
    pub owned: bool,
    /// The rotation status named when this one was staged ("" for none); `None` in a state
    /// Secret staged before this was recorded.
    pub follows: Option<String>,
}

/// What the workload Secret holds under its password key, compared with the state Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretHolds {
    /// No password (no Secret, or no such key).
    Nothing,
    /// The new password of the rotation in flight.
    Pending,
    /// The password that was current when the rotation started.
    Previous,
    /// Some other password (or any password, when no rotation is in flight).
    Other,
}

impl SecretHolds {
    pub fn describe(self) -> &'static str {
        match self {
            SecretHolds::Nothing => "no password",
            SecretHolds::Pending => "the new password",
            SecretHolds::Previous => "the old password",
            SecretHolds::Other => "a password this rotation does not know",
        }
    }
}

/// Progress of the listed workloads onto the current rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutProgress {
    /// Every workload runs pods of the current rotation (or none are listed).
    Complete,
    /// Not yet: the names of workloads still rolling out.
    Pending(Vec<String>),
    /// Not by itself: at least one workload cannot finish (each named with why), beside any
    /// still rolling.
    CannotComplete(Vec<String>),
}

/// Why waiting for the workloads makes the resource Degraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutTrouble {
    /// Not finished within `spec.rollout.timeout`.
    TimedOut,
    /// A workload cannot finish rolling out by itself.
    CannotComplete,
}

/// Everything the decision looks at.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub now: Timestamp,
    /// `namespace/name` of the resource: fixes its share of the schedule's jitter.
    pub seed: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a RotationSpec,
    pub status: &'a PasswordRotationStatus,
    pub rotate_annotation: Option<&'a str>,
    pub state: Option<&'a StateSummary>,
    /// What the workload Secret holds under `spec.secret.passwordKey`.
    pub workload_secret: SecretHolds,
    /// The workload Secret's resourceVersion.
    pub workload_version: Option<&'a str>,
    /// Observed only while Published; `None` otherwise.
    pub rollout: Option<RolloutProgress>,
    /// Another resource that rotates the same user and came first.
    pub conflict_with: Option<String>,
    /// The credentials Secret changed since the resource was Blocked.
    pub credentials_changed_since_block: bool,
    /// At Published: how long this process has seen the rotation there, on its monotonic
    /// clock; `None` where nothing measures it (tests of other steps).
    pub seen_published_for: Option<Duration>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The spec is unusable; nothing is done until it changes.
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Another resource owns this user; nothing is done.
    Conflict { with: String },
    /// Held by `suspend: true`.
    Suspended,
    /// Blocked on credentials; look again at `retry_at`.
    StayBlocked { retry_at: Timestamp },
    /// Nothing due; the next scheduled rotation, if any.
    Idle { next_rotation: Option<Timestamp> },
    /// Start a rotation: generate a password and write the state Secret.
    Stage { trigger: Trigger },
    /// Blocked at Staged because the database refused the old password, and the workload
    /// Secret now holds another one: take that as the old password and try again.
    Restage,
    /// The state Secret exists but status does not know it (a crash right after staging).
    Adopt { rotation_id: String },
    /// The state Secret was staged from a copy of the resource that another rotation had
    /// already overtaken: nothing was added from it (an add follows only a read of the
    /// resource, after the state Secret exists, that still names the rotation it follows),
    /// so it is deleted.
    Withdraw,
    /// Add the new password beside the old one (POST).
    Add,
    /// Replace every password with the new one (PUT), `mode: Replace`; `replay` when a PUT
    /// may already have been sent for this rotation.
    Replace { replay: bool },
    /// Authenticate with the new password on `spec.verify.endpoint`.
    Verify,
    /// Write the new password into the workload Secret and restart the workloads.
    Publish,
    /// Wait for the workloads; `degraded` once the timeout has passed, or at once when a
    /// workload cannot finish by itself.
    AwaitRollout {
        pending: Vec<String>,
        degraded: Option<RolloutTrouble>,
        requeue_after: Duration,
    },
    /// The workload Secret no longer holds the new password (a GitOps sync, another
    /// controller, a person put something back): keep every password and wait.
    HoldDrifted { holds: SecretHolds },
    /// The workload Secret holds the new password again after a drift, or was written after
    /// the publish while it still holds it: pods started meanwhile may hold another password,
    /// so restart the workloads again and count the overlap anew.
    ResumeAfterDrift,
    /// Rolled out and the overlap has passed.
    MarkRolledOut,
    /// Rolled out, but a node could not persist the new password: persist again (the add,
    /// replayed) before the old password may go.
    PersistAgain,
    /// Delete the old password; `replay` when a DELETE may already have been sent.
    Retire { replay: bool },
    /// Clear the state Secret and record the rotation.
    Finish,
    /// The state Secret vanished mid-rotation: give the rotation up and say why.
    Abandon { reason: String },
    /// A deletion's cleanup rolled this rotation back: the resource as observed is a stale
    /// copy, and nothing may be published or changed from it.
    RolledBack,
    /// The state Secret is not this resource's: a resource of the same name, deleted
    /// mid-rotation, left it. Nothing is done from it; from a stale copy, read again.
    StateNotOwned,
}

pub fn decide(obs: &Observation<'_>, valid: &ValidSpec) -> Decision {
    if obs.state.is_some_and(|s| s.rolled_back) {
        return Decision::RolledBack;
    }
    if obs.state.is_some_and(|s| !s.owned) {
        return Decision::StateNotOwned;
    }
    if let Some(with) = &obs.conflict_with {
        return Decision::Conflict { with: with.clone() };
    }
    if obs.spec.suspend {
        return Decision::Suspended;
    }
    let status = obs.status;
    let in_flight = status.phase == Some(Phase::Rotating) && status.step.is_some();
    if restage_possible(obs) {
        return Decision::Restage;
    }
    if status.phase == Some(Phase::Blocked) && !unblocked(obs) {
        return Decision::StayBlocked {
            retry_at: status.blocked_time.as_ref().map_or(obs.now, |t| t.0) + BLOCKED_RETRY,
        };
    }
    let blocked = status.phase == Some(Phase::Blocked);
    match (status.step, obs.state) {
        (_, Some(state)) if status.rotation_id.as_deref() != Some(&state.rotation_id) => {
            let overtaken = state.follows.as_deref().is_some_and(|follows| {
                status.rotation_id.as_deref().unwrap_or_default() != follows
            });
            if overtaken {
                return Decision::Withdraw;
            }
            Decision::Adopt {
                rotation_id: state.rotation_id.clone(),
            }
        }
        (Some(step), Some(state)) if in_flight || blocked => next_step(obs, valid, step, state),
        // The state Secret is deleted before status records the end, so this is a leftover.
        (_, Some(_)) => Decision::Finish,
        (Some(Step::Retired), None) if in_flight || blocked => Decision::Finish,
        (Some(step), None) if in_flight || blocked => Decision::Abandon {
            reason: format!(
                "the state Secret was deleted at step {}; the new password may remain valid \
                 in the database",
                step.as_str()
            ),
        },
        (_, None) => due(obs, valid),
    }
}

/// Nothing was added yet and the only thing wrong was the old password: a workload Secret
/// that now holds another password is the fix. Never for other reasons, so that editing the
/// workload Secret cannot spend the admin's failed-login budget.
fn restage_possible(obs: &Observation<'_>) -> bool {
    let status = obs.status;
    status.phase == Some(Phase::Blocked)
        && status.step == Some(Step::Staged)
        && obs.state.is_some()
        && obs.workload_secret == SecretHolds::Other
        && status.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "False"
                && c.reason == Reason::OldPasswordRejected.as_str()
        })
}

fn unblocked(obs: &Observation<'_>) -> bool {
    let status = obs.status;
    if obs.credentials_changed_since_block || status.observed_generation != obs.generation {
        return true;
    }
    match &status.blocked_time {
        Some(since) => obs.now >= since.0 + BLOCKED_RETRY,
        None => true,
    }
}

fn next_step(
    obs: &Observation<'_>,
    valid: &ValidSpec,
    step: Step,
    state: &StateSummary,
) -> Decision {
    let mode = obs.spec.mode;
    if step >= Step::Published {
        // Never delete a password the workload Secret holds, never forget the one it should.
        if obs.workload_secret != SecretHolds::Pending {
            return Decision::HoldDrifted {
                holds: obs.workload_secret,
            };
        }
        // A write the operator did not see while it happened may have been a revert and
        // its repair: pods that started in between read the old password.
        let rewritten = step < Step::Retired
            && obs
                .status
                .published_secret_version
                .as_deref()
                .is_some_and(|published| obs.workload_version != Some(published));
        if (step == Step::Published && obs.status.drifted_time.is_some()) || rewritten {
            return Decision::ResumeAfterDrift;
        }
    }
    match step {
        Step::Staged => match mode {
            Mode::AddThenDelete => Decision::Add,
            Mode::Replace => Decision::Replace { replay: false },
        },
        Step::Replacing => Decision::Replace { replay: true },
        Step::Added if obs.spec.verify.is_some() => Decision::Verify,
        Step::Added | Step::Verified | Step::Publishing => Decision::Publish,
        Step::Published => await_rollout(obs, valid),
        Step::RolledOut | Step::Retired if mode == Mode::Replace || !state.has_previous => {
            Decision::Finish
        }
        Step::RolledOut if !persisted(obs.spec.persistence, obs.status.persistence.as_deref()) => {
            Decision::PersistAgain
        }
        Step::RolledOut => Decision::Retire { replay: false },
        Step::Retired => Decision::Retire { replay: true },
    }
}

/// The target kept the new password across restarts when it was added, where it says, or
/// the resource does not require it: a password deleted but not persisted comes back when
/// that node restarts.
pub fn persisted(policy: PersistencePolicy, persistence: Option<&str>) -> bool {
    policy == PersistencePolicy::Optional
        || !persistence.is_some_and(|p| p.starts_with(NOT_PERSISTED))
}

/// How `status.persistence` begins when a node could not persist a change.
pub const NOT_PERSISTED: &str = "NotPersisted";

fn await_rollout(obs: &Observation<'_>, valid: &ValidSpec) -> Decision {
    let (overlap, timeout) = (valid.overlap, valid.timeout);
    let published = obs
        .status
        .published_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(obs.now);
    // A clock behind the publish time (another replica's, after a failover) counts as no time
    // passed, never as time passed. A clock ahead of the one that wrote it would count too
    // much: what this process has seen itself, on its monotonic clock, bounds it.
    let by_the_clock = if obs.now > published {
        obs.now.duration_since(published).unsigned_abs()
    } else {
        Duration::ZERO
    };
    let elapsed = obs
        .seen_published_for
        .map_or(by_the_clock, |seen| seen.min(by_the_clock));
    let (pending, cannot_complete) = match &obs.rollout {
        Some(RolloutProgress::Complete) => (Vec::new(), false),
        Some(RolloutProgress::Pending(names)) => (names.clone(), false),
        Some(RolloutProgress::CannotComplete(names)) => (names.clone(), true),
        None => (vec!["(not observed)".to_owned()], false),
    };
    if pending.is_empty() && elapsed >= overlap {
        return Decision::MarkRolledOut;
    }
    // A workload that cannot finish by itself is reported at once: waiting out the timeout
    // would only delay the page.
    let degraded = if cannot_complete {
        Some(RolloutTrouble::CannotComplete)
    } else {
        (!pending.is_empty() && elapsed >= timeout).then_some(RolloutTrouble::TimedOut)
    };
    let until_overlap = overlap.saturating_sub(elapsed);
    let requeue_after = if pending.is_empty() {
        until_overlap
    } else {
        Duration::from_secs(5).min(until_overlap.max(Duration::from_secs(1)))
    };
    Decision::AwaitRollout {
        pending,
        degraded,
        requeue_after: requeue_after.max(Duration::from_millis(100)),
    }
}

fn due(obs: &Observation<'_>, valid: &ValidSpec) -> Decision {
    let status = obs.status;
    let trigger = if obs
        .spec
        .rotation_request
        .as_ref()
        .is_some_and(|token| status.handled_rotation_request.as_ref() != Some(token))
    {
        Some(Trigger::RotationRequest)
    } else if obs
        .rotate_annotation
        .is_some_and(|token| status.handled_rotate_annotation.as_deref() != Some(token))
    {
        Some(Trigger::Annotation)
    } else {
        None
    };
    let next_rotation = next_rotation(obs, valid);
    let expiring = by_expiry(
        obs.status.password_expires_time.as_ref().map(|t| t.0),
        valid,
    );
    let trigger = trigger.or(match next_rotation {
        Some(next) if obs.now >= next && expiring == Some(next) => Some(Trigger::PasswordExpiring),
        Some(next) if obs.now >= next => Some(Trigger::Schedule),
        _ => None,
    });
    match trigger {
        // The current password is the one to rotate from; without it nothing can start.
        Some(_) if obs.workload_secret == SecretHolds::Nothing => Decision::Invalid {
            field: "spec.secret",
            message: format!(
                "Secret {} has no key {}: put the current password there",
                obs.spec.secret.name, obs.spec.secret.password_key
            ),
        },
        Some(trigger) => Decision::Stage { trigger },
        None => Decision::Idle { next_rotation },
    }
}

/// The next rotation: the scheduled one, or earlier the one that keeps the password from
/// expiring in use. The scheduled time is kept from status while the spec is unchanged, so
/// that a restart never moves it; otherwise counted from the last rotation, or from now when
/// there was none (a new resource never rotates on schedule on its first reconcile).
pub fn next_rotation(obs: &Observation<'_>, valid: &ValidSpec) -> Option<Timestamp> {
    let status = obs.status;
    let expiring = by_expiry(status.password_expires_time.as_ref().map(|t| t.0), valid);
    let scheduled = valid.schedule.as_ref().and_then(|schedule| {
        if status.observed_generation == obs.generation
            && let Some(next) = &status.next_rotation_time
        {
            return Some(next.0);
        }
        let base = status
            .last_rotation_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(obs.now);
        schedule.next_after(base, obs.seed)
    });
    earliest(scheduled, expiring)
}

/// The earlier of two times that may be absent.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When a rotation must start so that a password expiring at `expires` is never in use
/// when it does: `beforeExpiry` earlier, at the window's opening if that comes in time.
pub fn by_expiry(expires: Option<Timestamp>, valid: &ValidSpec) -> Option<Timestamp> {
    let expires = expires?;
    let start = expires.checked_sub(valid.before_expiry).ok()?;
    let in_window = valid
        .schedule
        .as_ref()
        .and_then(|s| s.window.as_ref())
        .and_then(|w| w.next_open(start))
        .filter(|open| {
            open.checked_add(valid.timeout)
                .is_ok_and(|done| done < expires)
        });
    Some(in_window.unwrap_or(start))
}

/// Status step to record once `decision`'s effect is done.
pub fn step_after(decision: &Decision) -> Option<Step> {
    match decision {
        Decision::Stage { .. } | Decision::Adopt { .. } => Some(Step::Staged),
        Decision::Add | Decision::Replace { .. } => Some(Step::Added),
        Decision::Verify => Some(Step::Verified),
        Decision::Publish => Some(Step::Published),
        Decision::MarkRolledOut => Some(Step::RolledOut),
        Decision::Retire { .. } => Some(Step::Retired),
        _ => None,
    }
}

/// What deleting a resource does with the rotation its state Secret records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDeletion {
    /// Pods may have read the new password: both stay valid, the old one kept in the
    /// orphaned state Secret.
    KeepBoth,
    /// Nothing was published: undo the stage.
    RollBack,
}

/// The deletion table: once the rotation reached the publish, or the workload Secret holds
/// the new password, or was written at all since Stage (which may have been the publish,
/// changed back since), pods may run on the new password; before, none can.
pub fn on_deletion(step: Step, secret_holds_new: bool, written_since_stage: bool) -> OnDeletion {
    if step >= Step::Publishing || secret_holds_new || written_since_stage {
        OnDeletion::KeepBoth
    } else {
        OnDeletion::RollBack
    }
}

/// How a call to the target failed, in terms the step machine understands; each target maps
/// its own errors onto these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The new password is already in the list (a replayed add).
    AlreadyPresent,
    /// The password to delete is the only one left (a replayed delete).
    LastPassword,
    /// The password given as the old one is not accepted, while the admin login works.
    PasswordRejected,
    /// The admin credentials were refused (or are locked out).
    AdminUnauthorized { detail: String },
    /// The admin is not allowed to do this.
    Forbidden { detail: String },
    /// The user or database does not exist.
    NotFound { detail: String },
    /// The cluster refused the generated password; `detail` says what its policy wants.
    NotComplex { detail: String },
    /// The server's certificate is neither pinned in nor signed by `caSecret`; `detail` says
    /// what the server presented.
    TlsUntrusted { detail: String },
    /// Worth retrying: 5xx, timeouts, dropped connections.
    Transient { detail: String },
    /// Anything else.
    Other { detail: String },
}

/// What a call's outcome means for the rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The step's effect is in place.
    Done,
    /// Stop and wait for a person: phase Blocked, with this reason and message.
    Block { reason: Reason, message: String },
    /// Try again later with exponential backoff.
    Retry { reason: Reason, detail: String },
}

/// The meaning of an add (POST) result.
pub fn on_add(result: Result<(), CallFailure>) -> CallOutcome {
    match result {
        Ok(()) | Err(CallFailure::AlreadyPresent) => CallOutcome::Done,
        Err(CallFailure::PasswordRejected) => CallOutcome::Block {
            reason: Reason::OldPasswordRejected,
            message: "the database does not accept the password in the workload Secret \
                      (spec.secret); put the current password there"
                .into(),
        },
        Err(failure) => common(failure),
    }
}

/// The meaning of a replace (PUT) result, where a refused old password on a first try was
/// followed by asking whether the new one works (`pending_accepted`). On a replay a refused
/// old password means the earlier PUT landed: the new password is the only one now. The
/// first try's `Replacing` was written with a precondition, but another operator that reads
/// it replays the PUT at once and may land first: the old password gone and the new one
/// working is that replay, done. The PUT is never sent again.
pub fn on_replace(
    result: Result<(), CallFailure>,
    replay: bool,
    pending_accepted: Option<bool>,
) -> CallOutcome {
    match result {
        Err(CallFailure::PasswordRejected) if replay || pending_accepted == Some(true) => {
            CallOutcome::Done
        }
        other => on_add(other),
    }
}

/// The meaning of a delete result. `replay` is true when a DELETE may already have been
/// sent for this rotation; then a refused old password means the earlier DELETE landed.
pub fn on_delete(result: Result<(), CallFailure>, replay: bool) -> CallOutcome {
    match result {
        Ok(()) | Err(CallFailure::LastPassword) => CallOutcome::Done,
        Err(CallFailure::PasswordRejected) if replay => CallOutcome::Done,
        Err(CallFailure::PasswordRejected) => CallOutcome::Block {
            reason: Reason::OldPasswordRejected,
            message: "the old password was already refused before it was deleted; \
                      something else changed this user's passwords"
                .into(),
        },
        Err(failure) => common(failure),
    }
}

/// The meaning of a retire (DELETE) result, where a refused old password on a first try
/// was followed by asking whether the new one works (`pending_accepted`). The first try's
/// `Retired` was written with a precondition, but another operator that reads it replays the
/// DELETE at once and may land first: the old password gone and the new one working is that
/// replay, done. Anything else changed the user's passwords.
pub fn on_retire(
    result: Result<(), CallFailure>,
    replay: bool,
    pending_accepted: Option<bool>,
) -> CallOutcome {
    match result {
        Err(CallFailure::PasswordRejected) if pending_accepted == Some(true) => CallOutcome::Done,
        other => on_delete(other, replay),
    }
}

/// The meaning of a rollback (deleting the staged password when the resource is deleted).
pub fn on_rollback(result: Result<(), CallFailure>) -> CallOutcome {
    match result {
        Err(CallFailure::PasswordRejected) => CallOutcome::Done,
        other => on_delete(other, true),
    }
}

/// The meaning of a failed call that changes nothing, such as a read.
pub fn on_failure(failure: CallFailure) -> CallOutcome {
    common(failure)
}

fn common(failure: CallFailure) -> CallOutcome {
    match failure {
        CallFailure::AdminUnauthorized { detail } => CallOutcome::Block {
            reason: Reason::Unauthorized,
            message: format!(
                "the admin credentials (credentialsSecret of spec.target) were refused: \
                 {detail}; not retried until that Secret changes or {} min pass, to avoid \
                 locking the account",
                BLOCKED_RETRY.as_secs() / 60
            ),
        },
        CallFailure::Forbidden { detail } => CallOutcome::Block {
            reason: Reason::Forbidden,
            message: format!("the admin is not allowed to change this password: {detail}"),
        },
        CallFailure::NotFound { detail } => CallOutcome::Block {
            reason: Reason::TargetNotFound,
            message: format!("the user or database does not exist: {detail}"),
        },
        CallFailure::NotComplex { detail } => CallOutcome::Block {
            reason: Reason::PasswordNotComplex,
            message: format!(
                "the target refused the generated password ({detail}); raise \
                 spec.password.length, or relax the target's password policy"
            ),
        },
        CallFailure::TlsUntrusted { detail } => CallOutcome::Block {
            reason: Reason::TlsUntrusted,
            message: format!(
                "the server's certificate is not trusted by caSecret of spec.target (nor valid \
                 for its name; see tls.serverName): {detail}"
            ),
        },
        CallFailure::Transient { detail } => CallOutcome::Retry {
            reason: Reason::TargetUnavailable,
            detail,
        },
        CallFailure::Other { detail } => CallOutcome::Retry {
            reason: Reason::TargetError,
            detail,
        },
        CallFailure::AlreadyPresent | CallFailure::LastPassword | CallFailure::PasswordRejected => {
            CallOutcome::Retry {
                reason: Reason::TargetError,
                detail: format!("unexpected answer {failure:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;
    use crate::validation::validate;

    fn spec(extra: serde_json::Value) -> RotationSpec {
        let mut base = json!({
            "target": {"redisSoftware": {"url": "https://rs:9443", "credentialsSecret": "admin", "user": "app"}},
            "secret": {"name": "app-redis"},
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        RotationSpec::from_v1alpha1(base)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-06-01T12:00:00Z";

    struct Case {
        spec: RotationSpec,
        status: PasswordRotationStatus,
        annotation: Option<&'static str>,
        state: Option<StateSummary>,
        rollout: Option<RolloutProgress>,
        now: Timestamp,
        generation: i64,
        /// What the workload Secret holds; by default the new password once published.
        workload_secret: Option<SecretHolds>,
        workload_version: Option<&'static str>,
        seen_published_for: Option<Duration>,
    }

    impl Case {
        fn new(spec: RotationSpec) -> Self {
            Case {
                spec,
                status: PasswordRotationStatus::default(),
                annotation: None,
                state: None,
                rollout: None,
                now: ts(NOW),
                generation: 1,
                workload_secret: None,
                workload_version: None,
                seen_published_for: None,
            }
        }

        fn observed(mut self) -> Self {
            self.status.observed_generation = Some(self.generation);
            self.status.phase = Some(Phase::Idle);
            self
        }

        fn in_flight(mut self, step: Step) -> Self {
            self.status.phase = Some(Phase::Rotating);
            self.status.step = Some(step);
            self.status.rotation_id = Some("r1".into());
            self.status.observed_generation = Some(self.generation);
            self.state = Some(StateSummary {
                rotation_id: "r1".into(),
                has_previous: true,
                rolled_back: false,
                owned: true,
                follows: Some(String::new()),
            });
            self
        }

        fn decide(&self) -> Decision {
            let obs = Observation {
                now: self.now,
                seed: "shop/orders-cache",
                generation: Some(self.generation),
                spec: &self.spec,
                status: &self.status,
                rotate_annotation: self.annotation,
                state: self.state.as_ref(),
                workload_secret: self.workload_secret.unwrap_or(
                    if self.state.is_some() && self.status.step >= Some(Step::Published) {
                        SecretHolds::Pending
                    } else {
                        SecretHolds::Other
                    },
                ),
                workload_version: self.workload_version,
                rollout: self.rollout.clone(),
                conflict_with: None,
                credentials_changed_since_block: false,
                seen_published_for: self.seen_published_for,
            };
            decide(&obs, &validate(&self.spec, "ns").unwrap())
        }
    }

    #[test]
    fn a_deletion_rolls_back_only_what_no_pod_can_have_read() {
        use OnDeletion::{KeepBoth, RollBack};
        for step in [Step::Staged, Step::Replacing, Step::Added, Step::Verified] {
            assert_eq!(on_deletion(step, false, false), RollBack, "{step:?}");
            assert_eq!(
                on_deletion(step, true, false),
                KeepBoth,
                "{step:?}: holds it"
            );
            assert_eq!(
                on_deletion(step, false, true),
                KeepBoth,
                "{step:?}: written"
            );
        }
        for step in [
            Step::Publishing,
            Step::Published,
            Step::RolledOut,
            Step::Retired,
        ] {
            assert_eq!(on_deletion(step, false, false), KeepBoth, "{step:?}");
        }
    }

    #[test]
    fn a_new_resource_without_a_request_never_rotates() {
        assert_eq!(
            Case::new(spec(json!({}))).decide(),
            Decision::Idle {
                next_rotation: None
            }
        );
    }

    #[test]
    fn a_new_scheduled_resource_waits_a_full_interval() {
        let case = Case::new(spec(json!({"schedule": {"every": "24h"}})));
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: Some(ts("2026-06-02T12:00:00Z"))
            }
        );
    }

    #[test]
    fn a_password_about_to_expire_rotates_before_it_does() {
        // NOW is 2026-06-01T12:00:00Z; the password expires in two days, within the 72h.
        let mut case = Case::new(spec(json!({"schedule": {"every": "720h"}}))).observed();
        case.status.password_expires_time = Some(Time(ts("2026-06-03T12:00:00Z")));
        assert_eq!(
            case.decide(),
            Decision::Stage {
                trigger: Trigger::PasswordExpiring
            }
        );
        // Further off, the next rotation is the earlier of schedule and expiry.
        case.status.password_expires_time = Some(Time(ts("2026-06-20T12:00:00Z")));
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: Some(ts("2026-06-17T12:00:00Z"))
            }
        );
        // Without a schedule too, and a window that opens in time is used.
        let mut case = Case::new(spec(json!({"schedule": {
            "beforeExpiry": "24h",
            "cron": "0 0 1 1 *",
            "window": {"hours": "02:00-04:00"},
        }})))
        .observed();
        case.status.password_expires_time = Some(Time(ts("2026-06-20T12:00:00Z")));
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: Some(ts("2026-06-20T02:00:00Z"))
            }
        );
        let mut unscheduled = Case::new(spec(json!({}))).observed();
        unscheduled.status.password_expires_time = Some(Time(ts("2026-06-02T00:00:00Z")));
        assert_eq!(
            unscheduled.decide(),
            Decision::Stage {
                trigger: Trigger::PasswordExpiring
            }
        );
    }

    #[test]
    fn a_restart_keeps_the_recorded_next_rotation() {
        let mut case = Case::new(spec(json!({"schedule": {"every": "24h"}}))).observed();
        case.status.next_rotation_time = Some(Time(ts("2026-06-01T18:00:00Z")));
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: Some(ts("2026-06-01T18:00:00Z"))
            }
        );
        case.now = ts("2026-06-01T18:00:00Z");
        assert_eq!(
            case.decide(),
            Decision::Stage {
                trigger: Trigger::Schedule
            }
        );
    }

    #[test]
    fn a_changed_schedule_counts_from_the_last_rotation() {
        let mut case = Case::new(spec(json!({"schedule": {"every": "2h"}}))).observed();
        case.status.observed_generation = Some(0);
        case.status.next_rotation_time = Some(Time(ts("2026-06-30T00:00:00Z")));
        case.status.last_rotation_time = Some(Time(ts("2026-06-01T11:00:00Z")));
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: Some(ts("2026-06-01T13:00:00Z"))
            }
        );
    }

    #[test]
    fn cron_schedules_rotate_when_due() {
        let mut case = Case::new(spec(json!({"schedule": {"cron": "0 3 * * *"}}))).observed();
        case.status.next_rotation_time = Some(Time(ts("2026-06-01T03:00:00Z")));
        assert_eq!(
            case.decide(),
            Decision::Stage {
                trigger: Trigger::Schedule
            }
        );
    }

    #[test]
    fn a_new_request_token_starts_exactly_one_rotation() {
        let mut case = Case::new(spec(json!({"rotationRequest": "t1"}))).observed();
        assert_eq!(
            case.decide(),
            Decision::Stage {
                trigger: Trigger::RotationRequest
            }
        );
        case.status.handled_rotation_request = Some("t1".into());
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: None
            }
        );
    }

    #[test]
    fn a_new_annotation_token_starts_a_rotation() {
        let mut case = Case::new(spec(json!({}))).observed();
        case.annotation = Some("now");
        assert_eq!(
            case.decide(),
            Decision::Stage {
                trigger: Trigger::Annotation
            }
        );
        case.status.handled_rotate_annotation = Some("now".into());
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: None
            }
        );
    }

    #[test]
    fn a_due_rotation_without_the_current_password_names_the_secret() {
        let mut case = Case::new(spec(json!({"rotationRequest": "t1"}))).observed();
        case.workload_secret = Some(SecretHolds::Nothing);
        match case.decide() {
            Decision::Invalid { field, message } => {
                assert_eq!(field, "spec.secret");
                assert!(message.contains("app-redis"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        case.spec.rotation_request = None;
        assert_eq!(
            case.decide(),
            Decision::Idle {
                next_rotation: None
            }
        );
    }

    #[test]
    fn suspend_holds_everything() {
        let mut case = Case::new(spec(json!({"suspend": true, "rotationRequest": "t1"})));
        assert_eq!(case.decide(), Decision::Suspended);
        case = case.in_flight(Step::Added);
        assert_eq!(case.decide(), Decision::Suspended);
    }

    #[test]
    fn add_then_delete_walks_every_step() {
        let mut case = Case::new(spec(json!({"rollout": {"overlap": "0s"}})));
        let expected = [
            (Step::Staged, Decision::Add),
            (Step::Added, Decision::Publish),
            (Step::Published, Decision::MarkRolledOut),
            (Step::RolledOut, Decision::Retire { replay: false }),
            (Step::Retired, Decision::Retire { replay: true }),
        ];
        for (step, decision) in expected {
            case = case.in_flight(step);
            case.status.published_time = Some(Time(case.now));
            case.rollout = Some(RolloutProgress::Complete);
            assert_eq!(case.decide(), decision, "at {step:?}");
        }
    }

    #[test]
    fn a_change_a_node_could_not_persist_holds_before_retire_unless_optional() {
        let mut case = Case::new(spec(json!({}))).in_flight(Step::RolledOut);
        case.status.persistence = Some("NotPersisted: ERR no config file".into());
        assert_eq!(case.decide(), Decision::PersistAgain);
        case.status.persistence = Some("AclFile".into());
        assert_eq!(case.decide(), Decision::Retire { replay: false });
        case.status.persistence = Some("NotPersisted: ERR no config file".into());
        case.spec.persistence = PersistencePolicy::Optional;
        assert_eq!(case.decide(), Decision::Retire { replay: false });
    }

    #[test]
    fn verify_runs_between_added_and_published() {
        let case =
            Case::new(spec(json!({"verify": {"endpoint": "db:6379"}}))).in_flight(Step::Added);
        assert_eq!(case.decide(), Decision::Verify);
        let case = case.in_flight(Step::Verified);
        assert_eq!(case.decide(), Decision::Publish);
    }

    #[test]
    fn replace_mode_puts_and_never_deletes() {
        let case = Case::new(spec(json!({"mode": "Replace"}))).in_flight(Step::Staged);
        assert_eq!(case.decide(), Decision::Replace { replay: false });
        let case = case.in_flight(Step::Replacing);
        assert_eq!(case.decide(), Decision::Replace { replay: true });
        assert_eq!(case.in_flight(Step::RolledOut).decide(), Decision::Finish);
    }

    #[test]
    fn the_old_password_outlives_the_overlap() {
        let mut case = Case::new(spec(
            json!({"rollout": {"overlap": "5m", "timeout": "30m"}}),
        ))
        .in_flight(Step::Published);
        case.status.published_time = Some(Time(ts("2026-06-01T11:58:00Z")));
        case.rollout = Some(RolloutProgress::Complete);
        assert_eq!(
            case.decide(),
            Decision::AwaitRollout {
                pending: vec![],
                degraded: None,
                requeue_after: Duration::from_secs(180)
            }
        );
        case.now = ts("2026-06-01T12:03:00Z");
        assert_eq!(case.decide(), Decision::MarkRolledOut);
    }

    #[test]
    fn a_rollout_past_its_timeout_is_degraded_and_keeps_waiting() {
        let mut case = Case::new(spec(
            json!({"rollout": {"overlap": "0s", "timeout": "10m"}}),
        ))
        .in_flight(Step::Published);
        case.status.published_time = Some(Time(ts("2026-06-01T11:00:00Z")));
        case.rollout = Some(RolloutProgress::Pending(vec!["Deployment/app".into()]));
        match case.decide() {
            Decision::AwaitRollout {
                pending, degraded, ..
            } => {
                assert_eq!(pending, vec!["Deployment/app".to_owned()]);
                assert_eq!(degraded, Some(RolloutTrouble::TimedOut));
            }
            other => panic!("expected to keep waiting, got {other:?}"),
        }
    }

    #[test]
    fn a_rollout_that_cannot_complete_is_degraded_at_once_and_keeps_both_passwords() {
        let mut case = Case::new(spec(
            json!({"rollout": {"overlap": "0s", "timeout": "30m"}}),
        ))
        .in_flight(Step::Published);
        case.status.published_time = Some(Time(ts("2026-06-01T11:59:00Z")));
        let paused = "Deployment/app is paused".to_owned();
        case.rollout = Some(RolloutProgress::CannotComplete(vec![paused.clone()]));
        match case.decide() {
            Decision::AwaitRollout {
                pending, degraded, ..
            } => {
                assert_eq!(pending, vec![paused]);
                assert_eq!(degraded, Some(RolloutTrouble::CannotComplete));
            }
            other => panic!("expected to keep waiting, got {other:?}"),
        }
    }

    #[test]
    fn an_unobserved_rollout_is_never_taken_as_done() {
        let mut case =
            Case::new(spec(json!({"rollout": {"overlap": "0s"}}))).in_flight(Step::Published);
        case.status.published_time = Some(Time(ts("2026-06-01T11:00:00Z")));
        assert!(matches!(case.decide(), Decision::AwaitRollout { .. }));
    }

    #[test]
    fn a_staged_state_unknown_to_status_is_adopted() {
        let mut case = Case::new(spec(json!({"rotationRequest": "t"}))).observed();
        let adopt = Decision::Adopt {
            rotation_id: "r9".into(),
        };
        // Staged after no rotation, and before `follows` was recorded.
        for follows in [Some(String::new()), None] {
            case.state = Some(StateSummary {
                rotation_id: "r9".into(),
                has_previous: true,
                rolled_back: false,
                owned: true,
                follows,
            });
            assert_eq!(case.decide(), adopt);
        }
        case.status.rotation_id = Some("r8".into());
        case.state.as_mut().expect("staged").follows = Some("r8".into());
        assert_eq!(case.decide(), adopt);
    }

    #[test]
    fn a_state_staged_before_another_rotation_was_recorded_is_withdrawn() {
        let mut case = Case::new(spec(json!({"rotationRequest": "t"}))).observed();
        case.status.rotation_id = Some("r8".into());
        case.state = Some(StateSummary {
            rotation_id: "r9".into(),
            has_previous: true,
            rolled_back: false,
            owned: true,
            follows: Some("r7".into()),
        });
        assert_eq!(case.decide(), Decision::Withdraw);
        case.state.as_mut().expect("staged").follows = Some(String::new());
        assert_eq!(case.decide(), Decision::Withdraw);
        // Once its own rotation is recorded, it is stepped on as any other.
        case.status.rotation_id = Some("r9".into());
        assert_ne!(case.decide(), Decision::Withdraw);
    }

    #[test]
    fn a_rotation_a_deletion_rolled_back_is_never_stepped_on_from_a_stale_copy() {
        for step in [Step::Staged, Step::Added, Step::Verified] {
            let mut case = Case::new(spec(json!({"rotationRequest": "t"}))).in_flight(step);
            assert_ne!(case.decide(), Decision::RolledBack, "{step:?}");
            case.state.as_mut().expect("in flight").rolled_back = true;
            assert_eq!(case.decide(), Decision::RolledBack, "{step:?}");
        }
    }

    #[test]
    fn a_state_secret_a_deletion_left_to_a_new_resource_of_its_name_is_never_acted_on() {
        let mut case = Case::new(spec(json!({"rotationRequest": "t"}))).observed();
        case.state = Some(StateSummary {
            rotation_id: "r9".into(),
            has_previous: true,
            rolled_back: false,
            owned: false,
            follows: None,
        });
        assert_eq!(case.decide(), Decision::StateNotOwned);
        for step in [Step::Staged, Step::Published, Step::Retired] {
            let mut case = Case::new(spec(json!({"rotationRequest": "t"}))).in_flight(step);
            case.state.as_mut().expect("in flight").owned = false;
            assert_eq!(case.decide(), Decision::StateNotOwned, "{step:?}");
        }
    }

    #[test]
    fn a_leftover_state_of_a_finished_rotation_is_cleared() {
        let mut case = Case::new(spec(json!({}))).in_flight(Step::Retired);
        case.status.phase = Some(Phase::Idle);
        case.status.step = None;
        assert_eq!(case.decide(), Decision::Finish);
    }

    #[test]
    fn retired_without_state_finishes_and_earlier_steps_abandon() {
        let mut case = Case::new(spec(json!({}))).in_flight(Step::Retired);
        case.state = None;
        assert_eq!(case.decide(), Decision::Finish);
        let mut case = Case::new(spec(json!({}))).in_flight(Step::Added);
        case.state = None;
        assert!(matches!(case.decide(), Decision::Abandon { .. }));
    }

    #[test]
    fn blocked_waits_longer_than_a_lockout_unless_credentials_change() {
        let mut case = Case::new(spec(json!({}))).in_flight(Step::Staged);
        case.status.phase = Some(Phase::Blocked);
        case.status.blocked_time = Some(Time(case.now));
        assert_eq!(
            case.decide(),
            Decision::StayBlocked {
                retry_at: case.now + BLOCKED_RETRY
            }
        );
        case.now += BLOCKED_RETRY;
        assert_eq!(case.decide(), Decision::Add);
    }

    #[test]
    fn add_outcomes() {
        assert_eq!(on_add(Ok(())), CallOutcome::Done);
        assert_eq!(on_add(Err(CallFailure::AlreadyPresent)), CallOutcome::Done);
        assert!(matches!(
            on_add(Err(CallFailure::PasswordRejected)),
            CallOutcome::Block {
                reason: Reason::OldPasswordRejected,
                ..
            }
        ));
        assert!(matches!(
            on_add(Err(CallFailure::AdminUnauthorized {
                detail: "401".into()
            })),
            CallOutcome::Block {
                reason: Reason::Unauthorized,
                ..
            }
        ));
        assert!(matches!(
            on_add(Err(CallFailure::Transient {
                detail: "503".into()
            })),
            CallOutcome::Retry { .. }
        ));
        assert!(matches!(
            on_add(Err(CallFailure::NotFound {
                detail: "404".into()
            })),
            CallOutcome::Block {
                reason: Reason::TargetNotFound,
                ..
            }
        ));
        assert!(matches!(
            on_add(Err(CallFailure::NotComplex {
                detail: "too short".into()
            })),
            CallOutcome::Block {
                reason: Reason::PasswordNotComplex,
                ..
            }
        ));
    }

    #[test]
    fn delete_outcomes_know_a_replay() {
        assert_eq!(on_delete(Ok(()), false), CallOutcome::Done);
        assert_eq!(
            on_delete(Err(CallFailure::LastPassword), false),
            CallOutcome::Done
        );
        assert_eq!(
            on_delete(Err(CallFailure::PasswordRejected), true),
            CallOutcome::Done
        );
        assert!(matches!(
            on_delete(Err(CallFailure::PasswordRejected), false),
            CallOutcome::Block { .. }
        ));
        assert!(matches!(
            on_delete(
                Err(CallFailure::Transient {
                    detail: "timeout".into()
                }),
                true
            ),
            CallOutcome::Retry { .. }
        ));
        assert_eq!(
            on_rollback(Err(CallFailure::PasswordRejected)),
            CallOutcome::Done
        );
    }

    #[test]
    fn an_old_password_gone_on_a_first_retire_is_done_only_when_the_new_one_works() {
        let rejected = || Err(CallFailure::PasswordRejected);
        assert_eq!(on_retire(rejected(), false, Some(true)), CallOutcome::Done);
        for unknown in [Some(false), None] {
            assert!(matches!(
                on_retire(rejected(), false, unknown),
                CallOutcome::Block {
                    reason: Reason::OldPasswordRejected,
                    ..
                }
            ));
        }
        assert_eq!(on_retire(rejected(), true, None), CallOutcome::Done);
        assert_eq!(on_retire(Ok(()), false, None), CallOutcome::Done);
    }

    #[test]
    fn step_after_each_effect() {
        assert_eq!(step_after(&Decision::Add), Some(Step::Added));
        assert_eq!(
            step_after(&Decision::Replace { replay: true }),
            Some(Step::Added)
        );
        assert_eq!(
            step_after(&Decision::Retire { replay: true }),
            Some(Step::Retired)
        );
        assert_eq!(step_after(&Decision::Finish), None);
    }

    #[test]
    fn a_clock_behind_the_publish_time_never_shortens_the_overlap() {
        let mut case = Case::new(spec(
            json!({"rollout": {"overlap": "5m", "timeout": "30m"}}),
        ))
        .in_flight(Step::Published);
        case.status.published_time = Some(Time(ts("2026-06-01T12:10:00Z")));
        case.rollout = Some(RolloutProgress::Complete);
        assert!(
            matches!(case.decide(), Decision::AwaitRollout { requeue_after, .. }
                if requeue_after == Duration::from_secs(300)),
            "{:?}",
            case.decide()
        );
    }

    #[test]
    fn a_clock_ahead_of_the_one_that_published_never_shortens_the_overlap() {
        let mut case = Case::new(spec(
            json!({"rollout": {"overlap": "5m", "timeout": "30m"}}),
        ))
        .in_flight(Step::Published);
        // Published an hour ago by this clock, seen at Published for one minute.
        case.status.published_time = Some(Time(ts("2026-06-01T11:00:00Z")));
        case.rollout = Some(RolloutProgress::Complete);
        case.seen_published_for = Some(Duration::from_secs(60));
        assert!(
            matches!(case.decide(), Decision::AwaitRollout { requeue_after, .. }
                if requeue_after == Duration::from_secs(240)),
            "{:?}",
            case.decide()
        );
        case.seen_published_for = Some(Duration::from_secs(300));
        assert_eq!(case.decide(), Decision::MarkRolledOut);
    }

    #[test]
    fn a_drifted_secret_holds_every_step_from_published_on() {
        for step in [Step::Published, Step::RolledOut, Step::Retired] {
            for holds in [
                SecretHolds::Previous,
                SecretHolds::Other,
                SecretHolds::Nothing,
            ] {
                let mut case =
                    Case::new(spec(json!({"rollout": {"overlap": "0s"}}))).in_flight(step);
                case.status.published_time = Some(Time(ts("2026-06-01T11:00:00Z")));
                case.rollout = Some(RolloutProgress::Complete);
                case.workload_secret = Some(holds);
                assert_eq!(
                    case.decide(),
                    Decision::HoldDrifted { holds },
                    "at {step:?}"
                );
            }
        }
        let mut case = Case::new(spec(json!({"mode": "Replace"}))).in_flight(Step::RolledOut);
        case.workload_secret = Some(SecretHolds::Previous);
        assert!(
            matches!(case.decide(), Decision::HoldDrifted { .. }),
            "nor finishes"
        );
    }

    #[test]
    fn a_healed_drift_restarts_the_rollout() {
        let mut case = Case::new(spec(json!({}))).in_flight(Step::Published);
        case.status.drifted_time = Some(Time(ts("2026-06-01T11:59:00Z")));
        assert_eq!(case.decide(), Decision::ResumeAfterDrift);
    }

    #[test]
    fn a_secret_written_after_the_publish_restarts_the_rollout_until_retire() {
        for (step, rewritten) in [
            (Step::Published, Decision::ResumeAfterDrift),
            (Step::RolledOut, Decision::ResumeAfterDrift),
            (Step::Retired, Decision::Retire { replay: true }),
        ] {
            let mut case = Case::new(spec(json!({"rollout": {"overlap": "0s"}}))).in_flight(step);
            case.status.published_time = Some(Time(ts("2026-06-01T11:00:00Z")));
            case.status.published_secret_version = Some("41".into());
            case.rollout = Some(RolloutProgress::Complete);
            case.workload_version = Some("41");
            assert_ne!(case.decide(), Decision::ResumeAfterDrift, "at {step:?}");
            case.workload_version = Some("57");
            assert_eq!(case.decide(), rewritten, "at {step:?}");
        }
    }

    #[test]
    fn a_fixed_workload_secret_restages_a_rotation_blocked_on_the_old_password() {
        let mut case = Case::new(spec(json!({}))).in_flight(Step::Staged);
        case.status.phase = Some(Phase::Blocked);
        case.status.blocked_time = Some(Time(case.now));
        case.status
            .conditions
            .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Reason::OldPasswordRejected.as_str().into(),
                message: String::new(),
                last_transition_time: Time(case.now),
                observed_generation: Some(1),
            });
        case.workload_secret = Some(SecretHolds::Previous);
        assert!(matches!(case.decide(), Decision::StayBlocked { .. }));
        case.workload_secret = Some(SecretHolds::Other);
        assert_eq!(case.decide(), Decision::Restage);
        case.status.conditions[0].reason = "Unauthorized".into();
        assert!(
            matches!(case.decide(), Decision::StayBlocked { .. }),
            "a wrong admin is not retried because the workload Secret changed"
        );
    }

    #[test]
    fn a_replayed_put_whose_old_password_is_refused_landed() {
        assert_eq!(
            on_replace(Err(CallFailure::PasswordRejected), true, None),
            CallOutcome::Done
        );
        assert_eq!(
            on_replace(Err(CallFailure::PasswordRejected), false, Some(true)),
            CallOutcome::Done,
            "another actor's replay landed first"
        );
        for accepted in [Some(false), None] {
            assert!(matches!(
                on_replace(Err(CallFailure::PasswordRejected), false, accepted),
                CallOutcome::Block {
                    reason: Reason::OldPasswordRejected,
                    ..
                }
            ));
        }
    }
}
