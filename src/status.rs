//! What the status becomes: a pure function of the status as it is, what just happened, and
//! the time. The controller writes what [`after`] returns; the tests here need no IO.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::reason::Reason;
use crate::resource::{PasswordRotationStatus, Phase, Step};
use crate::schedule::Trigger;

/// What just happened to a resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<'a> {
    /// `spec.suspend` is true: nothing is done.
    Suspended,
    /// A rotation started: its state Secret is written.
    Began {
        rotation_id: &'a str,
        trigger: Trigger,
        handled_request: Option<&'a str>,
        handled_annotation: Option<&'a str>,
    },
    /// The rotation starts again from the password the workload Secret holds now.
    Restaged,
    /// A step's effect is done (or, for `Replacing` and `Retired`, about to be sent).
    Stepped(Step),
    /// The workloads did not roll out within the timeout (`RolloutTimeout`), or one cannot
    /// finish by itself (`RolloutCannotComplete`).
    RolloutStuck { reason: Reason, message: &'a str },
    /// The workload Secret stopped holding the new password.
    Drifted { message: &'a str },
    /// It holds the new password again (or was written since it did): the workloads restart
    /// once more, from the Secret at `secret_version`.
    DriftHealed { secret_version: Option<&'a str> },
    /// The state Secret was lost: the rotation is given up.
    Abandoned {
        message: &'a str,
        next_rotation: Option<Timestamp>,
    },
    /// The rotation is over: the old password is gone. `password_expires` is what the target
    /// says of the new one, when it was asked.
    Finished {
        next_rotation: Option<Timestamp>,
        password_expires: Option<Option<Timestamp>>,
    },
    /// The target said when the password in use expires.
    ExpiryChecked {
        password_expires: Option<Timestamp>,
        next_rotation: Option<Timestamp>,
    },
    /// Nothing to do until the next rotation.
    Idle { next_rotation: Option<Timestamp> },
    /// A person must act: a refused login, certificate, password or permission.
    Blocked {
        reason: Reason,
        message: &'a str,
        credentials: &'a str,
        /// The admin account whose budget every resource using it shares, for `Unauthorized`.
        account: &'a str,
    },
    /// The spec or a Secret it names is not usable as it is.
    NotReady { reason: Reason, message: &'a str },
    /// The resource is back in the shard whose operator staged its rotation in flight: what
    /// another shard's operator reported (`ShardMoved`, `ShardUnserved`) no longer holds.
    ShardReturned,
}

/// The status after `outcome` at `now`, for a resource at `generation`.
pub fn after(
    status: &PasswordRotationStatus,
    outcome: Outcome<'_>,
    generation: Option<i64>,
    now: Timestamp,
) -> PasswordRotationStatus {
    let mut status = status.clone();
    match outcome {
        Outcome::Suspended => {
            status.observed_generation = generation;
            set_condition(
                &mut status,
                "Ready",
                true,
                Reason::Suspended,
                "spec.suspend is true; nothing is done",
                now,
            );
        }
        Outcome::Began {
            rotation_id,
            trigger,
            handled_request,
            handled_annotation,
        } => {
            status.phase = Some(Phase::Rotating);
            status.step = Some(Step::Staged);
            status.rotation_id = Some(rotation_id.to_owned());
            status.trigger = Some(trigger.as_str().into());
            status.step_time = Some(Time(now));
            status.published_time = None;
            status.published_secret_version = None;
            status.handled_rotation_request = handled_request.map(str::to_owned);
            status.handled_rotate_annotation = handled_annotation.map(str::to_owned);
            status.observed_generation = generation;
            set_condition(
                &mut status,
                "Progressing",
                true,
                Step::Staged.as_str(),
                step_message(Step::Staged),
                now,
            );
            set_condition(&mut status, "Degraded", false, Reason::AsExpected, "", now);
        }
        Outcome::Restaged => mark_rotating(&mut status, now),
        Outcome::Stepped(Step::Replacing) => {
            status.step = Some(Step::Replacing);
        }
        Outcome::Stepped(Step::Retired) => {
            status.step = Some(Step::Retired);
            status.step_time = Some(Time(now));
        }
        Outcome::Stepped(step) => {
            mark_rotating(&mut status, now);
            status.step = Some(step);
            status.step_time = Some(Time(now));
            set_condition(
                &mut status,
                "Progressing",
                true,
                step.as_str(),
                step_message(step),
                now,
            );
            if step == Step::RolledOut {
                set_condition(&mut status, "Degraded", false, Reason::AsExpected, "", now);
            }
        }
        Outcome::RolloutStuck { reason, message } => {
            set_condition(&mut status, "Degraded", true, reason, message, now);
        }
        Outcome::Drifted { message } => {
            status.drifted_time.get_or_insert(Time(now));
            set_condition(
                &mut status,
                "Degraded",
                true,
                Reason::SecretDrifted,
                message,
                now,
            );
        }
        Outcome::DriftHealed { secret_version } => {
            // Marked rolled out on pods that may hold another password: they roll again.
            status.step = Some(Step::Published);
            status.published_secret_version = secret_version.map(str::to_owned);
            status.drifted_time = None;
            status.rollout_round = Some(status.rollout_round.unwrap_or(1) + 1);
            status.published_time = Some(Time(ceil_to_second(now)));
            set_condition(&mut status, "Degraded", false, Reason::AsExpected, "", now);
        }
        Outcome::Abandoned {
            message,
            next_rotation,
        } => {
            clear_rotation(&mut status);
            status.phase = Some(Phase::Idle);
            // The abandoned rotation counts as this period's: no new one at once.
            status.next_rotation_time = next_rotation.map(Time);
            set_condition(
                &mut status,
                "Degraded",
                true,
                Reason::StateLost,
                message,
                now,
            );
        }
        Outcome::Finished {
            next_rotation,
            password_expires,
        } => {
            if let Some(expires) = password_expires {
                status.password_expires_time = expires.map(Time);
                status.password_expiry_checked_time = Some(Time(now));
            } else {
                // Asked again at the next reconcile.
                status.password_expires_time = None;
                status.password_expiry_checked_time = None;
            }
            clear_rotation(&mut status);
            status.phase = Some(Phase::Idle);
            status.last_rotation_time = Some(Time(now));
            status.next_rotation_time = next_rotation.map(Time);
            status.observed_generation = generation;
            set_condition(
                &mut status,
                "Ready",
                true,
                Reason::Rotated,
                "the new password is in use; the old one is deleted",
                now,
            );
            set_condition(&mut status, "Progressing", false, Reason::Idle, "", now);
            set_condition(&mut status, "Degraded", false, Reason::AsExpected, "", now);
        }
        Outcome::ExpiryChecked {
            password_expires,
            next_rotation,
        } => {
            status.password_expires_time = password_expires.map(Time);
            status.password_expiry_checked_time = Some(Time(now));
            status.next_rotation_time = next_rotation.map(Time);
        }
        Outcome::Idle { next_rotation } => {
            status.phase = Some(Phase::Idle);
            status.next_rotation_time = next_rotation.map(Time);
            status.observed_generation = generation;
            clear_block(&mut status);
            // Right after a rotation Ready says Rotated; that stays true while idle.
            if !has_condition_reason(&status, "Ready", "True", Reason::Rotated) {
                set_condition(
                    &mut status,
                    "Ready",
                    true,
                    Reason::Idle,
                    "waiting for the next rotation",
                    now,
                );
            }
            set_condition(&mut status, "Progressing", false, Reason::Idle, "", now);
            // A lost state stays reported until the next rotation.
            if !has_condition_reason(&status, "Degraded", "True", Reason::StateLost) {
                set_condition(&mut status, "Degraded", false, Reason::AsExpected, "", now);
            }
        }
        Outcome::Blocked {
            reason,
            message,
            credentials,
            account,
        } => {
            status.phase = Some(Phase::Blocked);
            status.blocked_time = Some(Time(now));
            status.blocked_credentials_hash = Some(credentials.to_owned());
            // Other resources that log in with this account hold back too, across restarts.
            status.blocked_account = (reason == Reason::Unauthorized).then(|| account.to_owned());
            status.observed_generation = generation;
            set_condition(&mut status, "Ready", false, reason, message, now);
        }
        Outcome::NotReady { reason, message } => {
            status.observed_generation = generation;
            set_condition(&mut status, "Ready", false, reason, message, now);
        }
        // A Blocked resource says why again when its block is retried.
        Outcome::ShardReturned => {
            let reported = [Reason::ShardMoved, Reason::ShardUnserved]
                .into_iter()
                .any(|reason| has_condition_reason(&status, "Ready", "False", reason));
            if status.phase == Some(Phase::Rotating) && reported {
                mark_rotating(&mut status, now);
            }
        }
    }
    status
}

/// Says which spec fields, edited since the rotation in flight pinned its plan, wait for the
/// next rotation; and that they apply once it is over.
pub fn show_pending_changes(status: &mut PasswordRotationStatus, changed: &[&str], now: Timestamp) {
    const SPEC_CHANGE_PENDING: &str = "SpecChangePending";
    let in_flight = status.step.is_some()
        && matches!(status.phase, Some(Phase::Rotating) | Some(Phase::Blocked));
    if in_flight && !changed.is_empty() {
        let message = format!(
            "{} changed while rotation {} is in flight; the change applies to the next rotation",
            changed.join(", "),
            status.rotation_id.as_deref().unwrap_or_default()
        );
        set_condition(
            status,
            SPEC_CHANGE_PENDING,
            true,
            Reason::RotationInFlight,
            &message,
            now,
        );
    } else if has_condition(status, SPEC_CHANGE_PENDING, "True") {
        set_condition(status, SPEC_CHANGE_PENDING, false, Reason::Applied, "", now);
    }
}

/// What a step means, for its condition.
pub fn step_message(step: Step) -> &'static str {
    match step {
        Step::Staged => "a new password is staged",
        Step::Replacing => "every password is being replaced by the new one",
        Step::Added => "the new password is added beside the old one; both work",
        Step::Verified => "the new password authenticates",
        Step::Publishing => "the new password is being written to the workload Secret",
        Step::Published => "the new password is in the workload Secret; workloads are restarting",
        Step::RolledOut => "the workloads run on the new password",
        Step::Retired => "the old password is being deleted",
    }
}

/// In flight and no longer blocked.
fn mark_rotating(status: &mut PasswordRotationStatus, now: Timestamp) {
    status.phase = Some(Phase::Rotating);
    clear_block(status);
    set_condition(
        status,
        "Ready",
        true,
        Reason::Rotating,
        "rotation in progress",
        now,
    );
}

fn clear_block(status: &mut PasswordRotationStatus) {
    status.blocked_time = None;
    status.blocked_credentials_hash = None;
    status.blocked_account = None;
}

fn clear_rotation(status: &mut PasswordRotationStatus) {
    status.step = None;
    status.trigger = None;
    status.step_time = None;
    status.published_time = None;
    status.published_secret_version = None;
    clear_block(status);
}

/// Status times keep whole seconds only. The overlap counts from the publish time, so it
/// is rounded up: read back, it must never be earlier than the publish really was.
pub fn ceil_to_second(t: Timestamp) -> Timestamp {
    let floor = Timestamp::from_second(t.as_second()).expect("in range");
    if floor == t {
        t
    } else {
        floor + std::time::Duration::from_secs(1)
    }
}

pub fn has_condition(status: &PasswordRotationStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == value)
}

pub fn has_condition_reason(
    status: &PasswordRotationStatus,
    type_: &str,
    value: &str,
    reason: Reason,
) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == value && c.reason == reason.as_str())
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(
    status: &mut PasswordRotationStatus,
    type_: &str,
    value: bool,
    reason: impl AsRef<str>,
    message: &str,
    now: Timestamp,
) {
    let generation = status.observed_generation;
    set_condition_in(
        &mut status.conditions,
        generation,
        (type_, value),
        reason.as_ref(),
        message,
        now,
    );
}

/// Sets condition `type_` to `value` in `conditions`, keeping its transition time when its
/// status does not change.
pub fn set_condition_in(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    (type_, value): (&str, bool),
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Time(now);
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(now),
            observed_generation: generation,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    fn condition<'a>(status: &'a PasswordRotationStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    fn began(now: Timestamp) -> PasswordRotationStatus {
        after(
            &PasswordRotationStatus::default(),
            Outcome::Began {
                rotation_id: "r1",
                trigger: Trigger::RotationRequest,
                handled_request: Some("token"),
                handled_annotation: None,
            },
            Some(3),
            now,
        )
    }

    #[test]
    fn a_rotation_begins_staged_and_progressing() {
        let status = began(at("2030-01-01T00:00:00Z"));
        assert_eq!(status.phase, Some(Phase::Rotating));
        assert_eq!(status.step, Some(Step::Staged));
        assert_eq!(status.rotation_id.as_deref(), Some("r1"));
        assert_eq!(status.handled_rotation_request.as_deref(), Some("token"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(condition(&status, "Progressing").reason, "Staged");
        assert_eq!(condition(&status, "Degraded").status, "False");
    }

    #[test]
    fn steps_keep_the_rotations_start_and_unblock() {
        let start = at("2030-01-01T00:00:00Z");
        let mut status = began(start);
        status.phase = Some(Phase::Blocked);
        status.blocked_account = Some("acct".into());
        let added = after(
            &status,
            Outcome::Stepped(Step::Added),
            Some(3),
            at("2030-01-01T00:00:05Z"),
        );
        assert_eq!(added.phase, Some(Phase::Rotating));
        assert_eq!(added.blocked_account, None);
        assert_eq!(added.step, Some(Step::Added));
        let progressing = condition(&added, "Progressing");
        assert_eq!(progressing.reason, "Added");
        assert_eq!(progressing.last_transition_time, Time(start));
        // Replacing is recorded before its PUT, and changes nothing else.
        let replacing = after(&added, Outcome::Stepped(Step::Replacing), Some(3), start);
        assert_eq!(replacing.step, Some(Step::Replacing));
        assert_eq!(replacing.conditions, added.conditions);
    }

    #[test]
    fn finishing_clears_the_rotation_and_says_rotated() {
        let start = at("2030-01-01T00:00:00Z");
        let end = at("2030-01-01T00:10:00Z");
        let next = at("2030-01-31T00:10:00Z");
        let status = after(
            &began(start),
            Outcome::Finished {
                next_rotation: Some(next),
                password_expires: None,
            },
            Some(4),
            end,
        );
        assert_eq!(status.phase, Some(Phase::Idle));
        assert_eq!(status.step, None);
        assert_eq!(status.trigger, None);
        assert_eq!(status.last_rotation_time, Some(Time(end)));
        assert_eq!(status.next_rotation_time, Some(Time(next)));
        assert_eq!(
            status.rotation_id.as_deref(),
            Some("r1"),
            "kept for reference"
        );
        assert_eq!(condition(&status, "Ready").reason, "Rotated");
        assert_eq!(condition(&status, "Progressing").status, "False");
        // Idle afterwards keeps saying Rotated, and writes nothing new.
        let idle = after(
            &status,
            Outcome::Idle {
                next_rotation: Some(next),
            },
            Some(4),
            at("2030-01-02T00:00:00Z"),
        );
        assert_eq!(idle, status);
    }

    #[test]
    fn only_a_refused_admin_login_blocks_its_account() {
        let status = began(at("2030-01-01T00:00:00Z"));
        let blocked = |reason| {
            after(
                &status,
                Outcome::Blocked {
                    reason,
                    message: "m",
                    credentials: "h1",
                    account: "a1",
                },
                Some(3),
                at("2030-01-01T00:01:00Z"),
            )
        };
        let unauthorized = blocked(Reason::Unauthorized);
        assert_eq!(unauthorized.phase, Some(Phase::Blocked));
        assert_eq!(unauthorized.blocked_account.as_deref(), Some("a1"));
        assert_eq!(unauthorized.blocked_credentials_hash.as_deref(), Some("h1"));
        assert_eq!(condition(&unauthorized, "Ready").reason, "Unauthorized");
        assert_eq!(blocked(Reason::TlsUntrusted).blocked_account, None);
        let rotating = after(
            &unauthorized,
            Outcome::Restaged,
            Some(3),
            at("2030-01-01T00:02:00Z"),
        );
        assert_eq!(rotating.phase, Some(Phase::Rotating));
        assert_eq!(rotating.blocked_credentials_hash, None);
    }

    #[test]
    fn a_lost_state_stays_reported_while_idle() {
        let status = after(
            &began(at("2030-01-01T00:00:00Z")),
            Outcome::Abandoned {
                message: "state Secret deleted",
                next_rotation: None,
            },
            Some(3),
            at("2030-01-01T00:01:00Z"),
        );
        assert_eq!(status.step, None);
        let idle = after(
            &status,
            Outcome::Idle {
                next_rotation: None,
            },
            Some(3),
            at("2030-01-01T00:02:00Z"),
        );
        assert_eq!(condition(&idle, "Degraded").reason, "StateLost");
        assert_eq!(condition(&idle, "Ready").reason, "Idle");
    }

    #[test]
    fn a_healed_drift_starts_another_round_and_overlap() {
        let now = at("2030-01-01T00:00:02.186Z");
        let drifted = after(
            &began(at("2030-01-01T00:00:00Z")),
            Outcome::Drifted { message: "m" },
            Some(3),
            now,
        );
        assert_eq!(drifted.drifted_time, Some(Time(now)));
        assert_eq!(condition(&drifted, "Degraded").reason, "SecretDrifted");
        let healed = after(
            &drifted,
            Outcome::DriftHealed {
                secret_version: Some("57"),
            },
            Some(3),
            now,
        );
        assert_eq!(healed.drifted_time, None);
        assert_eq!(healed.published_secret_version.as_deref(), Some("57"));
        assert_eq!(healed.rollout_round, Some(2));
        assert_eq!(
            healed.published_time,
            Some(Time(at("2030-01-01T00:00:03Z")))
        );
        assert_eq!(condition(&healed, "Degraded").status, "False");
    }

    #[test]
    fn pinned_edits_are_shown_while_in_flight_and_cleared_after() {
        let now = at("2030-01-01T00:00:00Z");
        let mut status = began(now);
        show_pending_changes(&mut status, &["spec.mode", "spec.target"], now);
        let pending = condition(&status, "SpecChangePending");
        assert_eq!(pending.status, "True");
        assert!(pending.message.contains("spec.mode, spec.target"));
        assert!(pending.message.contains("r1"));
        let mut done = after(
            &status,
            Outcome::Finished {
                next_rotation: None,
                password_expires: None,
            },
            Some(3),
            now,
        );
        show_pending_changes(&mut done, &[], now);
        assert_eq!(condition(&done, "SpecChangePending").reason, "Applied");
        let mut untouched = began(now);
        show_pending_changes(&mut untouched, &[], now);
        assert!(
            untouched
                .conditions
                .iter()
                .all(|c| c.type_ != "SpecChangePending")
        );
    }

    #[test]
    fn the_expiry_the_target_gave_is_recorded_and_one_not_asked_is_asked_again() {
        let now = at("2030-01-01T00:00:00Z");
        let expires = at("2030-04-01T00:00:00Z");
        let checked = after(
            &PasswordRotationStatus::default(),
            Outcome::ExpiryChecked {
                password_expires: Some(expires),
                next_rotation: Some(at("2030-03-29T00:00:00Z")),
            },
            Some(1),
            now,
        );
        assert_eq!(checked.password_expires_time, Some(Time(expires)));
        assert_eq!(checked.password_expiry_checked_time, Some(Time(now)));
        assert_eq!(
            checked.next_rotation_time,
            Some(Time(at("2030-03-29T00:00:00Z")))
        );
        let unasked = after(
            &checked,
            Outcome::Finished {
                next_rotation: None,
                password_expires: None,
            },
            Some(1),
            now,
        );
        assert_eq!(unasked.password_expires_time, None);
        assert_eq!(unasked.password_expiry_checked_time, None);
    }

    #[test]
    fn publish_times_round_up_so_the_overlap_is_never_cut_short() {
        let published = at("2026-06-01T12:00:02.186Z");
        let stored = ceil_to_second(published);
        assert_eq!(stored, at("2026-06-01T12:00:03Z"));
        let round_trip: Time =
            serde_json::from_value(serde_json::to_value(Time(stored)).unwrap()).unwrap();
        assert!(round_trip.0 >= published);
        let whole = at("2026-06-01T12:00:02Z");
        assert_eq!(ceil_to_second(whole), whole);
    }

    #[test]
    fn back_in_its_shard_a_rotation_is_ready_again_and_nothing_else_changes() {
        let now = at("2030-01-01T00:00:00Z");
        let moved = after(
            &began(now),
            Outcome::NotReady {
                reason: Reason::ShardMoved,
                message: "rotation r1 was started by shard a",
            },
            Some(3),
            now,
        );
        let back = after(&moved, Outcome::ShardReturned, Some(3), now);
        let ready = condition(&back, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Rotating")
        );
        assert_eq!(back.step, Some(Step::Staged));
        // Nothing to undo: the status stays as it is, so nothing is written.
        assert_eq!(after(&back, Outcome::ShardReturned, Some(3), now), back);
        let mut blocked = moved.clone();
        blocked.phase = Some(Phase::Blocked);
        assert_eq!(
            after(&blocked, Outcome::ShardReturned, Some(3), now),
            blocked
        );
    }
}
