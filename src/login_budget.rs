//! The failed-login budget of admin accounts. A target may lock an account after a few failed
//! logins (Redis Software: 5 in 15 minutes lock it for 30 minutes), and every resource that
//! uses one admin login spends the same budget: so the budget is kept per account (cluster and
//! admin user), not per resource. Calls with credentials not yet accepted go alone; once they
//! are accepted, a few go at once: at most half the failed logins that lock the account, so
//! that a password changed behind the operator's back costs at most half of it. Once a login is
//! refused no call is sent with the same credentials until the target's lockout has surely
//! passed (each target says how long: its lockout policy); new credentials (the Secret's data
//! changed) may try at once. A hold ends only once both clocks say so: the wall clock, by the
//! refusal's time (perhaps another replica's), and this process's monotonic clock, by a full
//! hold since it learned of the refusal; so neither a step of the wall clock nor a replica
//! whose clock runs ahead of the one that recorded it ends a hold early.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Why calls with an account are held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub at: Timestamp,
    /// [`crate::targets::credentials_fingerprint`] of the credentials that were refused.
    pub credentials: String,
    /// The resource whose call was refused (`namespace/name`).
    pub by: String,
    /// How long no login is tried with the same credentials: longer than the target's lockout.
    pub hold: Duration,
}

impl Refusal {
    pub fn until(&self) -> Timestamp {
        self.at + self.hold
    }

    /// Ended a whole hold ago by `now`: no clock skew is that large, so it is history, not a
    /// refusal recorded by a clock ahead of this one.
    fn is_history(&self, now: Timestamp) -> bool {
        self.until() + self.hold <= now
    }
}

/// The time on both clocks.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    pub wall: Timestamp,
    pub monotonic: Instant,
}

impl Clocks {
    pub fn now() -> Self {
        Clocks::at(Timestamp::now())
    }

    /// `wall`, and the monotonic clock now.
    pub fn at(wall: Timestamp) -> Self {
        Clocks {
            wall,
            monotonic: Instant::now(),
        }
    }
}

/// A refusal, and when this process learned of it.
#[derive(Debug)]
struct Held {
    refusal: Refusal,
    learned: Instant,
}

impl Held {
    /// The refusal as it holds at `now`, its hold stretched to what the monotonic clock
    /// still keeps; `None` once it has passed on both clocks.
    fn at(&self, now: Clocks) -> Option<Refusal> {
        let left = (self.learned + self.refusal.hold).saturating_duration_since(now.monotonic);
        let until = self.refusal.until().max(now.wall + left);
        if until <= now.wall {
            return None;
        }
        let hold = Duration::try_from(until.duration_since(self.refusal.at)).ok()?;
        Some(Refusal {
            hold,
            ..self.refusal.clone()
        })
    }
}

/// A target's lockout policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// Failed logins that lock the account; `None` when the target locks none.
    pub failed_logins: Option<u32>,
    /// How long no login is tried with refused credentials: longer than the lockout.
    pub hold: Duration,
}

impl Lockout {
    /// Calls in flight at once with accepted credentials.
    fn parallel(self) -> u32 {
        const WITHOUT_LOCKOUT: u32 = 64;
        self.failed_logins
            .map_or(WITHOUT_LOCKOUT, |failed| (failed / 2).max(1))
    }
}

#[derive(Debug)]
pub struct AdminAccount {
    /// A call with accepted credentials takes one permit; any other call takes them all.
    calls: Semaphore,
    parallel: u32,
    /// [`crate::targets::credentials_fingerprint`] of the credentials last accepted.
    accepted: Mutex<Option<String>>,
    refusal: Mutex<Option<Held>>,
    /// Logins refused since one was last accepted.
    failures: AtomicU32,
}

impl AdminAccount {
    fn new(lockout: Lockout) -> Self {
        let parallel = lockout.parallel();
        AdminAccount {
            calls: Semaphore::new(parallel as usize),
            parallel,
            accepted: Mutex::default(),
            refusal: Mutex::default(),
            failures: AtomicU32::new(0),
        }
    }

    /// Logins refused since one was last accepted, and the refusal that holds now, if any: what
    /// the target's status shows.
    pub fn state(&self, now: Clocks) -> (u32, Option<Refusal>) {
        let refusal = self.refusal.lock().expect("not poisoned");
        (
            self.failures.load(Ordering::Relaxed),
            refusal.as_ref().and_then(|held| held.at(now)),
        )
    }

    /// The refusal that still holds for `credentials` at `now`, if any.
    pub fn refusal_against(&self, credentials: &str, now: Clocks) -> Option<Refusal> {
        self.refusal
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|held| held.refusal.credentials == credentials)
            .and_then(|held| held.at(now))
    }

    /// Room for a call with `credentials`: alone unless they were accepted, so that a refused
    /// login is known before the next one is sent.
    pub async fn permit(&self, credentials: &str) -> SemaphorePermit<'_> {
        let accepted = self.accepted.lock().expect("not poisoned").as_deref() == Some(credentials);
        let permits = if accepted { 1 } else { self.parallel };
        self.calls
            .acquire_many(permits)
            .await
            .expect("never closed")
    }

    pub fn refused(&self, refusal: Refusal) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut accepted = self.accepted.lock().expect("not poisoned");
        if accepted.as_deref() == Some(refusal.credentials.as_str()) {
            *accepted = None;
        }
        let mut current = self.refusal.lock().expect("not poisoned");
        if current.as_ref().is_none_or(|c| c.refusal.at <= refusal.at) {
            *current = Some(Held {
                refusal,
                learned: Instant::now(),
            });
        }
    }

    /// A refusal another process recorded (in the target's status): held from now on, unless
    /// this process holds a newer one or saw those credentials accepted itself (its own next
    /// call finds out). The same refusal learned again changes nothing.
    fn learn(&self, refusal: Refusal) {
        let accepted = self.accepted.lock().expect("not poisoned");
        if accepted.as_deref() == Some(refusal.credentials.as_str()) {
            return;
        }
        let newer = self
            .refusal
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_none_or(|held| held.refusal.at < refusal.at);
        drop(accepted);
        if newer {
            self.refused(refusal);
        }
    }

    /// A login with `credentials` worked.
    pub fn accepted(&self, credentials: &str) {
        self.failures.store(0, Ordering::Relaxed);
        *self.accepted.lock().expect("not poisoned") = Some(credentials.to_owned());
        let mut current = self.refusal.lock().expect("not poisoned");
        if current
            .as_ref()
            .is_some_and(|held| held.refusal.credentials == credentials)
        {
            *current = None;
        }
    }
}

/// The accounts this operator logs in with, each known by [`account_key`].
#[derive(Debug, Default)]
pub struct LoginBudgets {
    accounts: Mutex<HashMap<String, Arc<AdminAccount>>>,
}

impl LoginBudgets {
    /// The account's budget, which learns from `remembered` (what the target's status and
    /// resources Blocked on this account recorded, unless it is history by `now`): after a
    /// restart, and a refusal another process recorded since.
    pub fn account(
        &self,
        key: &str,
        lockout: Lockout,
        now: Timestamp,
        remembered: impl FnOnce() -> Option<Refusal>,
    ) -> Arc<AdminAccount> {
        let account = self
            .accounts
            .lock()
            .expect("not poisoned")
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(AdminAccount::new(lockout)))
            .clone();
        if let Some(refusal) = remembered().filter(|r| !r.is_history(now)) {
            account.learn(refusal);
        }
        account
    }
}

/// Identifies an admin account without naming it: status shows it, and is not the place
/// for a login name.
pub fn account_key(cluster: &str, username: &str) -> String {
    digest(&[cluster.as_bytes(), username.to_ascii_lowercase().as_bytes()])
}

/// A short hash of `parts` that tells `["ab", "c"]` from `["a", "bc"]`.
pub fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(31 * 60);
    const REDIS_SOFTWARE: Lockout = Lockout {
        failed_logins: Some(5),
        hold: HOLD,
    };

    fn refusal(at: Timestamp, credentials: &str) -> Refusal {
        Refusal {
            at,
            credentials: credentials.into(),
            by: "ns/a".into(),
            hold: HOLD,
        }
    }

    /// `after` past `wall` and `learned` on both clocks.
    fn later(wall: Timestamp, learned: Instant, after: Duration) -> Clocks {
        Clocks {
            wall: wall + after,
            monotonic: learned + after,
        }
    }

    #[test]
    fn a_refusal_holds_the_same_credentials_for_longer_than_a_lockout() {
        let wall: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let budgets = LoginBudgets::default();
        let account = budgets.account("k", REDIS_SOFTWARE, wall, || None);
        account.refused(refusal(wall, "h1"));
        let learned = Instant::now();
        let now = later(wall, learned, Duration::ZERO);
        let same = budgets.account("k", REDIS_SOFTWARE, wall, || None);
        let thirty_minutes = later(wall, learned, Duration::from_secs(30 * 60));
        assert!(same.refusal_against("h1", thirty_minutes).is_some());
        assert!(
            same.refusal_against("h1", later(wall, learned, HOLD))
                .is_none()
        );
        assert!(
            same.refusal_against("h2", now).is_none(),
            "new credentials may try"
        );
        assert_eq!(same.state(now).0, 1, "one login refused");
        same.accepted("h2");
        assert!(same.refusal_against("h1", now).is_some());
        assert_eq!(same.state(now).0, 0, "a login accepted since");
        same.accepted("h1");
        assert!(same.refusal_against("h1", now).is_none());
        assert_eq!(same.state(now), (0, None));
    }

    #[test]
    fn a_wall_clock_step_forward_ends_no_hold() {
        let wall: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let account = LoginBudgets::default().account("k", REDIS_SOFTWARE, wall, || None);
        account.refused(refusal(wall, "h1"));
        let learned = Instant::now();
        let stepped = Clocks {
            wall: wall + Duration::from_secs(2 * 60 * 60),
            monotonic: learned + Duration::from_secs(60),
        };
        let held = account.refusal_against("h1", stepped).expect("still held");
        assert!(
            held.until() >= stepped.wall + Duration::from_secs(29 * 60),
            "the hold shown is the one kept: {}",
            held.until()
        );
        let later = Clocks {
            wall: stepped.wall,
            monotonic: learned + HOLD + Duration::from_secs(1),
        };
        assert!(account.refusal_against("h1", later).is_none());
    }

    #[test]
    fn a_refusal_from_a_clock_ahead_of_this_one_holds_a_full_hold_here() {
        let wall: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        // Another replica, its clock 10 minutes ahead, recorded a refusal that ends, by this
        // clock, 5 minutes ago: the target's lockout may still hold.
        let recorded = refusal(wall - HOLD - Duration::from_secs(5 * 60), "h1");
        let account =
            LoginBudgets::default().account("k", REDIS_SOFTWARE, wall, || Some(recorded.clone()));
        let seeded = Instant::now();
        let soon = Clocks {
            wall: wall + Duration::from_secs(60),
            monotonic: seeded + Duration::from_secs(60),
        };
        assert!(account.refusal_against("h1", soon).is_some());
        let after = Clocks {
            wall: wall + HOLD,
            monotonic: seeded + HOLD + Duration::from_secs(1),
        };
        assert!(account.refusal_against("h1", after).is_none());

        let history = refusal(wall - 2 * HOLD - Duration::from_secs(1), "h1");
        let account = LoginBudgets::default().account("k", REDIS_SOFTWARE, wall, || Some(history));
        assert!(
            account.refusal_against("h1", Clocks::at(wall)).is_none(),
            "a refusal that ended a whole hold ago is history"
        );
    }

    #[test]
    fn a_new_entry_remembers_what_status_recorded() {
        let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let budgets = LoginBudgets::default();
        let account = budgets.account("k", REDIS_SOFTWARE, now, || Some(refusal(now, "h1")));
        assert_eq!(
            account.refusal_against("h1", Clocks::at(now)).unwrap().by,
            "ns/a"
        );
        account.refused(refusal(now - Duration::from_secs(60), "h0"));
        assert!(
            account.refusal_against("h1", Clocks::at(now)).is_some(),
            "an older refusal never replaces a newer one"
        );
    }

    #[test]
    fn an_account_in_use_learns_a_refusal_another_process_recorded() {
        let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let budgets = LoginBudgets::default();
        let account = budgets.account("k", REDIS_SOFTWARE, now, || None);
        account.accepted("h0");
        budgets.account("k", REDIS_SOFTWARE, now, || Some(refusal(now, "h1")));
        assert!(account.refusal_against("h1", Clocks::at(now)).is_some());
        assert_eq!(account.state(Clocks::at(now)).0, 1);
        budgets.account("k", REDIS_SOFTWARE, now, || Some(refusal(now, "h1")));
        assert_eq!(
            account.state(Clocks::at(now)).0,
            1,
            "the same refusal learned again is not another failed login"
        );
        let later = now + Duration::from_secs(1);
        budgets.account("k", REDIS_SOFTWARE, later, || Some(refusal(later, "h0")));
        assert!(
            account.refusal_against("h0", Clocks::at(later)).is_none(),
            "credentials this process saw accepted find out for themselves"
        );
    }

    #[tokio::test]
    async fn unproven_credentials_go_alone_and_accepted_ones_a_few_at_once() {
        let account =
            LoginBudgets::default().account("k", REDIS_SOFTWARE, Timestamp::now(), || None);
        let first = account.permit("h1").await;
        assert!(
            account.calls.try_acquire().is_err(),
            "nothing beside a login not yet accepted"
        );
        drop(first);
        account.accepted("h1");
        let (_a, _b) = (account.permit("h1").await, account.permit("h1").await);
        assert!(
            account.calls.try_acquire().is_err(),
            "half of the 5 failed logins that lock the account, rounded down"
        );
        account.refused(refusal(Timestamp::now(), "h1"));
        assert_eq!(account.accepted.lock().unwrap().as_deref(), None);
        let unlocked = Lockout {
            failed_logins: None,
            hold: HOLD,
        };
        assert_eq!(unlocked.parallel(), 64);
    }

    #[test]
    fn account_keys_ignore_the_case_of_the_login() {
        assert_eq!(account_key("c", "Admin@X"), account_key("c", "admin@x"));
        assert_ne!(account_key("c", "admin@x"), account_key("d", "admin@x"));
    }
}
