//! Metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade
//! (feature `metrics`): the names, what they count, and their labels.
//!
//! The crate records; the host installs the recorder (an exporter such as
//! `metrics-exporter-prometheus`) and decides where the numbers go.
//! Install it before building the [`Tenancy`](crate::Tenancy): a few
//! handles (the limit decisions, per metric) are registered once and kept,
//! so a recorder installed later does not see them. [`describe`] gives
//! every metric its unit and description; call it once after installing
//! the recorder (building a `Tenancy` and starting a recorder also do).
//!
//! Labels are bounded: an operation name, an outcome, an error kind, a
//! usage metric key (at most [`MAX_METRIC_LABELS`] distinct ones, the rest
//! as `other`). Never an organization, user or event id.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tenancy_store_call_duration_seconds` | histogram | `operation`, `outcome` | one store call through the facade, by the store method (`organization`, `record_usage`, `reserve`, …) and `ok` or `error` |
//! | `tenancy_store_errors_total` | counter | `operation`, `kind` | store calls that failed, by [`ErrorKind::as_str`](crate::ErrorKind::as_str) (`unavailable`, `not_found`, …) |
//! | `tenancy_limit_decisions_total` | counter | `operation`, `metric`, `decision` | [`Tenancy::check_limit`](crate::Tenancy::check_limit) (`check_limit`) and [`Tenancy::reserve`](crate::Tenancy::reserve) (`reserve`) answers, `allowed` or `denied`, by usage metric |
//! | `tenancy_alerts_fired_total` | counter | | thresholds crossed and claimed by this process (each fires once, across every instance) |
//! | `tenancy_alert_deliveries_total` | counter | `outcome` | alerts handed to the [`AlertSink`](crate::alerts::AlertSink): `delivered`, or `failed` after every attempt |
//! | `tenancy_recorder_queue_depth` | gauge | | events waiting in memory in the [`UsageRecorder`](crate::UsageRecorder)s of this process, not yet in a batch |
//! | `tenancy_recorder_in_flight_events` | gauge | | events in batches being sent (retried while the backend is down) |
//! | `tenancy_recorder_spool_files` | gauge | | spool files the recorders hold: the ones they append to and those taken for replay |
//! | `tenancy_recorder_spool_bytes` | gauge | | the size of those files |
//! | `tenancy_recorder_events_recorded_total` | counter | | events accepted by `record` |
//! | `tenancy_recorder_events_sent_total` | counter | | events the store counted for the first time |
//! | `tenancy_recorder_events_duplicate_total` | counter | | events the store already had (a retry that had landed) |
//! | `tenancy_recorder_events_failed_total` | counter | | events refused for good, or whose delivery panicked |
//! | `tenancy_recorder_events_spooled_total` | counter | | events written to the spool |
//! | `tenancy_recorder_events_replayed_total` | counter | | events delivered from spool files |
//! | `tenancy_recorder_retries_total` | counter | | batch attempts that failed transiently and were retried |
//! | `tenancy_recorder_spool_unreadable_lines_total` | counter | | spool lines that were not an event, skipped |
//!
//! The recorder's numbers are those of
//! [`UsageRecorder::stats`](crate::UsageRecorder::stats), summed over the
//! recorders of the process, and reported by each recorder's background
//! task as it works (at least once per `flush_interval`), after each flush,
//! and at shutdown; a recorder shut down or dropped takes its share out of
//! the gauges. Nothing is added to `record` itself.
//!
//! Every store call also runs in a `tracing` span named `store.<operation>`
//! (target `tenancy::store`, level `DEBUG`, fields `operation`, `outcome`
//! and `error_kind`), with or without this feature.
//!
//! Cost: a store call registers its histogram under a static key (no
//! allocation) and reads the clock twice; a limit decision increments a
//! counter kept per metric (no allocation after the first use of a
//! metric). A failed store call allocates its error counter's key.

use std::time::Duration;

use ::metrics::{Counter, Key, Label, Unit};
use dashmap::DashMap;

use crate::error::ErrorKind;
use crate::ids::MetricKey;

/// Histogram, seconds: one store call. Labels `operation`, `outcome`.
pub const STORE_CALL_DURATION: &str = "tenancy_store_call_duration_seconds";
/// Counter: store calls that failed. Labels `operation`, `kind`.
pub const STORE_ERRORS: &str = "tenancy_store_errors_total";
/// Counter: limit answers. Labels `operation`, `metric`, `decision`.
pub const LIMIT_DECISIONS: &str = "tenancy_limit_decisions_total";
/// Counter: alert thresholds crossed and claimed by this process.
pub const ALERTS_FIRED: &str = "tenancy_alerts_fired_total";
/// Counter: alerts handed to the sink. Label `outcome`.
pub const ALERT_DELIVERIES: &str = "tenancy_alert_deliveries_total";
/// Gauge: events waiting in memory in the recorders.
pub const RECORDER_QUEUE_DEPTH: &str = "tenancy_recorder_queue_depth";
/// Gauge: events in batches being sent.
pub const RECORDER_IN_FLIGHT: &str = "tenancy_recorder_in_flight_events";
/// Gauge: spool files the recorders hold.
pub const RECORDER_SPOOL_FILES: &str = "tenancy_recorder_spool_files";
/// Gauge, bytes: the size of those files.
pub const RECORDER_SPOOL_BYTES: &str = "tenancy_recorder_spool_bytes";
/// Counter: events accepted by `record`.
pub const RECORDER_EVENTS_RECORDED: &str = "tenancy_recorder_events_recorded_total";
/// Counter: events the store counted for the first time.
pub const RECORDER_EVENTS_SENT: &str = "tenancy_recorder_events_sent_total";
/// Counter: events the store already had.
pub const RECORDER_EVENTS_DUPLICATE: &str = "tenancy_recorder_events_duplicate_total";
/// Counter: events refused for good, or whose delivery panicked.
pub const RECORDER_EVENTS_FAILED: &str = "tenancy_recorder_events_failed_total";
/// Counter: events written to the spool.
pub const RECORDER_EVENTS_SPOOLED: &str = "tenancy_recorder_events_spooled_total";
/// Counter: events delivered from spool files.
pub const RECORDER_EVENTS_REPLAYED: &str = "tenancy_recorder_events_replayed_total";
/// Counter: batch attempts retried after a transient failure.
pub const RECORDER_RETRIES: &str = "tenancy_recorder_retries_total";
/// Counter: spool lines that were not an event.
pub const RECORDER_SPOOL_UNREADABLE: &str = "tenancy_recorder_spool_unreadable_lines_total";

/// Label: the store method, or `check_limit` / `reserve`.
pub const LABEL_OPERATION: &str = "operation";
/// Label: `ok` or `error` (store calls); `delivered` or `failed` (alerts).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: the error kind of a failed store call.
pub const LABEL_KIND: &str = "kind";
/// Label: the usage metric key of a limit decision.
pub const LABEL_METRIC: &str = "metric";
/// Label: `allowed` or `denied`.
pub const LABEL_DECISION: &str = "decision";

/// The most distinct usage metrics a [`Tenancy`](crate::Tenancy) labels
/// its limit decisions with; decisions on further metrics are labelled
/// `metric="other"`.
pub const MAX_METRIC_LABELS: usize = 64;

/// Gives every metric above its unit and description in the installed
/// recorder. Building a [`Tenancy`](crate::Tenancy) and starting a
/// [`UsageRecorder`](crate::UsageRecorder) call it; call it yourself if you
/// install the recorder later.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};

    describe_histogram!(
        STORE_CALL_DURATION,
        Unit::Seconds,
        "Store calls through the tenancy facade, by operation and outcome."
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "Store calls that failed, by operation and error kind."
    );
    describe_counter!(
        LIMIT_DECISIONS,
        Unit::Count,
        "Limit checks and reservations, allowed or denied, by usage metric."
    );
    describe_counter!(
        ALERTS_FIRED,
        Unit::Count,
        "Usage alert thresholds crossed and claimed by this process."
    );
    describe_counter!(
        ALERT_DELIVERIES,
        Unit::Count,
        "Usage alerts handed to the alert sink, delivered or failed."
    );
    describe_gauge!(
        RECORDER_QUEUE_DEPTH,
        Unit::Count,
        "Usage events waiting in memory in the usage recorders."
    );
    describe_gauge!(
        RECORDER_IN_FLIGHT,
        Unit::Count,
        "Usage events in batches being sent by the usage recorders."
    );
    describe_gauge!(
        RECORDER_SPOOL_FILES,
        Unit::Count,
        "Spool files the usage recorders hold."
    );
    describe_gauge!(
        RECORDER_SPOOL_BYTES,
        Unit::Bytes,
        "Size of the spool files the usage recorders hold."
    );
    for (name, description) in [
        (RECORDER_EVENTS_RECORDED, "Usage events accepted by record."),
        (
            RECORDER_EVENTS_SENT,
            "Usage events the store counted for the first time.",
        ),
        (
            RECORDER_EVENTS_DUPLICATE,
            "Usage events the store already had.",
        ),
        (
            RECORDER_EVENTS_FAILED,
            "Usage events refused for good, or whose delivery panicked.",
        ),
        (
            RECORDER_EVENTS_SPOOLED,
            "Usage events written to the spool.",
        ),
        (
            RECORDER_EVENTS_REPLAYED,
            "Usage events delivered from spool files.",
        ),
        (
            RECORDER_RETRIES,
            "Usage batch attempts retried after a transient failure.",
        ),
        (
            RECORDER_SPOOL_UNREADABLE,
            "Spool lines that were not a usage event, skipped.",
        ),
    ] {
        describe_counter!(name, Unit::Count, description);
    }
}

/// A `&'static Key` built at compile time from a static name and static
/// labels: registering it allocates nothing.
macro_rules! static_key {
    ($name:expr; $($label:expr => $value:expr),+ $(,)?) => {{
        static LABELS: [::metrics::Label; [$($label),+].len()] =
            [$(::metrics::Label::from_static_parts($label, $value)),+];
        static KEY: ::metrics::Key = ::metrics::Key::from_static_parts($name, &LABELS);
        &KEY
    }};
}
pub(crate) use static_key;

/// The metadata every registration here carries.
static METADATA: ::metrics::Metadata<'static> =
    ::metrics::Metadata::new("tenancy", ::metrics::Level::INFO, Some(module_path!()));

/// Records one store call: its duration under `key` (its operation and
/// outcome), and, when it failed, an error of `kind`.
pub(crate) fn store_call(
    key: &Key,
    operation: &'static str,
    elapsed: Duration,
    error: Option<ErrorKind>,
) {
    ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
        .record(elapsed.as_secs_f64());
    if let Some(kind) = error {
        ::metrics::counter!(STORE_ERRORS, LABEL_OPERATION => operation, LABEL_KIND => kind.as_str())
            .increment(1);
    }
}

/// Which facade call made a limit decision.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DecisionBy {
    CheckLimit = 0,
    Reserve = 2,
}

/// The limit-decision counters of one [`Tenancy`](crate::Tenancy), kept
/// per metric so that counting a decision allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct LimitDecisions {
    /// Per metric: check allowed, check denied, reserve allowed, reserve
    /// denied.
    by_metric: DashMap<MetricKey, [Counter; 4], foldhash::fast::RandomState>,
    other: std::sync::OnceLock<[Counter; 4]>,
}

impl LimitDecisions {
    /// Counts one decision.
    pub(crate) fn count(&self, by: DecisionBy, metric: &MetricKey, allowed: bool) {
        let at = by as usize + usize::from(!allowed);
        if let Some(counters) = self.by_metric.get(metric) {
            counters[at].increment(1);
            return;
        }
        if self.by_metric.len() >= MAX_METRIC_LABELS {
            self.other.get_or_init(|| counters("other"))[at].increment(1);
            return;
        }
        let registered = counters(metric.as_str());
        registered[at].increment(1);
        self.by_metric.insert(metric.clone(), registered);
    }
}

/// The four decision counters of one metric label.
fn counters(metric: &str) -> [Counter; 4] {
    let register = |operation: &'static str, decision: &'static str| {
        let labels = vec![
            Label::from_static_parts(LABEL_OPERATION, operation),
            Label::new(LABEL_METRIC, metric.to_owned()),
            Label::from_static_parts(LABEL_DECISION, decision),
        ];
        let key = Key::from_parts(LIMIT_DECISIONS, labels);
        ::metrics::with_recorder(|recorder| recorder.register_counter(&key, &METADATA))
    };
    [
        register("check_limit", "allowed"),
        register("check_limit", "denied"),
        register("reserve", "allowed"),
        register("reserve", "denied"),
    ]
}

/// An alert threshold was claimed by this process.
pub(crate) fn alert_fired() {
    ::metrics::counter!(ALERTS_FIRED).increment(1);
}

/// An alert was handed to the sink: delivered, or failed for good.
pub(crate) fn alert_delivery(delivered: bool) {
    if delivered {
        ::metrics::counter!(ALERT_DELIVERIES, "outcome" => "delivered").increment(1);
    } else {
        ::metrics::counter!(ALERT_DELIVERIES, "outcome" => "failed").increment(1);
    }
}
