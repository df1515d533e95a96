//! A target's status as a pure function of what was last written and what the operator
//! observed now: the check of the admin login (or none, between checks), the admin account's
//! failed-login budget, and the resources that name the target. Nothing in it changes while
//! nothing changes, so an idle target is never written.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::login_budget::Refusal;
use crate::reason::Reason;
use crate::rotation::CallFailure;
use crate::rotation_target::{LoginBudgetStatus, TargetStatus};
use crate::status::set_condition_in;
use crate::targets::Description;

/// How often the admin login is checked while nothing changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(5 * 60);
/// How soon a check that failed is made again. A refused login is not sent again before
/// its hold has passed: the check is then refused by the budget, without a call.
pub const RECHECK_FAILED: Duration = Duration::from_secs(30);

/// What checking the target found.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// The admin login was accepted and the certificate trusted.
    Described(Description),
    /// It could not be checked: why, with a message naming what to fix.
    Failed { reason: Reason, message: String },
    /// Not checked this time: the last check stands.
    Skipped,
}

/// The admin account's budget as this process holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Identifies the account ([`crate::login_budget::account_key`]).
    pub account: String,
    pub failures: u32,
    /// The refusal that holds now.
    pub refusal: Option<Refusal>,
}

/// What the operator observed of a target now.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub generation: Option<i64>,
    pub check: Check,
    /// The fingerprint of the credentials a check logged in with.
    pub credentials: Option<String>,
    /// `None` when the target could not be connected to (e.g. its Secret is missing): the last
    /// budget written stands.
    pub budget: Option<Budget>,
    pub resources: u32,
    pub now: Timestamp,
}

/// The status after `observed`, from `previous`.
pub fn next(previous: &TargetStatus, observed: Observed) -> TargetStatus {
    let mut status = previous.clone();
    status.resources = observed.resources;
    if let Some(budget) = observed.budget {
        status.login_budget = Some(budget_status(budget));
    }
    let (ready, reason, message) = match observed.check {
        Check::Skipped => return status,
        Check::Described(description) => {
            let message = format!("the admin login was accepted by {}", description.identity);
            status.identity = Some(description.identity);
            status.version = description.version;
            status.certificate_expires_time = description.certificate_expires.map(Time);
            status.admin_password_expires_time = description.admin_password_expires.map(Time);
            (true, Reason::Connected, message)
        }
        Check::Failed { reason, message } => (false, reason, message),
    };
    status.observed_generation = observed.generation;
    status.checked_credentials = observed.credentials;
    set_condition_in(
        &mut status.conditions,
        observed.generation,
        ("Ready", ready),
        reason.as_str(),
        &message,
        observed.now,
    );
    status
}

fn budget_status(budget: Budget) -> LoginBudgetStatus {
    let refusal = budget.refusal.as_ref();
    LoginBudgetStatus {
        account: budget.account,
        failures: budget.failures,
        held_until: refusal.map(|r| Time(r.until())),
        refused_time: refusal.map(|r| Time(r.at)),
        refused_credentials: refusal.map(|r| r.credentials.clone()),
        refused_for: refusal.map(|r| r.by.clone()),
    }
}

/// The refusal `status` records for `account`: what a process that has not used the account
/// yet (after a restart, a failover, or in another replica) starts from. Whether it still
/// holds is the budget's to judge ([`crate::login_budget`]): the clock that wrote it may run
/// ahead of this one.
pub fn remembered(status: &TargetStatus, account: &str) -> Option<Refusal> {
    let budget = status.login_budget.as_ref()?;
    if budget.account != account {
        return None;
    }
    let (at, until) = (
        budget.refused_time.as_ref()?.0,
        budget.held_until.as_ref()?.0,
    );
    Some(Refusal {
        at,
        credentials: budget.refused_credentials.clone()?,
        by: budget.refused_for.clone().unwrap_or_default(),
        hold: Duration::try_from(until.duration_since(at)).ok()?,
    })
}

/// What this process last checked of a target.
#[derive(Clone, Debug, PartialEq)]
pub struct LastCheck {
    pub generation: Option<i64>,
    /// [`crate::targets::credentials_fingerprint`] of the Secrets it logged in with.
    pub credentials: String,
    pub at: Timestamp,
    /// Whether the target was found Ready.
    pub ready: bool,
}

/// The check `status` records, as if made at `now`: a restarted operator trusts it until it is
/// [`CHECK_EVERY`] old, so that an idle restart calls no target.
pub fn recorded_check(status: &TargetStatus, now: Timestamp) -> Option<LastCheck> {
    if status.conditions.is_empty() {
        return None;
    }
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Some(LastCheck {
        generation: status.observed_generation,
        credentials: status.checked_credentials.clone()?,
        at: now,
        ready,
    })
}

/// Whether the admin login is due for a check: never checked by this process, the spec or the
/// credentials changed since, or the last check is [`CHECK_EVERY`] old ([`RECHECK_FAILED`]
/// when it failed).
pub fn check_due(
    last: Option<&LastCheck>,
    generation: Option<i64>,
    credentials: &str,
    now: Timestamp,
) -> bool {
    last.is_none_or(|last| {
        let every = if last.ready {
            CHECK_EVERY
        } else {
            RECHECK_FAILED
        };
        last.generation != generation || last.credentials != credentials || last.at + every <= now
    })
}

/// A check that failed, as the target's `Ready` condition says it.
pub fn failed(failure: CallFailure) -> Check {
    let (reason, message) = match failure {
        CallFailure::AdminUnauthorized { detail } => (
            Reason::Unauthorized,
            format!(
                "the admin credentials (credentialsSecret) were refused: {detail}; they are not \
                 tried again until that Secret changes or the lockout has passed"
            ),
        ),
        CallFailure::TlsUntrusted { detail } => (
            Reason::TlsUntrusted,
            format!(
                "the server's certificate is not trusted by caSecret (nor valid for its name; \
                 see tls.serverName): {detail}"
            ),
        ),
        CallFailure::Forbidden { detail } => (
            Reason::Forbidden,
            format!("the admin may not read what the check reads: {detail}"),
        ),
        CallFailure::Transient { detail } => (
            Reason::TargetUnavailable,
            format!("the system did not answer: {detail}"),
        ),
        other => (
            Reason::TargetError,
            format!("the system answered the check unexpectedly: {other:?}"),
        ),
    };
    Check::Failed { reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    fn ready(status: &TargetStatus) -> (&str, &str, Timestamp) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        (
            c.status.as_str(),
            c.reason.as_str(),
            c.last_transition_time.0,
        )
    }

    fn observed(check: Check, now: Timestamp) -> Observed {
        Observed {
            generation: Some(1),
            check,
            credentials: Some("f1".into()),
            budget: None,
            resources: 3,
            now,
        }
    }

    fn described() -> Check {
        Check::Described(Description {
            identity: "cluster.example".into(),
            version: Some("7.8.4".into()),
            certificate_expires: Some(at("2027-01-01T00:00:00Z")),
            admin_password_expires: None,
        })
    }

    #[test]
    fn a_check_sets_ready_and_what_the_system_said_and_keeps_the_transition_time() {
        let t0 = at("2026-12-03T10:00:00Z");
        let first = next(&TargetStatus::default(), observed(described(), t0));
        assert_eq!(ready(&first), ("True", "Connected", t0));
        assert_eq!(first.identity.as_deref(), Some("cluster.example"));
        assert_eq!(first.version.as_deref(), Some("7.8.4"));
        assert_eq!(first.resources, 3);
        let t1 = t0 + Duration::from_secs(300);
        let again = next(&first, observed(described(), t1));
        assert_eq!(again, first, "the same check again writes nothing");

        let refused = failed(CallFailure::AdminUnauthorized {
            detail: "401".into(),
        });
        let after = next(&again, observed(refused, t1));
        assert_eq!(ready(&after), ("False", "Unauthorized", t1));
        assert_eq!(
            after.identity.as_deref(),
            Some("cluster.example"),
            "what the system last said stays"
        );
    }

    #[test]
    fn between_checks_only_the_budget_and_the_count_change() {
        let t0 = at("2026-12-03T10:00:00Z");
        let first = next(&TargetStatus::default(), observed(described(), t0));
        let refusal = Refusal {
            at: t0,
            credentials: "f1".into(),
            by: "shop/orders".into(),
            hold: Duration::from_secs(31 * 60),
        };
        let mut later = observed(Check::Skipped, t0 + Duration::from_secs(30));
        later.resources = 4;
        later.budget = Some(Budget {
            account: "k".into(),
            failures: 1,
            refusal: Some(refusal.clone()),
        });
        let status = next(&first, later);
        assert_eq!(status.conditions, first.conditions);
        assert_eq!(status.resources, 4);
        let budget = status.login_budget.as_ref().unwrap();
        assert_eq!(budget.failures, 1);
        assert_eq!(budget.held_until, Some(Time(refusal.until())));
        assert_eq!(
            remembered(&status, "k"),
            Some(refusal.clone()),
            "what another process starts from"
        );
        assert_eq!(remembered(&status, "other"), None);
    }

    #[test]
    fn a_check_is_due_when_never_made_changed_or_old() {
        let t0 = at("2026-12-03T10:00:00Z");
        let last = LastCheck {
            generation: Some(1),
            credentials: "f1".into(),
            at: t0,
            ready: true,
        };
        assert!(check_due(None, Some(1), "f1", t0));
        assert!(!check_due(
            Some(&last),
            Some(1),
            "f1",
            t0 + Duration::from_secs(60)
        ));
        assert!(check_due(Some(&last), Some(2), "f1", t0));
        assert!(check_due(Some(&last), Some(1), "f2", t0));
        assert!(check_due(Some(&last), Some(1), "f1", t0 + CHECK_EVERY));
        let failed = LastCheck {
            ready: false,
            ..last.clone()
        };
        assert!(!check_due(Some(&failed), Some(1), "f1", t0));
        assert!(check_due(Some(&failed), Some(1), "f1", t0 + RECHECK_FAILED));

        let status = next(&TargetStatus::default(), observed(described(), t0));
        let later = t0 + Duration::from_secs(3600);
        let recorded = recorded_check(&status, later).expect("a check is recorded");
        assert!(
            !check_due(Some(&recorded), Some(1), "f1", later),
            "a restart with the same spec and credentials does not check at once"
        );
        assert!(check_due(Some(&recorded), Some(1), "f2", later));
        assert_eq!(recorded_check(&TargetStatus::default(), later), None);
    }
}
