//! Prometheus metrics, served as OpenMetrics text on `/metrics` (see [`crate::http`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::redis_software::{Operation, RequestObserver};

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
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
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
    last_success: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
            last_success: Family::default(),
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
            "redis_software_requests",
            "Redis Software API requests, by operation and HTTP status (or timeout, connect, cancelled)",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "redis_software_request_duration",
            "Duration of Redis Software API requests",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register(
            "redis_software_requests_in_flight",
            "Redis Software API requests being sent now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "redis_software_requests_in_flight_peak",
            "Most Redis Software API requests in flight at once since the start",
            metrics.in_flight_peak.clone(),
        );
        registry.register_with_unit(
            "last_successful_rotation_timestamp",
            "When the last rotation of a resource succeeded, in seconds since the Unix epoch",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        metrics
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
        self.last_success
            .get_or_create(&resource(namespace, name))
            .set(at.as_millisecond() as f64 / 1000.0);
    }

    /// Drops the series of a deleted resource.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.last_success.remove(&resource(namespace, name));
    }

    /// The most Redis Software requests in flight at once since the start.
    pub fn peak_in_flight(&self) -> i64 {
        self.in_flight_peak.get()
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String never fails");
        text
    }
}

fn resource(namespace: &str, name: &str) -> ResourceLabels {
    ResourceLabels {
        namespace: namespace.into(),
        name: name.into(),
    }
}

impl RequestObserver for Metrics {
    fn started(&self, _operation: Operation) {
        let now = self.in_flight.inc() + 1;
        self.in_flight_peak
            .inner()
            .fetch_max(now, Ordering::Relaxed);
    }

    fn finished(&self, operation: Operation, status: &str, elapsed: Duration) {
        self.in_flight.dec();
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.as_str().into(),
                status: status.into(),
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabel {
                operation: operation.as_str().into(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let m = Metrics::new();
        m.reconcile();
        m.reconcile_error("kubernetes");
        m.rotation_finished("succeeded", Some(Duration::from_secs(90)));
        m.rotation_finished("blocked", None);
        m.step_reached("Added", Duration::from_millis(40));
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
            "password_rotator_redis_software_requests_in_flight 0",
            "password_rotator_redis_software_requests_in_flight_peak 0",
            "password_rotator_last_successful_rotation_timestamp_seconds{namespace=\"shop\",name=\"orders\"} 1893553445.5",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        m.forget("shop", "orders");
        assert!(!m.encode().contains("namespace=\"shop\""));
    }

    #[test]
    fn requests_are_counted_with_their_peak_concurrency() {
        let m = Metrics::new();
        let op = Operation::AddUserPassword;
        m.started(op);
        m.started(op);
        m.finished(op, "200", Duration::from_millis(20));
        m.started(Operation::GetUser);
        m.finished(op, "timeout", Duration::from_secs(30));
        m.finished(Operation::GetUser, "401", Duration::from_millis(3));
        assert_eq!(m.peak_in_flight(), 2);
        let text = m.encode();
        for line in [
            "password_rotator_redis_software_requests_total{operation=\"add_user_password\",status=\"200\"} 1",
            "password_rotator_redis_software_requests_total{operation=\"add_user_password\",status=\"timeout\"} 1",
            "password_rotator_redis_software_requests_total{operation=\"get_user\",status=\"401\"} 1",
            "password_rotator_redis_software_request_duration_seconds_count{operation=\"add_user_password\"} 2",
            "password_rotator_redis_software_requests_in_flight 0",
            "password_rotator_redis_software_requests_in_flight_peak 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
