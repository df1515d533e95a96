//! Leader election on a `coordination.k8s.io/v1` Lease, after client-go's: one replica acts, the
//! others stand by and take over when the leader stops renewing.
//!
//! Expiry is judged by each replica's own monotonic clock, never by comparing `renewTime` with
//! the local wall clock: a candidate takes over only once `leaseDurationSeconds` have passed since
//! it first saw the current version of the record, so clock skew cannot make two leaders. Every
//! write carries the `resourceVersion` it was decided on, so of two candidates only one can win.
//! Not kube-lease-manager: it judges expiry as `renewTime` plus the duration against the
//! system clock and patches the Lease without a `resourceVersion`, the two things this avoids.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tracing::{debug, info, warn};

/// A candidate for the Lease `namespace/name`.
#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_every: Duration,
}

impl LeaderElection {
    /// `identity` must be unique per process (e.g. the pod name and a random suffix): a
    /// candidate with the holder's identity takes the lease at once. A lease lasts 15 s and is
    /// renewed every 2 s.
    pub fn new(
        client: Client,
        namespace: &str,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        }
    }

    /// # Panics
    /// Unless `renew_every` is at most half of `lease_duration`.
    pub fn with_timing(mut self, lease_duration: Duration, renew_every: Duration) -> Self {
        assert!(
            !renew_every.is_zero() && renew_every * 2 <= lease_duration,
            "renew_every must be positive and at most half of lease_duration"
        );
        self.lease_duration = lease_duration;
        self.renew_every = renew_every;
        self
    }

    /// Waits until this candidate holds the lease. Fails only on errors that retrying cannot
    /// fix, such as a missing permission; others are logged and retried.
    pub async fn acquire(&self) -> Result<Leadership, kube::Error> {
        let mut observed = None;
        loop {
            let wait = match self.try_acquire(&mut observed).await {
                Ok(Attempt::Won(lease, sent)) => {
                    info!(
                        identity = self.identity,
                        lease = self.name,
                        "leadership acquired"
                    );
                    return Ok(self.lead(*lease, sent));
                }
                Ok(Attempt::Wait(wait)) => wait,
                Err(kube::Error::Api(status))
                    if (400..500).contains(&status.code)
                        && ![404, 409, 429].contains(&status.code) =>
                {
                    return Err(kube::Error::Api(status));
                }
                Err(error) => {
                    warn!(%error, lease = self.name, "leader election failed; retrying");
                    self.renew_every
                }
            };
            sleep(wait.min(self.renew_every)).await;
        }
    }

    async fn try_acquire(&self, observed: &mut Option<Observed>) -> Result<Attempt, kube::Error> {
        let pp = PostParams::default();
        let written = match self.api.get_opt(&self.name).await? {
            None => {
                let sent = Instant::now();
                let lease = self.claimed(Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: None,
                });
                self.api.create(&pp, &lease).await.map(|l| (l, sent))
            }
            Some(current) => match decide(
                &current,
                &self.identity,
                observed,
                Instant::now(),
                self.lease_duration,
            ) {
                Verdict::Wait(wait) => {
                    debug!(holder = holder(&current), ?wait, "standing by");
                    return Ok(Attempt::Wait(wait));
                }
                Verdict::Take => {
                    let sent = Instant::now();
                    let lease = self.claimed(current);
                    self.api
                        .replace(&self.name, &pp, &lease)
                        .await
                        .map(|l| (l, sent))
                }
            },
        };
        match written {
            Ok((lease, sent)) => Ok(Attempt::Won(Box::new(lease), sent)),
            // Another candidate wrote first: look again.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Wait(Duration::ZERO)),
            Err(e) => Err(e),
        }
    }

    /// `lease` with this candidate as its holder, renewed now.
    fn claimed(&self, mut lease: Lease) -> Lease {
        let now = MicroTime(Timestamp::now());
        let previous = holder(&lease).map(str::to_owned);
        let existed = lease.metadata.resource_version.is_some();
        let spec = lease.spec.get_or_insert_default();
        if previous.as_deref() != Some(&self.identity) {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(existed));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_duration.as_secs_f64().ceil() as i32);
        spec.renew_time = Some(now);
        lease
    }

    fn lead(&self, lease: Lease, renewed: Instant) -> Leadership {
        let (lost, watch) = watch::channel(false);
        let elector = self.clone();
        let renewer = tokio::spawn(async move {
            elector.keep(lease, renewed).await;
            let _ = lost.send(true);
        });
        Leadership {
            elector: self.clone(),
            lost: watch,
            renewer,
        }
    }

    /// Renews the lease until it is lost: taken by another holder, or not renewed in time.
    async fn keep(&self, mut lease: Lease, mut renewed: Instant) {
        let mut next = renewed + self.renew_every;
        loop {
            // A candidate takes over `lease_duration` after it saw our last write, which was
            // sent no earlier than `renewed`. Give up one renewal period before that.
            let deadline = renewed + self.lease_duration - self.renew_every;
            sleep_until(next.min(deadline)).await;
            if Instant::now() >= deadline {
                warn!(
                    identity = self.identity,
                    "leadership lost: lease not renewed in time"
                );
                return;
            }
            let sent = Instant::now();
            next = sent + self.renew_every;
            match timeout_at(deadline, self.renew(&mut lease)).await {
                Ok(Ok(Renewal::Renewed)) => renewed = sent,
                Ok(Ok(Renewal::Refreshed)) => next = Instant::now(),
                Ok(Ok(Renewal::Taken(holder))) => {
                    warn!(
                        identity = self.identity,
                        ?holder,
                        "leadership lost: lease taken"
                    );
                    return;
                }
                Ok(Err(error)) => warn!(%error, "renewing the lease failed; retrying"),
                Err(_) => {}
            }
        }
    }

    async fn renew(&self, lease: &mut Lease) -> Result<Renewal, kube::Error> {
        let mut next = lease.clone();
        let spec = next.spec.get_or_insert_default();
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(renewed) => {
                *lease = renewed;
                Ok(Renewal::Renewed)
            }
            Err(kube::Error::Api(s)) if [404, 409].contains(&s.code) => {
                match self.api.get_opt(&self.name).await? {
                    // E.g. our last renewal landed but its response was lost.
                    Some(current) if holder(&current) == Some(&self.identity) => {
                        *lease = current;
                        Ok(Renewal::Refreshed)
                    }
                    current => Ok(Renewal::Taken(
                        current.as_ref().and_then(holder).map(str::to_owned),
                    )),
                }
            }
            Err(e) => Err(e),
        }
    }
}

enum Attempt {
    /// The lease as written, and when the write was sent.
    Won(Box<Lease>, Instant),
    Wait(Duration),
}

enum Renewal {
    Renewed,
    /// Still ours, but changed since our last write: renew again with the fresh version.
    Refreshed,
    Taken(Option<String>),
}

/// Holding the lease. Dropping it stops renewing without releasing, as a crash would.
pub struct Leadership {
    elector: LeaderElection,
    lost: watch::Receiver<bool>,
    renewer: JoinHandle<()>,
}

impl Leadership {
    /// Resolves when this replica may no longer be the leader: another holder took the lease,
    /// or renewing failed until the lease could expire within one renewal period. Whatever
    /// acts as leader must stop at once.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            // An error means the renewer is gone, which is a loss too.
            let _ = lost.wait_for(|lost| *lost).await;
        }
    }

    /// Stops renewing and clears the holder, so that a standby takes over at once.
    pub async fn release(mut self) -> Result<(), kube::Error> {
        self.renewer.abort();
        let _ = (&mut self.renewer).await;
        let e = &self.elector;
        let Some(mut lease) = e.api.get_opt(&e.name).await? else {
            return Ok(());
        };
        if holder(&lease) != Some(&e.identity) {
            return Ok(());
        }
        let spec = lease.spec.get_or_insert_default();
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match e.api.replace(&e.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                info!(identity = e.identity, "leadership released");
                Ok(())
            }
            // Someone else has written since: the lease is no longer ours to release.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    (!holder.is_empty()).then_some(holder)
}

/// The version of the lease record a candidate has seen, and when it first saw it.
#[derive(Debug, Clone)]
struct Observed {
    version: Option<String>,
    since: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Take,
    Wait(Duration),
}

/// Whether `identity` may take `lease` at `now`, tracking in `observed` since when the record
/// has not changed. `fallback` is the lease duration when the record has none.
fn decide(
    lease: &Lease,
    identity: &str,
    observed: &mut Option<Observed>,
    now: Instant,
    fallback: Duration,
) -> Verdict {
    let version = &lease.metadata.resource_version;
    let since = match observed {
        Some(o) if &o.version == version => o.since,
        _ => {
            observed
                .insert(Observed {
                    version: version.clone(),
                    since: now,
                })
                .since
        }
    };
    match holder(lease) {
        None => return Verdict::Take,
        Some(h) if h == identity => return Verdict::Take,
        Some(_) => {}
    }
    let duration = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .map_or(fallback, |s| Duration::from_secs(s.max(0) as u64));
    match (since + duration).checked_duration_since(now) {
        Some(wait) if !wait.is_zero() => Verdict::Wait(wait),
        _ => Verdict::Take,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    use super::*;

    fn lease(holder: Option<&str>, version: &str, seconds: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: seconds,
                // A renewTime far in the past must not matter: only local observation does.
                renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
                ..LeaseSpec::default()
            }),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn takes_over_only_after_the_record_is_unchanged_for_the_lease_duration() {
        let t0 = Instant::now();
        let mut seen = None;
        let held = lease(Some("a"), "1", Some(10));
        assert_eq!(decide(&held, "b", &mut seen, t0, S), Verdict::Wait(10 * S));
        assert_eq!(
            decide(&held, "b", &mut seen, t0 + 4 * S, S),
            Verdict::Wait(6 * S)
        );
        // A renewal (new version) restarts the wait, whenever it happened.
        let renewed = lease(Some("a"), "2", Some(10));
        assert_eq!(
            decide(&renewed, "b", &mut seen, t0 + 9 * S, S),
            Verdict::Wait(10 * S)
        );
        assert_eq!(
            decide(&renewed, "b", &mut seen, t0 + 18 * S, S),
            Verdict::Wait(S)
        );
        assert_eq!(
            decide(&renewed, "b", &mut seen, t0 + 19 * S, S),
            Verdict::Take
        );
        assert_eq!(
            decide(&renewed, "b", &mut seen, t0 + 60 * S, S),
            Verdict::Take
        );
    }

    #[test]
    fn a_fresh_candidate_waits_a_full_lease_duration() {
        let t0 = Instant::now();
        let held = lease(Some("a"), "7", Some(15));
        assert_eq!(decide(&held, "b", &mut None, t0, S), Verdict::Wait(15 * S));
    }

    #[test]
    fn a_free_or_own_lease_is_taken_at_once() {
        let t0 = Instant::now();
        for free in [lease(None, "1", Some(15)), lease(Some(""), "1", Some(15))] {
            assert_eq!(decide(&free, "b", &mut None, t0, S), Verdict::Take);
        }
        let own = lease(Some("b"), "1", Some(15));
        assert_eq!(decide(&own, "b", &mut None, t0, S), Verdict::Take);
        let no_spec = Lease::default();
        assert_eq!(decide(&no_spec, "b", &mut None, t0, S), Verdict::Take);
    }

    #[test]
    fn a_missing_duration_falls_back_to_our_own() {
        let t0 = Instant::now();
        let held = lease(Some("a"), "1", None);
        assert_eq!(
            decide(&held, "b", &mut None, t0, 5 * S),
            Verdict::Wait(5 * S)
        );
    }
}
