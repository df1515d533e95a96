//! Prometheus metrics, served as OpenMetrics text on `/metrics` (see [`crate::http`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::resource::{PasswordRotationStatus, Phase};
use crate::resource_index::{NamedTarget, interned};
use crate::rotation_target::{TargetKind, TargetStatus};
use crate::targets::RequestObserver;

/// The condition types exported per resource; their reasons are constants of the code.
const CONDITION_TYPES: [&str; 3] = ["Ready", "Progressing", "Degraded"];
/// Every phase is exported per resource, 1 for the current one and 0 for the others.
const PHASES: [(Phase, &str); 3] = [
    (Phase::Idle, "Idle"),
    (Phase::Rotating, "Rotating"),
    (Phase::Blocked, "Blocked"),
];

/// From 0.1 s to 24 h: a step may take milliseconds, a rollout or a blocked rotation hours.
const ROTATION_BUCKETS: [f64; 15] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0,
    86400.0,
];
/// From 5 ms to the default request timeout of 30 s.
const REQUEST_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    target: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    target: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    name: String,
    r#type: String,
    status: String,
    reason: String,
}

/// A target as the counts of its resources name it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OnTarget {
    target_kind: String,
    target_namespace: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OnTargetPhase {
    #[prometheus(flatten)]
    on: OnTarget,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OnTargetCondition {
    #[prometheus(flatten)]
    on: OnTarget,
    r#type: String,
    status: String,
    reason: String,
}

/// What a resource's status showed last, for the counts by target. There is one per
/// resource, so what many share (the target, a condition's status and reason) is held once.
#[derive(Debug)]
struct Shown {
    on: Arc<OnTarget>,
    phase: Option<&'static str>,
    conditions: Vec<ShownCondition>,
    next_rotation: Option<f64>,
}

#[derive(Debug)]
struct ShownCondition {
    type_: &'static str,
    status: Arc<str>,
    reason: Arc<str>,
    /// Its last transition, in seconds since the epoch.
    since: f64,
}

/// What every resource's status showed last, and the label values they share.
#[derive(Debug, Default)]
struct ShownResources {
    by_resource: HashMap<ResourceLabels, Shown>,
    targets: HashSet<Arc<OnTarget>>,
    words: HashSet<Arc<str>>,
}

impl ShownResources {
    fn target(&mut self, target: &NamedTarget) -> Arc<OnTarget> {
        interned(&mut self.targets, &on_target(target), |on| {
            Arc::new(on.clone())
        })
    }

    fn word(&mut self, word: &str) -> Arc<str> {
        interned(&mut self.words, word, |w| Arc::from(w))
    }

    /// Lets go of the values no resource shows any more.
    fn release_unshown(&mut self) {
        self.targets.retain(|t| Arc::strong_count(t) > 1);
        self.words.retain(|w| Arc::strong_count(w) > 1);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    kind: String,
    namespace: String,
    name: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn rotation_histogram() -> Histogram {
    Histogram::new(ROTATION_BUCKETS)
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// Every metric of the operator, all named `password_rotator_*`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rotations: Family<ResultLabel, Counter>,
    rotation_duration: Histogram,
    step_duration: HistogramFamily<StepLabel>,
    reconciles: Counter,
    reconcile_errors: Family<KindLabel, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<OperationLabel>,
    in_flight: Gauge,
    in_flight_peak: Gauge,
    calls_per_cluster: Gauge,
    last_success: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    next_rotation: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    phase: Family<PhaseLabels, Gauge>,
    condition: Family<ConditionLabels, Gauge>,
    condition_since: Family<ConditionLabels, Gauge<f64, AtomicU64>>,
    /// The condition series exported per resource, to drop them when a condition changes.
    conditions: Mutex<HashMap<ResourceLabels, Vec<ConditionLabels>>>,
    target_ready: Family<TargetLabels, Gauge>,
    target_resources: Family<TargetLabels, Gauge>,
    target_certificate_expiry: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    target_admin_password_expiry: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    target_login_failures: Family<TargetLabels, Gauge>,
    /// The targets whose series are exported, to drop them when a target goes.
    targets: Mutex<HashSet<TargetLabels>>,
    /// Whether each resource has series of its own (`--per-resource-metrics`); the counts
    /// by target are exported either way.
    per_resource: bool,
    shown: Mutex<ShownResources>,
    resources: Family<OnTargetPhase, Gauge>,
    resources_condition: Family<OnTargetCondition, Gauge>,
    earliest_transition: Family<OnTargetCondition, Gauge<f64, AtomicU64>>,
    earliest_next_rotation: Family<OnTarget, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The name of a target in the counts of its resources.
fn on_target(target: &NamedTarget) -> OnTarget {
    OnTarget {
        target_kind: target.kind.to_string(),
        target_namespace: target.namespace.clone().unwrap_or_default(),
        target: target.name.clone(),
    }
}

impl Metrics {
    /// With the series of each resource.
    pub fn new() -> Self {
        Self::with_per_resource(true)
    }

    /// `per_resource`: whether each resource has series of its own (phase, conditions, last
    /// and next rotation), beside the counts by target that are always exported.
    pub fn with_per_resource(per_resource: bool) -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("password_rotator"),
            rotations: Family::default(),
            rotation_duration: rotation_histogram(),
            step_duration: Family::new_with_constructor(rotation_histogram),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_histogram),
            in_flight: Gauge::default(),
            in_flight_peak: Gauge::default(),
            calls_per_cluster: Gauge::default(),
            last_success: Family::default(),
            next_rotation: Family::default(),
            phase: Family::default(),
            condition: Family::default(),
            condition_since: Family::default(),
            conditions: Mutex::default(),
            target_ready: Family::default(),
            target_resources: Family::default(),
            target_certificate_expiry: Family::default(),
            target_admin_password_expiry: Family::default(),
            target_login_failures: Family::default(),
            targets: Mutex::default(),
            per_resource,
            shown: Mutex::default(),
            resources: Family::default(),
            resources_condition: Family::default(),
            earliest_transition: Family::default(),
            earliest_next_rotation: Family::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "rotations",
            "Rotations that ended, by result: succeeded, abandoned, rolled_back or blocked",
            metrics.rotations.clone(),
        );
        registry.register_with_unit(
            "rotation_duration",
            "Time from Staged to the end of a rotation",
            Unit::Seconds,
            metrics.rotation_duration.clone(),
        );
        registry.register_with_unit(
            "step_duration",
            "Time spent reaching each rotation step from the previous one",
            Unit::Seconds,
            metrics.step_duration.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles started",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "target_requests",
            "Requests to targets, by target, operation and answer (an HTTP status, a Redis reply; or timeout, connect, cancelled)",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "target_request_duration",
            "Duration of requests to targets",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register(
            "target_requests_in_flight",
            "Requests to targets being sent now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "target_requests_in_flight_peak",
            "Most requests to targets in flight at once since the start",
            metrics.in_flight_peak.clone(),
        );
        registry.register(
            "target_calls_per_cluster_limit",
            "Most calls in flight at once to one target cluster (--calls-per-cluster)",
            metrics.calls_per_cluster.clone(),
        );
        registry.register_with_unit(
            "last_successful_rotation_timestamp",
            "When the last rotation of a resource succeeded, in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        registry.register_with_unit(
            "next_rotation_timestamp",
            "When the schedule of a resource rotates next (status.nextRotationTime), in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.next_rotation.clone(),
        );
        registry.register(
            "resource_phase",
            "The phase of a resource (status.phase): 1 for the current one, 0 for the others",
            metrics.phase.clone(),
        );
        registry.register(
            "resource_condition",
            "The Ready, Progressing and Degraded conditions of a resource: 1 per type, with its status and reason",
            metrics.condition.clone(),
        );
        registry.register_with_unit(
            "resource_condition_last_transition_timestamp",
            "When each condition of resource_condition last changed status, in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.condition_since.clone(),
        );
        registry.register(
            "target_ready",
            "Whether a target's admin login was accepted and its certificate trusted at its last check (its Ready condition): 1 or 0",
            metrics.target_ready.clone(),
        );
        registry.register(
            "target_resources",
            "The PasswordRotations that name a target",
            metrics.target_resources.clone(),
        );
        registry.register_with_unit(
            "target_certificate_expiry_timestamp",
            "When the certificate a target presented expires (notAfter), in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.target_certificate_expiry.clone(),
        );
        registry.register_with_unit(
            "target_admin_password_expiry_timestamp",
            "When a target's admin password expires, where the system says, in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.target_admin_password_expiry.clone(),
        );
        registry.register(
            "target_login_failures",
            "Admin logins a target refused since one was last accepted (its status.loginBudget.failures)",
            metrics.target_login_failures.clone(),
        );
        registry.register(
            "resources",
            "The PasswordRotations of each target in each phase",
            metrics.resources.clone(),
        );
        registry.register(
            "resources_condition",
            "The PasswordRotations of each target with each Ready, Progressing and Degraded condition (status and reason)",
            metrics.resources_condition.clone(),
        );
        registry.register_with_unit(
            "resources_condition_earliest_transition_timestamp",
            "The earliest lastTransitionTime among the PasswordRotations of resources_condition, in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.earliest_transition.clone(),
        );
        registry.register_with_unit(
            "resources_earliest_next_rotation_timestamp",
            "The earliest nextRotationTime among the PasswordRotations of each target, in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.earliest_next_rotation.clone(),
        );
        metrics
    }

    /// Exports a target's status.
    pub fn target_status(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
        status: &TargetStatus,
    ) {
        let labels = TargetLabels {
            kind: kind.to_string(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.targets
            .lock()
            .expect("not poisoned")
            .insert(labels.clone());
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        self.target_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
        self.target_resources
            .get_or_create(&labels)
            .set(i64::from(status.resources));
        let failures = status.login_budget.as_ref().map_or(0, |b| b.failures);
        self.target_login_failures
            .get_or_create(&labels)
            .set(i64::from(failures));
        for (family, at) in [
            (
                &self.target_certificate_expiry,
                &status.certificate_expires_time,
            ),
            (
                &self.target_admin_password_expiry,
                &status.admin_password_expires_time,
            ),
        ] {
            match at {
                Some(at) => {
                    family.get_or_create(&labels).set(seconds(at.0));
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Drops the series of every target but those `live` keeps, by kind, namespace and name.
    pub fn retain_targets(&self, live: impl Fn(&str, &str, &str) -> bool) {
        let mut exported = self.targets.lock().expect("not poisoned");
        exported.retain(|labels| {
            let kept = live(&labels.kind, &labels.namespace, &labels.name);
            if !kept {
                self.target_ready.remove(labels);
                self.target_resources.remove(labels);
                self.target_certificate_expiry.remove(labels);
                self.target_admin_password_expiry.remove(labels);
                self.target_login_failures.remove(labels);
            }
            kept
        });
    }

    /// A rotation ended; `duration` is from Staged to the end, when known.
    pub fn rotation_finished(&self, result: &str, duration: Option<Duration>) {
        self.rotations
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        if let Some(d) = duration {
            self.rotation_duration.observe(d.as_secs_f64());
        }
    }

    /// A rotation reached `step`, `elapsed` after reaching the step before.
    pub fn step_reached(&self, step: &str, elapsed: Duration) {
        self.step_duration
            .get_or_create(&StepLabel { step: step.into() })
            .observe(elapsed.as_secs_f64());
    }

    /// The cap on calls in flight to one cluster (`--calls-per-cluster`).
    pub fn calls_per_cluster(&self, limit: usize) {
        self.calls_per_cluster
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    pub fn reconcile(&self) {
        self.reconciles.inc();
    }

    /// `kind` is [`crate::Error::kind`].
    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn last_success(&self, namespace: &str, name: &str, at: jiff::Timestamp) {
        if !self.per_resource {
            return;
        }
        self.last_success
            .get_or_create(&resource(namespace, name))
            .set(seconds(at));
    }

    /// Takes the status a resource on `target` has (or was just given): into the counts by
    /// target and, per resource, its last and next rotation, phase and conditions. Series
    /// the status no longer has are dropped.
    pub fn resource_status(
        &self,
        namespace: &str,
        name: &str,
        target: &NamedTarget,
        status: &PasswordRotationStatus,
    ) {
        let conditions: Vec<_> = status
            .conditions
            .iter()
            .filter(|c| CONDITION_TYPES.contains(&c.type_.as_str()))
            .map(|c| {
                let since = seconds(c.last_transition_time.0);
                (c.type_.clone(), c.status.clone(), c.reason.clone(), since)
            })
            .collect();
        if self.per_resource {
            self.export_resource(namespace, name, status, &conditions);
        }
        let mut all = self.shown.lock().expect("not poisoned");
        let shown = Shown {
            on: all.target(target),
            phase: status
                .phase
                .and_then(|p| PHASES.iter().find(|(phase, _)| *phase == p))
                .map(|(_, label)| *label),
            conditions: conditions
                .iter()
                .filter_map(|(type_, status, reason, since)| {
                    Some(ShownCondition {
                        type_: CONDITION_TYPES.iter().find(|t| *t == type_)?,
                        status: all.word(status),
                        reason: all.word(reason),
                        since: *since,
                    })
                })
                .collect(),
            next_rotation: status.next_rotation_time.as_ref().map(|t| seconds(t.0)),
        };
        all.by_resource.insert(resource(namespace, name), shown);
    }

    fn export_resource(
        &self,
        namespace: &str,
        name: &str,
        status: &PasswordRotationStatus,
        conditions: &[(String, String, String, f64)],
    ) {
        let key = resource(namespace, name);
        for (family, time) in [
            (&self.last_success, &status.last_rotation_time),
            (&self.next_rotation, &status.next_rotation_time),
        ] {
            match time {
                Some(t) => {
                    family.get_or_create(&key).set(seconds(t.0));
                }
                None => {
                    family.remove(&key);
                }
            }
        }
        for (phase, label) in PHASES {
            let labels = phase_labels(namespace, name, label);
            match status.phase {
                Some(current) => {
                    self.phase
                        .get_or_create(&labels)
                        .set(i64::from(current == phase));
                }
                None => {
                    self.phase.remove(&labels);
                }
            }
        }
        let current: Vec<(ConditionLabels, f64)> = conditions
            .iter()
            .map(|(type_, status, reason, since)| {
                let labels = ConditionLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    r#type: type_.clone(),
                    status: status.clone(),
                    reason: reason.clone(),
                };
                (labels, *since)
            })
            .collect();
        let mut exported = self.conditions.lock().expect("not poisoned");
        let previous = exported.insert(key, current.iter().map(|(l, _)| l.clone()).collect());
        for old in previous.unwrap_or_default() {
            if !current.iter().any(|(l, _)| *l == old) {
                self.condition.remove(&old);
                self.condition_since.remove(&old);
            }
        }
        for (labels, since) in current {
            self.condition.get_or_create(&labels).set(1);
            self.condition_since.get_or_create(&labels).set(since);
        }
    }

    /// The counts by target, from what every resource's status showed last: each phase of a
    /// target with resources (0 for those none is in), each condition, and the earliest
    /// times an alert compares with now.
    fn count_by_target(&self) {
        let mut shown = self.shown.lock().expect("not poisoned");
        shown.release_unshown();
        type Condition<'a> = (&'a OnTarget, &'static str, &'a str, &'a str);
        let mut phases: HashMap<(&OnTarget, &'static str), i64> = HashMap::new();
        let mut conditions: HashMap<Condition<'_>, (i64, f64)> = HashMap::new();
        let mut next: HashMap<&OnTarget, f64> = HashMap::new();
        for resource in shown.by_resource.values() {
            let on = &*resource.on;
            for (_, label) in PHASES {
                *phases.entry((on, label)).or_default() += i64::from(resource.phase == Some(label));
            }
            for c in &resource.conditions {
                let (count, earliest) = conditions
                    .entry((on, c.type_, &c.status, &c.reason))
                    .or_insert((0, f64::MAX));
                *count += 1;
                *earliest = earliest.min(c.since);
            }
            if let Some(at) = resource.next_rotation {
                let earliest = next.entry(on).or_insert(f64::MAX);
                *earliest = earliest.min(at);
            }
        }
        self.resources.clear();
        for ((on, phase), count) in phases {
            let labels = OnTargetPhase {
                on: on.clone(),
                phase: phase.into(),
            };
            self.resources.get_or_create(&labels).set(count);
        }
        self.resources_condition.clear();
        self.earliest_transition.clear();
        for ((on, type_, status, reason), (count, earliest)) in conditions {
            let labels = OnTargetCondition {
                on: on.clone(),
                r#type: type_.into(),
                status: status.into(),
                reason: reason.into(),
            };
            self.resources_condition.get_or_create(&labels).set(count);
            self.earliest_transition
                .get_or_create(&labels)
                .set(earliest);
        }
        self.earliest_next_rotation.clear();
        for (on, earliest) in next {
            self.earliest_next_rotation.get_or_create(on).set(earliest);
        }
    }

    /// Drops the series of a deleted resource.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = resource(namespace, name);
        self.shown
            .lock()
            .expect("not poisoned")
            .by_resource
            .remove(&key);
        self.last_success.remove(&key);
        self.next_rotation.remove(&key);
        for (_, label) in PHASES {
            self.phase.remove(&phase_labels(namespace, name, label));
        }
        let exported = self.conditions.lock().expect("not poisoned").remove(&key);
        for old in exported.unwrap_or_default() {
            self.condition.remove(&old);
            self.condition_since.remove(&old);
        }
    }

    /// Drops the series of every resource but those `live` keeps, by namespace and name: one
    /// deleted while its finalizer was removed by hand, or whose target was relabelled to
    /// another shard (whose operator exports it now).
    pub fn retain_resources(&self, live: impl Fn(&str, &str) -> bool) {
        let gone: Vec<ResourceLabels> = self
            .shown
            .lock()
            .expect("not poisoned")
            .by_resource
            .keys()
            .filter(|r| !live(&r.namespace, &r.name))
            .cloned()
            .collect();
        for r in gone {
            self.forget(&r.namespace, &r.name);
        }
    }

    /// The most Redis Software requests in flight at once since the start.
    pub fn peak_in_flight(&self) -> i64 {
        self.in_flight_peak.get()
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        self.count_by_target();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String never fails");
        text
    }
}

fn seconds(at: jiff::Timestamp) -> f64 {
    at.as_millisecond() as f64 / 1000.0
}

fn phase_labels(namespace: &str, name: &str, phase: &str) -> PhaseLabels {
    PhaseLabels {
        namespace: namespace.into(),
        name: name.into(),
        phase: phase.into(),
    }
}

fn resource(namespace: &str, name: &str) -> ResourceLabels {
    ResourceLabels {
        namespace: namespace.into(),
        name: name.into(),
    }
}

impl RequestObserver for Metrics {
    fn started(&self, _target: &'static str, _operation: &'static str) {
        let now = self.in_flight.inc() + 1;
        self.in_flight_peak
            .inner()
            .fetch_max(now, Ordering::Relaxed);
    }

    fn finished(
        &self,
        target: &'static str,
        operation: &'static str,
        status: &str,
        elapsed: Duration,
    ) {
        self.in_flight.dec();
        self.requests
            .get_or_create(&RequestLabels {
                target: target.into(),
                operation: operation.into(),
                status: status.into(),
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabel {
                target: target.into(),
                operation: operation.into(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    #[test]
    fn encodes_every_family() {
        let m = Metrics::new();
        m.reconcile();
        m.reconcile_error("kubernetes");
        m.rotation_finished("succeeded", Some(Duration::from_secs(90)));
        m.rotation_finished("blocked", None);
        m.step_reached("Added", Duration::from_millis(40));
        m.calls_per_cluster(8);
        m.last_success("shop", "orders", "2030-01-02T03:04:05.5Z".parse().unwrap());
        let text = m.encode();
        for line in [
            "# TYPE password_rotator_rotations counter",
            "password_rotator_rotations_total{result=\"succeeded\"} 1",
            "password_rotator_rotations_total{result=\"blocked\"} 1",
            "# UNIT password_rotator_rotation_duration_seconds seconds",
            "password_rotator_rotation_duration_seconds_count 1",
            "password_rotator_rotation_duration_seconds_bucket{le=\"300.0\"} 1",
            "password_rotator_rotation_duration_seconds_bucket{le=\"60.0\"} 0",
            "password_rotator_step_duration_seconds_bucket{le=\"0.1\",step=\"Added\"} 1",
            "password_rotator_reconciles_total 1",
            "password_rotator_reconcile_errors_total{kind=\"kubernetes\"} 1",
            "password_rotator_target_requests_in_flight 0",
            "password_rotator_target_requests_in_flight_peak 0",
            "password_rotator_target_calls_per_cluster_limit 8",
            "password_rotator_last_successful_rotation_timestamp_seconds{namespace=\"shop\",name=\"orders\"} 1893553445.5",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        m.forget("shop", "orders");
        assert!(!m.encode().contains("namespace=\"shop\""));
    }

    fn condition(type_: &str, status: &str, reason: &str, at: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            last_transition_time: Time(at.parse().unwrap()),
            observed_generation: None,
        }
    }

    fn cache() -> NamedTarget {
        NamedTarget {
            kind: TargetKind::RotationTarget,
            namespace: Some("shop".into()),
            name: "cache".into(),
        }
    }

    #[test]
    fn without_per_resource_series_the_counts_by_target_say_the_same() {
        let m = Metrics::with_per_resource(false);
        let idle = PasswordRotationStatus {
            phase: Some(Phase::Idle),
            next_rotation_time: Some(Time("2030-01-31T00:00:00Z".parse().unwrap())),
            conditions: vec![condition(
                "Ready",
                "True",
                "Rotated",
                "2030-01-01T00:00:00Z",
            )],
            ..PasswordRotationStatus::default()
        };
        let blocked = |at: &str| PasswordRotationStatus {
            phase: Some(Phase::Blocked),
            next_rotation_time: Some(Time("2030-01-15T00:00:00Z".parse().unwrap())),
            conditions: vec![condition("Ready", "False", "Unauthorized", at)],
            ..PasswordRotationStatus::default()
        };
        m.resource_status("shop", "orders", &cache(), &idle);
        m.resource_status(
            "shop",
            "payments",
            &cache(),
            &blocked("2030-02-01T00:00:00Z"),
        );
        m.resource_status("shop", "users", &cache(), &blocked("2030-01-20T00:00:00Z"));
        m.last_success("shop", "orders", "2030-01-01T00:00:00Z".parse().unwrap());
        let text = m.encode();
        let on = "target_kind=\"RotationTarget\",target_namespace=\"shop\",target=\"cache\"";
        for line in [
            format!("password_rotator_resources{{{on},phase=\"Idle\"}} 1"),
            format!("password_rotator_resources{{{on},phase=\"Blocked\"}} 2"),
            format!("password_rotator_resources{{{on},phase=\"Rotating\"}} 0"),
            format!(
                "password_rotator_resources_condition{{{on},type=\"Ready\",status=\"False\",reason=\"Unauthorized\"}} 2"
            ),
            format!(
                "password_rotator_resources_condition_earliest_transition_timestamp_seconds{{{on},type=\"Ready\",status=\"False\",reason=\"Unauthorized\"}} 1895097600.0"
            ),
            format!(
                "password_rotator_resources_earliest_next_rotation_timestamp_seconds{{{on}}} 1894665600.0"
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("name=\""), "no series of a resource: {text}");

        m.forget("shop", "payments");
        m.forget("shop", "users");
        let text = m.encode();
        assert!(!text.contains("Unauthorized"), "{text}");
        assert!(
            text.lines()
                .any(|l| l == format!("password_rotator_resources{{{on},phase=\"Blocked\"}} 0")),
            "{text}"
        );
    }

    #[test]
    fn resource_status_sets_phase_conditions_and_times_and_drops_stale_series() {
        let m = Metrics::new();
        let mut status = PasswordRotationStatus {
            phase: Some(Phase::Idle),
            last_rotation_time: Some(Time("2030-01-01T00:00:00Z".parse().unwrap())),
            next_rotation_time: Some(Time("2030-01-31T00:00:00Z".parse().unwrap())),
            conditions: vec![
                condition("Ready", "True", "Rotated", "2030-01-01T00:00:00Z"),
                condition("Progressing", "False", "Idle", "2029-12-31T23:59:00Z"),
                condition("Degraded", "False", "AsExpected", "2029-12-31T23:59:00Z"),
                condition(
                    "SpecChangePending",
                    "False",
                    "Applied",
                    "2029-12-31T23:59:00Z",
                ),
            ],
            ..PasswordRotationStatus::default()
        };
        m.resource_status("shop", "orders", &cache(), &status);
        let text = m.encode();
        for line in [
            "# TYPE password_rotator_next_rotation_timestamp_seconds gauge",
            "password_rotator_next_rotation_timestamp_seconds{namespace=\"shop\",name=\"orders\"} 1896048000.0",
            "password_rotator_last_successful_rotation_timestamp_seconds{namespace=\"shop\",name=\"orders\"} 1893456000.0",
            "password_rotator_resource_phase{namespace=\"shop\",name=\"orders\",phase=\"Idle\"} 1",
            "password_rotator_resource_phase{namespace=\"shop\",name=\"orders\",phase=\"Rotating\"} 0",
            "password_rotator_resource_phase{namespace=\"shop\",name=\"orders\",phase=\"Blocked\"} 0",
            "password_rotator_resource_condition{namespace=\"shop\",name=\"orders\",type=\"Ready\",status=\"True\",reason=\"Rotated\"} 1",
            "password_rotator_resource_condition{namespace=\"shop\",name=\"orders\",type=\"Degraded\",status=\"False\",reason=\"AsExpected\"} 1",
            "password_rotator_resource_condition_last_transition_timestamp_seconds{namespace=\"shop\",name=\"orders\",type=\"Ready\",status=\"True\",reason=\"Rotated\"} 1893456000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("SpecChangePending"), "{text}");

        // Blocked, then Degraded: the old reasons' series go, no next rotation any more.
        status.phase = Some(Phase::Blocked);
        status.next_rotation_time = None;
        status.conditions[0] = condition("Ready", "False", "Unauthorized", "2030-02-01T00:00:00Z");
        status.conditions[2] =
            condition("Degraded", "True", "RolloutTimeout", "2030-02-01T00:30:00Z");
        m.resource_status("shop", "orders", &cache(), &status);
        let text = m.encode();
        for line in [
            "password_rotator_resource_phase{namespace=\"shop\",name=\"orders\",phase=\"Blocked\"} 1",
            "password_rotator_resource_phase{namespace=\"shop\",name=\"orders\",phase=\"Idle\"} 0",
            "password_rotator_resource_condition{namespace=\"shop\",name=\"orders\",type=\"Ready\",status=\"False\",reason=\"Unauthorized\"} 1",
            "password_rotator_resource_condition_last_transition_timestamp_seconds{namespace=\"shop\",name=\"orders\",type=\"Degraded\",status=\"True\",reason=\"RolloutTimeout\"} 1896136200.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        for gone in [
            "reason=\"Rotated\"",
            "reason=\"AsExpected\"",
            "next_rotation_timestamp_seconds{",
        ] {
            assert!(!text.contains(gone), "{gone} still in\n{text}");
        }

        m.resource_status("shop", "payments", &cache(), &status);
        m.forget("shop", "orders");
        let text = m.encode();
        assert!(!text.contains("name=\"orders\""), "{text}");
        assert!(text.contains("name=\"payments\""), "{text}");

        m.resource_status("shop", "orders", &cache(), &status);
        m.retain_resources(|namespace, name| (namespace, name) == ("shop", "orders"));
        let text = m.encode();
        assert!(text.contains("name=\"orders\""), "{text}");
        assert!(
            !text.contains("name=\"payments\""),
            "gone from the watch: {text}"
        );
    }

    #[test]
    fn requests_are_counted_with_their_peak_concurrency() {
        let m = Metrics::new();
        let (rs, op) = ("redisSoftware", "add_user_password");
        m.started(rs, op);
        m.started(rs, op);
        m.finished(rs, op, "200", Duration::from_millis(20));
        m.started("redis", "acl_setuser");
        m.finished(rs, op, "timeout", Duration::from_secs(30));
        m.finished(
            "redis",
            "acl_setuser",
            "WRONGPASS",
            Duration::from_millis(3),
        );
        assert_eq!(m.peak_in_flight(), 2);
        let text = m.encode();
        for line in [
            "password_rotator_target_requests_total{target=\"redisSoftware\",operation=\"add_user_password\",status=\"200\"} 1",
            "password_rotator_target_requests_total{target=\"redisSoftware\",operation=\"add_user_password\",status=\"timeout\"} 1",
            "password_rotator_target_requests_total{target=\"redis\",operation=\"acl_setuser\",status=\"WRONGPASS\"} 1",
            "password_rotator_target_request_duration_seconds_count{target=\"redisSoftware\",operation=\"add_user_password\"} 2",
            "password_rotator_target_requests_in_flight 0",
            "password_rotator_target_requests_in_flight_peak 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
