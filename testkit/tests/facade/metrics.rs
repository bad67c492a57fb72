//! The metrics (feature `metrics`), read back through an in-memory
//! recorder: store calls by operation and outcome, store errors by kind,
//! limit decisions by metric, alerts fired and delivered, and the usage
//! recorder's counters and gauges. Each test installs its recorder on its
//! own thread (`#[tokio::test]` runs the test and every task it spawns on
//! one thread), so tests running at once do not see each other's numbers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use tenancy::alerts::AlertSink;
use tenancy::faults::FaultyStore;
use tenancy::limits::LimitAlert;
use tenancy::metrics as names;
use tenancy::store::DynStore;
use tenancy::{
    Error, ErrorKind, MemoryStore, ReserveOutcome, Result, UsageEvent, UsageRecorder, async_trait,
};

use crate::scene::{dec, monthly, scene_on};

/// A metric's identity: kind, name and labels, sorted.
type Id = (MetricKind, String, Vec<(String, String)>);

/// Everything recorded so far. The debugging recorder zeroes counters and
/// gauges when read, so readings add up: counters to their total, gauges
/// (changed only by increments and decrements here) to their value.
struct Readings {
    snapshotter: Snapshotter,
    counters: HashMap<Id, u64>,
    gauges: HashMap<Id, f64>,
    histograms: HashMap<Id, Vec<f64>>,
}

impl Readings {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Readings {
            snapshotter: recorder.snapshotter(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    /// Adds what was recorded since the last reading.
    fn read(&mut self) -> &Self {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let id = id(&key);
            match value {
                DebugValue::Counter(n) => *self.counters.entry(id).or_default() += n,
                DebugValue::Gauge(g) => *self.gauges.entry(id).or_default() += g.into_inner(),
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
        self
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let id = wanted(MetricKind::Counter, name, labels);
        self.counters.get(&id).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> f64 {
        let id = wanted(MetricKind::Gauge, name, &[]);
        self.gauges.get(&id).copied().unwrap_or(0.0)
    }

    /// The sum of a counter over all its labels.
    fn total(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .filter(|((_, n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// How many values the histogram holds.
    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        let id = wanted(MetricKind::Histogram, name, labels);
        self.histograms.get(&id).map_or(0, Vec::len)
    }

    /// Every label of every metric recorded, as `key=value`.
    fn labels(&self) -> Vec<String> {
        let ids = self
            .counters
            .keys()
            .chain(self.gauges.keys())
            .chain(self.histograms.keys());
        ids.flat_map(|(_, _, labels)| labels.iter().map(|(k, v)| format!("{k}={v}")))
            .collect()
    }
}

fn id(key: &CompositeKey) -> Id {
    let mut labels: Vec<(String, String)> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.kind(), key.key().name().to_owned(), labels)
}

fn wanted(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Id {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (kind, name.to_owned(), labels)
}

/// Store calls, store errors, limit decisions and alerts, through the
/// facade; no label carries an organization or user id.
#[tokio::test]
async fn the_facade_reports_store_calls_decisions_and_alerts() {
    let recorder = DebuggingRecorder::new();
    let _installed = metrics::set_default_local_recorder(&recorder);
    let mut readings = Readings::new(&recorder);

    let faults = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = scene_on(faults.clone() as Arc<DynStore>).await;
    s.limit(monthly("tokens", 100)).await;
    let member = s.member(tenancy::Role::Member).await;

    // Two checks and two reservations on tokens, one of each denied; one
    // check on another metric.
    assert!(s.check(&member, "tokens", 50).await.allowed);
    assert!(!s.check(&member, "tokens", 150).await.allowed);
    assert!(s.check(&member, "ads_created", 1).await.allowed);
    let granted = s.tenancy.reserve(&member, "tokens", dec(60)).await.unwrap();
    assert!(matches!(granted, ReserveOutcome::Granted(_)));
    let denied = s.tenancy.reserve(&member, "tokens", dec(60)).await.unwrap();
    assert!(matches!(denied, ReserveOutcome::Denied(_)));

    // 85 of 100: the 80 % threshold fires once and is delivered.
    let usage = UsageEvent::new(s.org).user(s.owner).tokens(85, 0, 0);
    s.tenancy.service().record_usage(usage).await.unwrap();
    s.tenancy.flush_alerts().await;
    assert_eq!(s.alerts.alerts().len(), 1);

    // A store call that fails.
    faults.fail_limit_reads(1);
    let err = s.tenancy.limits(&member).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let r = readings.read();
    let decision = |operation, metric, decision| {
        r.counter(
            names::LIMIT_DECISIONS,
            &[
                ("operation", operation),
                ("metric", metric),
                ("decision", decision),
            ],
        )
    };
    assert_eq!(decision("check_limit", "tokens", "allowed"), 1);
    assert_eq!(decision("check_limit", "tokens", "denied"), 1);
    assert_eq!(decision("check_limit", "ads_created", "allowed"), 1);
    assert_eq!(decision("reserve", "tokens", "allowed"), 1);
    assert_eq!(decision("reserve", "tokens", "denied"), 1);

    assert_eq!(r.counter(names::ALERTS_FIRED, &[]), 1);
    assert_eq!(
        r.counter(names::ALERT_DELIVERIES, &[("outcome", "delivered")]),
        1
    );
    assert_eq!(
        r.counter(names::ALERT_DELIVERIES, &[("outcome", "failed")]),
        0
    );

    let calls = |operation, outcome| {
        r.observations(
            names::STORE_CALL_DURATION,
            &[("operation", operation), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("reserve", "ok"), 2);
    assert_eq!(calls("record_usage", "ok"), 1);
    assert_eq!(calls("claim_alert", "ok"), 1);
    // The three checks and the alert check.
    assert_eq!(calls("usage_snapshot", "ok"), 4);
    assert_eq!(calls("put_limit", "ok"), 1);
    // Members read the effective limits, through the entitlements.
    assert_eq!(calls("entitlements", "error"), 1);
    assert_eq!(
        r.counter(
            names::STORE_ERRORS,
            &[("operation", "entitlements"), ("kind", "unavailable")]
        ),
        1
    );
    assert_eq!(r.total(names::STORE_ERRORS), 1);

    let labels = r.labels();
    let ids = [
        s.org.to_string(),
        s.owner.to_string(),
        member.user().to_string(),
    ];
    for label in &labels {
        assert!(
            !ids.iter().any(|id| label.contains(id.as_str())),
            "an id in a label: {label}"
        );
        let key = label.split('=').next().unwrap();
        assert!(
            ["operation", "outcome", "kind", "metric", "decision"].contains(&key),
            "an unexpected label: {label}"
        );
    }
}

/// A sink that always fails.
#[derive(Debug)]
struct Broken;

#[async_trait]
impl AlertSink for Broken {
    async fn deliver(&self, _alert: &LimitAlert) -> Result<()> {
        Err(Error::new(ErrorKind::Unavailable, "the pager is down"))
    }
}

/// An alert whose every delivery attempt fails is counted as failed, once.
#[tokio::test]
async fn an_alert_that_cannot_be_delivered_counts_as_failed() {
    let recorder = DebuggingRecorder::new();
    let _installed = metrics::set_default_local_recorder(&recorder);
    let mut readings = Readings::new(&recorder);

    let s = scene_on(Arc::new(MemoryStore::new())).await;
    let tenancy = tenancy::Tenancy::builder()
        .shared_store(s.store.clone())
        .clock(s.clock.clone())
        .alert_sink(Broken)
        .alert_delivery_attempts(2)
        .build()
        .unwrap();
    s.limit(monthly("tokens", 100)).await;
    let usage = UsageEvent::new(s.org).user(s.owner).tokens(95, 0, 0);
    tenancy.service().record_usage(usage).await.unwrap();
    tenancy.flush_alerts().await;

    let r = readings.read();
    // 80 % and 90 %.
    assert_eq!(r.counter(names::ALERTS_FIRED, &[]), 2);
    assert_eq!(
        r.counter(names::ALERT_DELIVERIES, &[("outcome", "failed")]),
        2
    );
    assert_eq!(
        r.counter(names::ALERT_DELIVERIES, &[("outcome", "delivered")]),
        0
    );
}

/// The recorder's counters and gauges through an outage: events in
/// flight and spilled to the spool, retries and store errors; then
/// everything delivered, and a shutdown that takes its gauges back to zero.
#[tokio::test]
async fn the_recorder_reports_its_queue_spool_and_events() {
    let recorder = DebuggingRecorder::new();
    let _installed = metrics::set_default_local_recorder(&recorder);
    let mut readings = Readings::new(&recorder);

    let faults = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = scene_on(faults.clone() as Arc<DynStore>).await;
    let spool = tempfile::tempdir().unwrap();
    faults.set_down(true);
    let usage = UsageRecorder::builder(s.tenancy.clone())
        .batch_size(10)
        .max_buffered_events(10)
        .spool_dir(spool.path())
        .flush_interval(Duration::from_millis(20))
        .retry_delays(Duration::from_millis(5), Duration::from_millis(20))
        .start()
        .unwrap();
    for _ in 0..30 {
        let event = UsageEvent::new(s.org).user(s.owner).tokens(1, 0, 0);
        usage.record(event).unwrap();
    }
    let report = usage
        .flush_within(Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(
        (report.pending.in_memory, report.pending.in_spool),
        (10, 20)
    );

    let r = readings.read();
    assert_eq!(r.counter(names::RECORDER_EVENTS_RECORDED, &[]), 30);
    assert_eq!(r.counter(names::RECORDER_EVENTS_SPOOLED, &[]), 20);
    assert_eq!(r.counter(names::RECORDER_EVENTS_SENT, &[]), 0);
    let retries = r.counter(names::RECORDER_RETRIES, &[]);
    assert!(retries > 0);
    assert_eq!(
        r.counter(
            names::STORE_ERRORS,
            &[("operation", "record_usage"), ("kind", "unavailable")]
        ),
        retries,
        "every failed attempt, each retried"
    );
    assert_eq!(r.gauge(names::RECORDER_QUEUE_DEPTH), 0.0);
    assert_eq!(r.gauge(names::RECORDER_IN_FLIGHT), 10.0);
    assert_eq!(r.gauge(names::RECORDER_SPOOL_FILES), 1.0);
    let stats = usage.stats();
    assert_eq!(
        r.gauge(names::RECORDER_SPOOL_BYTES),
        stats.spool_bytes as f64
    );
    assert!(stats.spool_bytes > 0);

    faults.set_down(false);
    let report = usage.flush().await.unwrap();
    assert_eq!(report.stored, 30, "{report:?}");
    let r = readings.read();
    assert_eq!(r.counter(names::RECORDER_EVENTS_SENT, &[]), 30);
    assert_eq!(r.counter(names::RECORDER_EVENTS_REPLAYED, &[]), 20);
    assert_eq!(r.counter(names::RECORDER_EVENTS_DUPLICATE, &[]), 0);
    assert_eq!(r.counter(names::RECORDER_EVENTS_FAILED, &[]), 0);
    assert_eq!(r.gauge(names::RECORDER_IN_FLIGHT), 0.0);
    assert_eq!(r.gauge(names::RECORDER_SPOOL_FILES), 0.0);
    assert_eq!(r.gauge(names::RECORDER_SPOOL_BYTES), 0.0);

    // One event left in memory when the recorder is dropped: the spool
    // holds it, and the gauges say nothing is held any more.
    usage
        .record(UsageEvent::new(s.org).user(s.owner).tokens(1, 0, 0))
        .unwrap();
    let report = usage.shutdown(Duration::from_secs(1)).await;
    assert!(report.pending.is_empty(), "{report:?}");
    let r = readings.read();
    assert_eq!(r.counter(names::RECORDER_EVENTS_RECORDED, &[]), 31);
    assert_eq!(r.counter(names::RECORDER_EVENTS_SENT, &[]), 31);
    for gauge in [
        names::RECORDER_QUEUE_DEPTH,
        names::RECORDER_IN_FLIGHT,
        names::RECORDER_SPOOL_FILES,
        names::RECORDER_SPOOL_BYTES,
    ] {
        assert_eq!(r.gauge(gauge), 0.0, "{gauge}");
    }
}
