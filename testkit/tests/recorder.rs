//! `UsageRecorder` against `MemoryStore` behind an in-process fault injector:
//! outages, 5xx bursts, lost responses, double delivery, drops and
//! shutdowns. After each, the database holds exactly the sum of the unique
//! events recorded.

use std::sync::Arc;
use std::time::Duration;
use tenancy::store::Backend;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tenancy::faults::FaultyStore;
use tenancy::limits::LimitScope;
use tenancy::model::PriceTable;
use tenancy::recorder::RecorderBuilder;
use tenancy::recorder::{Backpressure, UnknownModelPolicy};
use tenancy::store::DynStore;
use tenancy::{
    ErrorKind, EventId, MemoryStore, MetricKey, NewOrganization, Period, Role, Tenancy,
    TenantContext, UsageEvent, UsageRecorder, UserId,
};

#[path = "recorder/flush.rs"]
mod flush;

struct Rig {
    tenancy: Tenancy,
    faults: Arc<FaultyStore>,
    ctx: TenantContext,
}

async fn rig() -> Rig {
    let faults = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let tenancy = Tenancy::builder()
        .shared_store(faults.clone() as Arc<DynStore>)
        .build()
        .unwrap();
    let owner = UserId::new_v7();
    let org = tenancy
        .create_organization(owner, NewOrganization::new("Acme", "acme").unwrap())
        .await
        .unwrap();
    let ctx = tenancy.context(owner, org.id).await.unwrap();
    Rig {
        tenancy,
        faults,
        ctx,
    }
}

/// Short intervals and retry delays, so that tests run quickly.
fn fast(builder: RecorderBuilder) -> RecorderBuilder {
    builder
        .flush_interval(Duration::from_millis(20))
        .retry_delays(Duration::from_millis(5), Duration::from_millis(50))
}

impl Rig {
    /// A recorder builder on the rig's tenancy.
    fn recorder(&self) -> RecorderBuilder {
        UsageRecorder::builder(self.tenancy.clone())
    }

    fn event(&self, tokens: u64) -> UsageEvent {
        UsageEvent::new(self.ctx.org())
            .user(self.ctx.user())
            .ai_call("openai", "gpt-4o", "ad_copy")
            .tokens(tokens, 0, 0)
    }

    /// An event of `tokens` as a line of a spool file.
    fn spool_line(&self, tokens: u64) -> Vec<u8> {
        let event = self.event(tokens).id(EventId::new_v7()).at(Utc::now());
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        line
    }

    /// Leaves a spool file of `n` events of `tokens` each, as a recorder
    /// that crashed would; returns its path.
    fn crashed_spool_file(&self, dir: &std::path::Path, n: u64, tokens: u64) -> std::path::PathBuf {
        let path = dir.join(format!("{}.jsonl", uuid::Uuid::now_v7()));
        let bytes: Vec<u8> = (0..n).flat_map(|_| self.spool_line(tokens)).collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Org-wide tokens stored this month.
    async fn stored_tokens(&self) -> Decimal {
        let lines = self.tenancy.usage_summary(&self.ctx).await.unwrap();
        lines
            .iter()
            .find(|l| {
                l.metric == MetricKey::TOKENS
                    && l.period == Period::Monthly
                    && l.scope == LimitScope::Organization
            })
            .map_or(Decimal::ZERO, |l| l.used)
    }
}

/// Records `n` events of 1..=n tokens; returns their sum.
fn record_many(recorder: &UsageRecorder, rig: &Rig, n: u64) -> Decimal {
    for i in 1..=n {
        recorder.record(rig.event(i)).expect("record");
    }
    Decimal::from(n * (n + 1) / 2)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Eight threads record through clones of one recorder at once, with small
/// batches several in flight and a burst of failures among them: every
/// event is stored once, and every id handed out is distinct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_recording_at_once_store_every_event_once() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 2_000;
    let rig = rig().await;
    let recorder = fast(rig.recorder())
        .batch_size(64)
        .max_in_flight(4)
        .start()
        .unwrap();
    rig.faults.fail_next(5);
    let ids: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (recorder, rig) = (recorder.clone(), &rig);
                scope.spawn(move || {
                    (1..=PER_THREAD)
                        .map(|i| recorder.record(rig.event(t * PER_THREAD + i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let total = THREADS * PER_THREAD;
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len() as u64, total, "every id distinct");
    tokio::time::timeout(Duration::from_secs(30), recorder.flush())
        .await
        .expect("flush")
        .unwrap();
    assert_eq!(
        rig.stored_tokens().await,
        Decimal::from(total * (total + 1) / 2)
    );
    let stats = recorder.stats();
    assert_eq!(
        (stats.recorded, stats.sent, stats.queued),
        (total, total, 0)
    );
    assert_eq!(stats.retried, 5, "the burst was retried");
    recorder.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn batches_by_size_and_flush_does_not_wait_for_the_interval() {
    let rig = rig().await;
    let recorder = rig
        .recorder()
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let expected = record_many(&recorder, &rig, 1_200);
    let report = tokio::time::timeout(Duration::from_secs(10), recorder.flush())
        .await
        .expect("flush returns without waiting an hour")
        .unwrap();
    assert_eq!(
        (report.waited_for, report.stored, report.failed),
        (1_200, 1_200, 0)
    );
    assert_eq!(rig.stored_tokens().await, expected);
    let stats = recorder.stats();
    assert_eq!(
        (stats.recorded, stats.sent, stats.queued),
        (1_200, 1_200, 0)
    );
    assert_eq!(
        rig.faults.usage_calls(),
        3,
        "500 + 500 + 200: one call per batch"
    );
    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert!(report.undelivered.is_empty());
}

#[tokio::test]
async fn an_outage_spills_to_the_spool_and_replays_on_recovery() {
    let rig = rig().await;
    let spool = tempfile::tempdir().unwrap();
    let recorder = fast(rig.recorder())
        .batch_size(50)
        .max_buffered_events(100)
        .spool_dir(spool.path())
        .start()
        .unwrap();
    rig.faults.set_down(true);
    let expected = record_many(&recorder, &rig, 400);
    let stats = recorder.stats();
    assert!(
        stats.spooled >= 250,
        "memory holds 100 + a batch in flight: {stats:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(recorder.stats().retried > 0);
    assert_eq!(rig.stored_tokens().await, Decimal::ZERO);

    rig.faults.set_down(false);
    tokio::time::timeout(Duration::from_secs(20), recorder.flush())
        .await
        .expect("flush after recovery")
        .unwrap();
    assert_eq!(rig.stored_tokens().await, expected);
    let stats = recorder.stats();
    assert_eq!(stats.sent, 400, "{stats:?}");
    assert!(stats.replayed >= 250, "{stats:?}");
    recorder.shutdown(Duration::from_secs(1)).await;
    let left = std::fs::read_dir(spool.path()).unwrap().count();
    assert_eq!(left, 0, "replayed spool files are removed");
}

#[tokio::test]
async fn bursts_lost_responses_and_double_delivery_count_once() {
    let rig = rig().await;
    let recorder = fast(rig.recorder()).batch_size(25).start().unwrap();
    rig.faults.fail_next(4);
    rig.faults.land_then_fail_next(3);
    rig.faults.set_deliver_twice(true);
    let expected = record_many(&recorder, &rig, 300);
    recorder.flush().await.unwrap();
    assert_eq!(rig.stored_tokens().await, expected);
    let stats = recorder.stats();
    // A batch whose response was lost is resent and found already stored.
    assert_eq!(stats.sent + stats.duplicates, 300, "{stats:?}");
    assert!(
        stats.duplicates > 0,
        "lost responses were retried: {stats:?}"
    );
    assert!(stats.retried >= 7, "{stats:?}");
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// How a recorder with undelivered events in its spool ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Its last handle dropped without `shutdown`.
    Dropped,
    /// `shutdown` with a deadline that passes while the backend is down.
    ShutDown,
}

/// Whatever a recorder leaves in its spool while the backend is down —
/// dropped, or shut down past its deadline — the next recorder on the
/// directory replays, once.
#[tokio::test]
async fn the_next_recorder_replays_what_one_left_in_the_spool() {
    for ending in [Ending::Dropped, Ending::ShutDown] {
        let rig = rig().await;
        let spool = tempfile::tempdir().unwrap();
        let spooling = || {
            fast(rig.recorder())
                .spool_dir(spool.path())
                .start()
                .unwrap()
        };
        rig.faults.set_down(true);
        let recorder = spooling();
        let expected = record_many(&recorder, &rig, 100);
        match ending {
            Ending::Dropped => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(recorder);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ending::ShutDown => {
                let report = recorder.shutdown(Duration::from_millis(200)).await;
                assert_eq!(report.stats.spooled, 100, "{ending:?}");
                assert!(report.undelivered.is_empty(), "{ending:?}");
            }
        }
        assert_eq!(rig.stored_tokens().await, Decimal::ZERO, "{ending:?}");

        rig.faults.set_down(false);
        let next = spooling();
        eventually("the spool to be replayed", async || {
            next.stats().replayed == 100
        })
        .await;
        assert_eq!(rig.stored_tokens().await, expected, "{ending:?}");
        let report = next.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.stats.replayed, 100, "replayed once: {ending:?}");
    }
}

/// Another recorder's file, adopted for replay, does not count as this
/// recorder's own spills: `flush` returns only once the events this
/// recorder spilled are stored, not when as many foreign ones are.
#[tokio::test]
async fn flush_waits_for_its_own_spills_not_for_adopted_files() {
    let rig = rig().await;
    let spool = tempfile::tempdir().unwrap();
    let foreign = 50;
    rig.crashed_spool_file(spool.path(), foreign, 1_000);
    rig.faults.set_down(true);
    // It takes the crashed file for replay at once and retries it while
    // the backend is down; meanwhile memory fills and `record` spills.
    let recorder = fast(rig.recorder())
        .batch_size(10)
        .max_buffered_events(10)
        .spool_dir(spool.path())
        .start()
        .unwrap();
    eventually("the crashed file to be taken", async || {
        recorder.stats().retried > 0
    })
    .await;
    let own = record_many(&recorder, &rig, 30);
    assert_eq!(recorder.stats().spooled, 20);

    rig.faults.set_down(false);
    tokio::time::timeout(Duration::from_secs(20), recorder.flush())
        .await
        .expect("flush after recovery")
        .unwrap();
    assert_eq!(
        rig.stored_tokens().await,
        own + Decimal::from(foreign * 1_000),
        "flush returned with this recorder's spills still in the spool"
    );
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// A spool file left by a crash, with a torn line and bytes that are not
/// UTF-8 among its events: the next recorder replays every whole line
/// once, counts the others unreadable, and removes the file.
#[tokio::test]
async fn a_torn_spool_file_is_replayed_around_its_bad_lines() {
    let rig = rig().await;
    let spool = tempfile::tempdir().unwrap();
    let line = |tokens: u64| rig.spool_line(tokens);
    let mut bytes = line(1);
    bytes.extend_from_slice(b"\xff\xfe not json\n");
    bytes.extend_from_slice(&line(2));
    let torn = line(100);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    bytes.push(b'\n');
    bytes.extend_from_slice(&line(4));
    let crashed = spool.path().join(format!("{}.jsonl", uuid::Uuid::now_v7()));
    std::fs::write(&crashed, bytes).unwrap();

    let recorder = fast(rig.recorder())
        .spool_dir(spool.path())
        .start()
        .unwrap();
    eventually("the spool to be replayed", async || {
        recorder.stats().replayed == 3
    })
    .await;
    assert_eq!(rig.stored_tokens().await, dec!(7));
    let stats = recorder.stats();
    assert_eq!((stats.sent, stats.unreadable), (3, 2), "{stats:?}");
    eventually("the file to be removed", async || !crashed.exists()).await;
    recorder.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn without_a_spool_a_full_buffer_rejects_and_nothing_is_dropped() {
    let rig = rig().await;
    rig.faults.set_down(true);
    let recorder = fast(rig.recorder())
        .batch_size(10)
        .max_buffered_events(20)
        .backpressure(Backpressure::Reject)
        .start()
        .unwrap();
    let mut accepted = 0u64;
    let rejection = loop {
        match recorder.record(rig.event(1)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1_000, "the buffer is bounded");
    };
    assert_eq!(rejection.kind(), ErrorKind::Unavailable);
    assert!(rejection.is_retryable());
    let report = recorder.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        report.undelivered.len() as u64,
        accepted,
        "every accepted event is handed back"
    );
    assert_eq!(report.stats.recorded, accepted);
}

#[tokio::test]
async fn invalid_events_are_rejected_at_record_and_never_enqueued() {
    let rig = rig().await;
    let recorder = rig.recorder().start().unwrap();
    let negative = rig.event(1).quantity(MetricKey::ADS_CREATED, dec!(-1));
    let oversized = rig
        .event(1)
        .metadata(serde_json::json!({ "blob": "x".repeat(10_000) }));
    for (event, field) in [(negative, "quantity"), (oversized, "metadata")] {
        let err = recorder.record(event).unwrap_err();
        assert_eq!(
            (err.kind(), err.field()),
            (ErrorKind::InvalidInput, Some(field))
        );
    }
    let err = recorder
        .record_activity(&rig.ctx, "Ads Created!", "brand/1")
        .unwrap_err();
    assert_eq!(err.field(), Some("metric"));
    assert_eq!(recorder.stats().recorded, 0);
    recorder.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn activity_events_count_as_metrics() {
    let rig = rig().await;
    let recorder = rig.recorder().start().unwrap();
    recorder
        .record_activity(&rig.ctx, "ads_created", "brand/7")
        .unwrap();
    recorder
        .record_activity(&rig.ctx, "ads_created", "brand/8")
        .unwrap();
    recorder.flush().await.unwrap();
    // Limits see them: with a limit of 3 ads, one more fits, two do not.
    rig.tenancy
        .operator(&tenancy::PlatformOperator::new("test"))
        .set_limit(
            rig.ctx.org(),
            tenancy::NewLimit::from_limit_type("monthly_ads_created", dec!(3)).unwrap(),
        )
        .await
        .unwrap();
    let one_more = rig
        .tenancy
        .check_limit(&rig.ctx, "ads_created", dec!(1))
        .await
        .unwrap();
    assert!(one_more.allowed);
    assert_eq!(one_more.remaining, Some(dec!(1)));
    let two_more = rig
        .tenancy
        .check_limit(&rig.ctx, "ads_created", dec!(2))
        .await
        .unwrap();
    assert!(!two_more.allowed);
    let lines = rig.tenancy.usage_summary(&rig.ctx).await.unwrap();
    let ads = lines
        .iter()
        .find(|l| l.metric == MetricKey::ADS_CREATED && l.scope == LimitScope::Organization)
        .expect("ads line");
    assert_eq!(ads.used, dec!(2));
    recorder.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn costs_come_from_the_price_table_unless_supplied() {
    let rig = rig().await;
    let recorder = rig
        .recorder()
        .prices(PriceTable::shipped())
        .start()
        .unwrap();
    // gpt-4o: $2.50 / $1.25 / $10 per million input / cached / output.
    recorder
        .record(rig.event(0).tokens(1_000_000, 1_000_000, 100_000))
        .unwrap();
    recorder.record(rig.event(10).cost_usd(dec!(7))).unwrap();
    let unknown = rig.event(10).ai_call("acme-ai", "mystery-1", "x");
    recorder.record(unknown.clone()).unwrap();
    recorder.flush().await.unwrap();
    let lines = rig.tenancy.usage_summary(&rig.ctx).await.unwrap();
    let cost = lines
        .iter()
        .find(|l| {
            l.metric == MetricKey::COST_USD
                && l.period == Period::Monthly
                && l.scope == LimitScope::Organization
        })
        .expect("cost line");
    assert_eq!(
        cost.used,
        dec!(11.75),
        "4.75 computed + 7 supplied + 0 unknown"
    );
    recorder.shutdown(Duration::from_secs(1)).await;

    let recorder = rig
        .recorder()
        .prices(PriceTable::shipped())
        .unknown_model(UnknownModelPolicy::Error)
        .start()
        .unwrap();
    assert_eq!(recorder.record(unknown).unwrap_err().field(), Some("model"));
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// A computed cost that, added to the event's own `cost_usd` quantity,
/// passes the largest amount is refused at `record`, naming `cost_usd`:
/// never accepted and then failed in delivery.
#[tokio::test]
async fn a_computed_cost_out_of_range_with_the_events_own_is_refused_at_record() {
    let rig = rig().await;
    let recorder = rig
        .recorder()
        .prices(PriceTable::shipped())
        .start()
        .unwrap();
    let event = rig
        .event(0)
        .tokens(1, 0, 0)
        .quantity(MetricKey::COST_USD, tenancy::limits::MAX_AMOUNT);
    let err = recorder.record(event).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.field(), Some("cost_usd"), "{err}");
    recorder.flush().await.unwrap();
    let stats = recorder.stats();
    assert_eq!((stats.sent, stats.failed), (0, 0), "{stats:?}");
    recorder.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_event_refused_for_good_does_not_hold_back_the_batch() {
    let rig = rig().await;
    let recorder = fast(rig.recorder()).start().unwrap();
    recorder.record(rig.event(5)).unwrap();
    let orphan = UsageEvent::new(tenancy::OrgId::new_v7()).tokens(9, 0, 0);
    recorder.record(orphan).unwrap();
    recorder.record(rig.event(7)).unwrap();
    let report = recorder.flush().await.unwrap();
    assert_eq!((report.stored, report.failed), (2, 1), "{report:?}");
    assert_eq!(rig.stored_tokens().await, dec!(12));
    let stats = recorder.stats();
    assert_eq!((stats.sent, stats.failed), (2, 1));
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// A response the store does not understand fails no event for good, nor
/// holds `flush` forever: the batch is split, each event is tried once more
/// on its own, and what still fails is kept — spooled and replayed, or,
/// without a spool, handed back at shutdown.
#[tokio::test]
async fn an_unexpected_failure_keeps_the_events() {
    let rig = rig().await;
    let spool = tempfile::tempdir().unwrap();
    let recorder = fast(rig.recorder())
        .spool_dir(spool.path())
        .start()
        .unwrap();
    let expected = record_many(&recorder, &rig, 3);
    // The batch, then each of its three events on its own.
    rig.faults.garble_next(4);
    let err = tokio::time::timeout(Duration::from_secs(10), recorder.flush())
        .await
        .expect("flush returns")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("3 of the events"), "{err}");
    eventually("the kept events to be replayed", async || {
        recorder.stats().replayed == 3
    })
    .await;
    assert_eq!(rig.stored_tokens().await, expected);
    let stats = recorder.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.spooled, stats.retried),
        (3, 0, 3, 0),
        "{stats:?}"
    );
    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert!(report.failed.is_empty() && report.undelivered.is_empty());

    let recorder = fast(rig.recorder()).start().unwrap();
    recorder.record(rig.event(10)).unwrap();
    rig.faults.garble_next(1);
    let err = tokio::time::timeout(Duration::from_secs(10), recorder.flush())
        .await
        .expect("flush returns")
        .unwrap_err();
    assert!(err.message().contains("1 of the events"), "{err}");
    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.undelivered.len(), 1, "{report:?}");
    assert_eq!(report.undelivered[0].total_tokens(), 10);
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(rig.stored_tokens().await, expected);
}

/// A `flush` under way when `shutdown` gives up on a batch returns an
/// error saying the events were not stored, not `Ok`.
#[tokio::test]
async fn a_flush_overtaken_by_shutdown_says_its_events_were_not_stored() {
    let rig = rig().await;
    rig.faults.set_down(true);
    let recorder = fast(rig.recorder()).start().unwrap();
    record_many(&recorder, &rig, 5);
    let flushing = {
        let recorder = recorder.clone();
        tokio::spawn(async move { recorder.flush().await })
    };
    eventually("the batch to be retried", async || {
        recorder.stats().retried > 0
    })
    .await;
    let report = recorder.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.undelivered.len(), 5);
    let err = tokio::time::timeout(Duration::from_secs(5), flushing)
        .await
        .expect("flush returns")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("not stored"), "{err}");
}

// ---- a poison event, panics, and what `record` refuses up front -------------

/// A poison event — every write carrying it panics, however often it is
/// retried — is split from its batch and failed alone, with the panic as
/// its reason: the rest of the batch is stored, and `flush` returns.
#[tokio::test]
async fn a_poison_event_fails_alone_and_the_rest_of_its_batch_is_stored() {
    let rig = rig().await;
    let poison = EventId::new_v7();
    rig.faults.panic_on_event(poison);
    // One batch of three: nothing goes out before `flush`.
    let recorder = rig
        .recorder()
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    recorder.record(rig.event(5)).unwrap();
    recorder.record(rig.event(9).id(poison)).unwrap();
    recorder.record(rig.event(7)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), recorder.flush())
        .await
        .expect("flush returns despite the panics")
        .unwrap();
    assert_eq!(rig.stored_tokens().await, dec!(12));
    let stats = recorder.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.queued),
        (2, 1, 0),
        "{stats:?}"
    );
    assert_eq!(
        rig.faults.usage_calls(),
        4,
        "the batch, then each of its three events on its own"
    );

    // The recorder keeps working.
    recorder.record(rig.event(10)).unwrap();
    recorder.flush().await.unwrap();
    assert_eq!(rig.stored_tokens().await, dec!(22));

    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let failed = &report.failed[0];
    assert_eq!(failed.event.id, Some(poison));
    assert_eq!(failed.event.total_tokens(), 9);
    assert!(failed.reason.contains("panicked"), "{}", failed.reason);
    assert_eq!(report.stats.failed, 1);
    assert!(report.undelivered.is_empty());
}

/// A store call that panics once (a bug, not the data) loses nothing: the
/// batch is split and each event sent again on its own.
#[tokio::test]
async fn a_panic_in_one_store_call_loses_nothing() {
    let rig = rig().await;
    let recorder = rig
        .recorder()
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    rig.faults.panic_next(1);
    let expected = record_many(&recorder, &rig, 5);
    tokio::time::timeout(Duration::from_secs(10), recorder.flush())
        .await
        .expect("flush returns")
        .unwrap();
    assert_eq!(rig.stored_tokens().await, expected);
    let stats = recorder.stats();
    assert_eq!((stats.sent, stats.failed), (5, 0), "{stats:?}");
    assert_eq!(
        rig.faults.usage_calls(),
        6,
        "the batch that panicked, then each of its five events"
    );
    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert!(report.failed.is_empty() && report.undelivered.is_empty());
}

/// A recorder refuses to start on a user client: under row-level security
/// it could write no usage at all, and would fail every event.
#[tokio::test]
async fn a_recorder_refuses_a_user_client() {
    use tenancy::store::Principal;
    use tenancy::supabase::SupabaseStore;

    // Building a client talks to no server.
    let service = SupabaseStore::builder()
        .rest_url("http://127.0.0.1:9/rest/v1")
        .service_role_key("service-role-key")
        .anon_key("anon-key")
        .build()
        .unwrap();
    let user = service.user_client("a-users-access-token").unwrap();
    assert_eq!(user.principal(), Principal::User);
    let tenancy = Tenancy::builder().store(user).build().unwrap();
    let err = UsageRecorder::builder(tenancy).start().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("service role"), "{err}");

    // The service client itself is accepted.
    assert_eq!(service.principal(), Principal::Service);
    let tenancy = Tenancy::builder().store(service).build().unwrap();
    let recorder = UsageRecorder::builder(tenancy).start().unwrap();
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// An event time outside the window — the far future, 40 days old, 10
/// minutes ahead — is refused at `record`, naming `occurred_at`, and
/// nothing is enqueued; times inside it are accepted.
#[tokio::test]
async fn event_times_outside_the_window_are_refused_at_record() {
    let rig = rig().await;
    let recorder = fast(rig.recorder()).start().unwrap();
    let now = Utc::now();
    for at in [
        DateTime::<Utc>::MAX_UTC,
        DateTime::<Utc>::MAX_UTC - TimeDelta::days(1),
        now - TimeDelta::days(40),
        now + TimeDelta::minutes(10),
    ] {
        let err = recorder.record(rig.event(1).at(at)).unwrap_err();
        assert_eq!(
            (err.kind(), err.field()),
            (ErrorKind::InvalidInput, Some("occurred_at")),
            "{at}"
        );
    }
    assert_eq!(recorder.stats().recorded, 0);

    recorder
        .record(rig.event(3).at(now - TimeDelta::days(2)))
        .unwrap();
    recorder
        .record(rig.event(4).at(now + TimeDelta::minutes(1)))
        .unwrap();
    recorder.flush().await.unwrap();
    assert_eq!(recorder.stats().recorded, 2);
    assert_eq!(recorder.stats().sent, 2);
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// Recording an activity consumes usage: a viewer may not, and nothing is
/// enqueued; a member may.
#[tokio::test]
async fn viewers_may_not_record_activities() {
    let rig = rig().await;
    let viewer = UserId::new_v7();
    rig.tenancy
        .add_member(&rig.ctx, viewer, Role::Viewer)
        .await
        .unwrap();
    let viewer = rig.tenancy.context(viewer, rig.ctx.org()).await.unwrap();
    let recorder = rig.recorder().start().unwrap();
    let err = recorder
        .record_activity(&viewer, "ads_created", "brand/7")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(recorder.stats().recorded, 0);

    recorder
        .record_activity(&rig.ctx, "ads_created", "brand/7")
        .unwrap();
    assert_eq!(recorder.stats().recorded, 1);
    recorder.shutdown(Duration::from_secs(1)).await;
}

/// A setting out of range is a `Config` error naming it, at `start`.
#[tokio::test]
async fn settings_out_of_range_are_config_errors_naming_them() {
    let rig = rig().await;
    let cases = [
        (
            "flush_interval",
            rig.recorder().flush_interval(Duration::MAX),
        ),
        (
            "flush_interval",
            rig.recorder().flush_interval(Duration::ZERO),
        ),
        ("batch_size", rig.recorder().batch_size(0)),
        ("batch_size", rig.recorder().batch_size(usize::MAX)),
        ("max_in_flight", rig.recorder().max_in_flight(0)),
        (
            "retry_max_delay",
            rig.recorder()
                .retry_delays(Duration::from_secs(10), Duration::from_secs(1)),
        ),
        (
            "retry_min_delay",
            rig.recorder()
                .retry_delays(Duration::ZERO, Duration::from_secs(1)),
        ),
        (
            "max_buffered_events",
            rig.recorder().batch_size(100).max_buffered_events(10),
        ),
    ];
    for (setting, builder) in cases {
        let err = builder.start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{setting}: {err}");
        assert!(err.message().contains(setting), "{setting}: {err}");
    }
}

/// With a price at the maximum, token counts near `u64::MAX` are refused
/// (`InvalidInput` naming `tokens` or `cost_usd`), never a panic, and
/// nothing is enqueued; a price above the maximum is refused by the table;
/// the largest accepted count at the maximum price records its cost.
#[tokio::test]
async fn huge_token_counts_at_the_highest_price_are_invalid_input() {
    use tenancy::limits::MAX_AMOUNT;
    use tenancy::model::MAX_PRICE_PER_MILLION;
    use tenancy::model::ModelPrice;

    let price = |per_million: Decimal| ModelPrice {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        effective_from: "2020-01-01".parse().unwrap(),
        input_per_million: per_million,
        cached_input_per_million: per_million,
        output_per_million: per_million,
    };
    let mut prices = PriceTable::new();
    let too_dear = prices
        .insert(price(MAX_PRICE_PER_MILLION * dec!(10)))
        .unwrap_err();
    assert_eq!(too_dear.field(), Some("prices"));
    prices.insert(price(MAX_PRICE_PER_MILLION)).unwrap();

    let rig = rig().await;
    let recorder = fast(rig.recorder()).prices(prices).start().unwrap();
    let max = u64::MAX;
    for (input, cached, output) in [
        (max, 0, 0),
        (0, 0, max),
        (max, max, max),
        (max / 2, max / 2, 0),
    ] {
        let err = recorder
            .record(rig.event(0).tokens(input, cached, output))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            matches!(err.field(), Some("tokens" | "cost_usd")),
            "({input}, {cached}, {output}): {err}"
        );
    }
    assert_eq!(recorder.stats().recorded, 0);

    // A dollar a token: the most tokens an event may carry cost the most
    // an amount may be.
    let most: u64 = 1_000_000_000_000_000_000;
    recorder.record(rig.event(0).tokens(most, 0, 0)).unwrap();
    recorder.flush().await.unwrap();
    assert_eq!(rig.stored_tokens().await, MAX_AMOUNT);
    let lines = rig.tenancy.usage_summary(&rig.ctx).await.unwrap();
    let cost = lines
        .iter()
        .find(|l| l.metric == MetricKey::COST_USD && l.scope == LimitScope::Organization)
        .expect("cost line");
    assert_eq!(cost.used, MAX_AMOUNT);
    recorder.shutdown(Duration::from_secs(1)).await;
}
