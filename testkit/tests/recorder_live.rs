//! `UsageRecorder` live: a `SupabaseStore` talking to the PostgREST
//! stand-in (private PostgreSQL cluster) through a fault-injecting proxy
//! (`tests/support/fault_proxy.rs`). Outage under steady recording, 5xx
//! bursts, lost responses after the write landed, every request delivered
//! twice, and a recorder dropped without shutdown. After each, the database
//! holds exactly the unique events recorded: the same ids in
//! `usage_events` (read through PostgREST as the service role) and the same
//! token sum in `usage_counters` (through `usage_summary`). None lost, none
//! doubled.
//!
//! Without PostgreSQL or the stand-in the tests print a SKIPPED line and
//! pass, unless `TENANCY_REQUIRE_LIVE` is set.

use tenancy_testkit::fault_proxy;
use tenancy_testkit::postgrest as postgrest_server;
use tenancy_testkit::unique_slug;
use tenancy_testkit::{log, spool_files};

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde::Deserialize;
use tenancy::UsageRecorder;
use tenancy::limits::LimitScope;
use tenancy::recorder::{RecorderBuilder, RecorderStats};
use tenancy::supabase::{RetryConfig, SupabaseStore};
use tenancy::{MetricKey, NewOrganization, Period, Tenancy, TenantContext, UsageEvent, UserId};
use uuid::Uuid;

use fault_proxy::{FaultProxy, Mode};
use postgrest_server::Server;

// ---- the rig -----------------------------------------------------------------

/// One org, a tenancy whose store goes through the proxy, and a direct one
/// for checking.
struct Rig {
    proxy: FaultProxy,
    /// Through the proxy: what the recorder uses.
    faulty: Tenancy,
    /// Straight to the stand-in: what the checks use.
    direct: Tenancy,
    direct_store: SupabaseStore,
    ctx: TenantContext,
}

async fn rig(request_timeout: Duration) -> Option<Rig> {
    let server = tokio::task::spawn_blocking(Server::shared)
        .await
        .expect("start the stand-in")?;
    let proxy = FaultProxy::start(server.url()).await;
    let store_at = |url: &str, timeout: Duration| {
        SupabaseStore::builder()
            .rest_url(url)
            .service_role_key(server.service_key())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(1))
            // One quick store-level retry, so the recorder's own retry
            // loop does most of the work and shows in its stats.
            .retry(
                RetryConfig::default()
                    .max_retries(1)
                    .delays(Duration::from_millis(10), Duration::from_millis(50)),
            )
            .build()
            .expect("store")
    };
    let direct_store = store_at(server.url(), Duration::from_secs(20));
    let direct = Tenancy::builder()
        .store(direct_store.clone())
        .build()
        .expect("tenancy");
    let faulty = Tenancy::builder()
        .store(store_at(&proxy.url(), request_timeout))
        .build()
        .expect("tenancy");
    let owner = UserId::new_v7();
    let slug = unique_slug("live");
    let org = direct
        .create_organization(owner, NewOrganization::new("Live", &slug).unwrap())
        .await
        .expect("create the org");
    let ctx = direct.context(owner, org.id).await.expect("context");
    Some(Rig {
        proxy,
        faulty,
        direct,
        direct_store,
        ctx,
    })
}

/// Quick batching and retries, spooling past `max_buffered` events.
fn recorder(
    tenancy: &Tenancy,
    spool: &Path,
    batch_size: usize,
    max_buffered: usize,
) -> RecorderBuilder {
    UsageRecorder::builder(tenancy.clone())
        .batch_size(batch_size)
        .max_buffered_events(max_buffered)
        .flush_interval(Duration::from_millis(50))
        .retry_delays(Duration::from_millis(20), Duration::from_millis(500))
        .spool_dir(spool)
}

/// What was recorded: every id `record` returned, and the token sum.
#[derive(Debug, Default)]
struct Recorded {
    ids: HashSet<Uuid>,
    tokens: u64,
}

impl Recorded {
    fn add(&mut self, id: Uuid, tokens: u64) {
        assert!(self.ids.insert(id), "record returned the id {id} twice");
        self.tokens += tokens;
    }
}

impl Rig {
    fn event(&self, tokens: u64) -> UsageEvent {
        UsageEvent::new(self.ctx.org())
            .user(self.ctx.user())
            .ai_call("openai", "gpt-4o", "live_test")
            .tokens(tokens, 0, 0)
    }

    /// Records `n` events on `recorder`, of 1 to 1,000 tokens each (cycling), and
    /// notes each id and amount in `recorded`.
    fn record_many(&self, recorder: &UsageRecorder, n: u64, recorded: &mut Recorded) {
        for i in 1..=n {
            let tokens = i % 1_000 + 1;
            let id = recorder.record(self.event(tokens)).expect("record");
            recorded.add(id.as_uuid(), tokens);
        }
    }

    /// The org's rows in `usage_events`, read through PostgREST as the
    /// service role: (id, input tokens).
    async fn stored_events(&self) -> Vec<(Uuid, u64)> {
        #[derive(Deserialize)]
        struct Row {
            id: Uuid,
            input_tokens: u64,
        }
        let rows: Vec<Row> = self
            .direct_store
            .fetch(
                self.direct_store
                    .from("usage_events")
                    .select("id,input_tokens")
                    .eq("organization_id", self.ctx.org().to_string()),
            )
            .await
            .expect("read usage_events as the service role");
        rows.into_iter().map(|r| (r.id, r.input_tokens)).collect()
    }

    /// The org-wide monthly token counter (`usage_counters`, through the
    /// usage snapshot RPC).
    async fn counted_tokens(&self) -> Decimal {
        let lines = self
            .direct
            .usage_summary(&self.ctx)
            .await
            .expect("usage summary");
        lines
            .iter()
            .find(|l| {
                l.metric == MetricKey::TOKENS
                    && l.period == Period::Monthly
                    && l.scope == LimitScope::Organization
            })
            .map_or(Decimal::ZERO, |l| l.used)
    }

    /// Asserts the database holds exactly `recorded`: the same ids, each
    /// once, and the same token sum in the log and in the counter.
    async fn assert_exact(&self, recorded: &Recorded, what: &str) {
        let rows = self.stored_events().await;
        let ids: HashSet<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), rows.len(), "{what}: an event id stored twice");
        let lost = recorded.ids.difference(&ids).count();
        let unknown = ids.difference(&recorded.ids).count();
        assert_eq!(
            (rows.len(), lost, unknown),
            (recorded.ids.len(), 0, 0),
            "{what}: stored rows / recorded ids missing from the store / stored ids never recorded"
        );
        let logged: u64 = rows.iter().map(|(_, t)| t).sum();
        assert_eq!(logged, recorded.tokens, "{what}: token sum in usage_events");
        assert_eq!(
            self.counted_tokens().await,
            Decimal::from(recorded.tokens),
            "{what}: token sum in usage_counters"
        );
    }

    /// Waits until the stored rows reach `n` (or `limit` passes).
    async fn wait_for_rows(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.stored_events().await.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Flushes within `limit`: every event recorded before is stored (or
/// failed for good), or the test fails saying where the rest is.
async fn flush_within(recorder: &UsageRecorder, limit: Duration, what: &str) {
    let report = recorder.flush_within(limit).await.expect("flush");
    assert!(
        report.is_complete(),
        "{what}: flush did not finish in {limit:?}: {report:?}, {:?}",
        recorder.stats()
    );
}

// ---- the tests -----------------------------------------------------------------

/// A task that records `per_tick` events every 10 ms until stopped.
struct Steady {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    recorded: Arc<Mutex<Recorded>>,
}

fn steady(rig: &Arc<Rig>, recorder: &UsageRecorder, per_tick: u64) -> Steady {
    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let task = tokio::spawn({
        let (rig, recorder) = (Arc::clone(rig), recorder.clone());
        let (stop, recorded) = (Arc::clone(&stop), Arc::clone(&recorded));
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let mut recorded = recorded.lock().unwrap();
                rig.record_many(&recorder, per_tick, &mut recorded);
            }
        }
    });
    Steady {
        stop,
        task,
        recorded,
    }
}

impl Steady {
    async fn stop(self) -> Recorded {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the recording task");
        std::mem::take(&mut *self.recorded.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_outage_under_steady_recording_loses_and_doubles_nothing() {
    let Some(rig) = rig(Duration::from_secs(5)).await else {
        return;
    };
    let rig = Arc::new(rig);
    let spool = tempfile::tempdir().unwrap();
    let recorder = recorder(&rig.faulty, spool.path(), 100, 300)
        .start()
        .unwrap();
    // 3 events every 10 ms: about 300 events/s.
    let steady = steady(&rig, &recorder, 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_outage = recorder.stats();
    assert!(
        before_outage.sent > 0,
        "healthy at first: {before_outage:?}"
    );

    // 15 s refusing connections, then 15 s answering 503.
    rig.proxy.set_mode(Mode::Refuse);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored_early = rig.stored_events().await.len();
    tokio::time::sleep(Duration::from_secs(14)).await;
    rig.proxy.set_mode(Mode::Unavailable);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let during = recorder.stats();
    let stored_late = rig.stored_events().await.len();
    assert_eq!(
        stored_early, stored_late,
        "nothing gets through during the outage"
    );
    assert!(
        during.spooled > 0 && during.retried > 0,
        "the outage spilled to the spool and was retried: {during:?}"
    );
    assert!(during.queued <= 300, "memory stays bounded: {during:?}");

    rig.proxy.set_mode(Mode::PassThrough);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recorded = steady.stop().await;
    let started = Instant::now();
    flush_within(&recorder, Duration::from_secs(60), "after the outage").await;
    let drained = started.elapsed();
    let stats = recorder.stats();
    let proxy = rig.proxy.stats();
    log(format!(
        "outage: {} events recorded, {} spooled, {} replayed, {} retries; flush after \
         recovery took {drained:?}; proxy {proxy:?}",
        recorded.ids.len(),
        stats.spooled,
        stats.replayed,
        stats.retried
    ));
    assert!(
        recorded.ids.len() >= 30 * 200,
        "a few hundred events per second throughout: {}",
        recorded.ids.len()
    );
    assert!(proxy.refusals >= 1 && proxy.answered_503 > 0, "{proxy:?}");
    assert!(stats.replayed > 0, "{stats:?}");
    rig.assert_exact(&recorded, "30-second outage").await;
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(
        stats.sent,
        recorded.ids.len() as u64,
        "every event counted as newly stored exactly once: {stats:?}"
    );
    let report = recorder.shutdown(Duration::from_secs(5)).await;
    assert!(report.undelivered.is_empty());
    assert!(report.pending.is_empty(), "{report:?}");
    assert_eq!(spool_files(spool.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_xx_bursts_lose_and_double_nothing() {
    let Some(rig) = rig(Duration::from_secs(5)).await else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let recorder = recorder(&rig.faulty, spool.path(), 100, 10_000)
        .start()
        .unwrap();
    let mut recorded = Recorded::default();
    for _ in 0..8 {
        rig.proxy.fail_next(5);
        rig.record_many(&recorder, 250, &mut recorded);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    flush_within(&recorder, Duration::from_secs(30), "after 5xx bursts").await;
    let stats = recorder.stats();
    let proxy = rig.proxy.stats();
    log(format!("5xx bursts: {stats:?}; proxy {proxy:?}"));
    assert!(proxy.answered_503 >= 30, "the bursts happened: {proxy:?}");
    assert!(stats.retried > 0, "{stats:?}");
    rig.assert_exact(&recorded, "5xx bursts").await;
    assert_eq!(stats.sent, 2_000, "{stats:?}");
    recorder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_after_the_write_landed_lose_and_double_nothing() {
    // A short request timeout: a withheld response costs 1 s.
    let Some(rig) = rig(Duration::from_secs(1)).await else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let recorder = recorder(&rig.faulty, spool.path(), 200, 10_000)
        .start()
        .unwrap();
    let mut recorded = Recorded::default();
    // Warm the org cache so the lost responses are record calls.
    rig.record_many(&recorder, 10, &mut recorded);
    flush_within(&recorder, Duration::from_secs(10), "warm-up").await;
    for _ in 0..3 {
        rig.proxy.lose_next(2);
        rig.record_many(&recorder, 400, &mut recorded);
        flush_within(&recorder, Duration::from_secs(30), "after lost responses").await;
    }
    let stats = recorder.stats();
    let proxy = rig.proxy.stats();
    log(format!("lost responses: {stats:?}; proxy {proxy:?}"));
    assert_eq!(proxy.lost, 6, "{proxy:?}");
    assert!(
        stats.duplicates > 0,
        "a resent batch that had landed was recognised: {stats:?}"
    );
    assert_eq!(
        stats.sent + stats.duplicates,
        recorded.ids.len() as u64,
        "{stats:?}"
    );
    rig.assert_exact(&recorded, "lost responses").await;
    recorder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_delivered_twice_loses_and_doubles_nothing() {
    let Some(rig) = rig(Duration::from_secs(5)).await else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let recorder = recorder(&rig.faulty, spool.path(), 100, 10_000)
        .start()
        .unwrap();
    rig.proxy.set_mode(Mode::Duplicate);
    let mut recorded = Recorded::default();
    for _ in 0..10 {
        rig.record_many(&recorder, 200, &mut recorded);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flush_within(&recorder, Duration::from_secs(30), "with duplicates").await;
    assert!(
        rig.proxy.settled(Duration::from_secs(30)).await,
        "second copies delivered"
    );
    let stats = recorder.stats();
    let proxy = rig.proxy.stats();
    log(format!("duplicates: {stats:?}; proxy {proxy:?}"));
    assert!(
        proxy.duplicated_records >= 20 && proxy.duplicated_records == proxy.record_requests,
        "every record call was delivered twice: {proxy:?}"
    );
    rig.assert_exact(&recorded, "every request twice").await;
    assert_eq!(
        stats.sent, 2_000,
        "the first copies stored everything: {stats:?}"
    );
    recorder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_dropped_without_shutdown_is_replayed_by_the_next_one() {
    let Some(rig) = rig(Duration::from_secs(5)).await else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let mut recorded = Recorded::default();

    // The backend is down; the first recorder queues 200, holds a batch of
    // 100 in each delivery slot, spools the rest, and is dropped mid-retry.
    rig.proxy.set_mode(Mode::Refuse);
    let first = recorder(&rig.faulty, spool.path(), 100, 200)
        .start()
        .unwrap();
    let in_memory = 200 + 100 * first.config().max_in_flight as u64;
    rig.record_many(&first, 1_000, &mut recorded);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first_stats: RecorderStats = first.stats();
    assert!(first_stats.spooled >= 1_000 - in_memory, "{first_stats:?}");
    assert!(first_stats.retried > 0, "{first_stats:?}");
    drop(first);

    // A second recorder on the same directory, the backend back.
    let second = recorder(&rig.faulty, spool.path(), 100, 200)
        .start()
        .unwrap();
    rig.proxy.set_mode(Mode::PassThrough);
    rig.record_many(&second, 500, &mut recorded);
    flush_within(&second, Duration::from_secs(30), "the second recorder").await;
    rig.wait_for_rows(recorded.ids.len(), Duration::from_secs(20))
        .await;
    let stats = second.stats();
    log(format!(
        "drop: first {first_stats:?}; second {stats:?}; spool left {:?}",
        spool_files(spool.path())
    ));
    rig.assert_exact(&recorded, "dropped recorder, replayed by the next")
        .await;
    assert!(stats.replayed >= 1_000 - in_memory, "{stats:?}");
    // Nothing is sent again later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.assert_exact(&recorded, "and still exact a moment later")
        .await;
    second.shutdown(Duration::from_secs(5)).await;
    assert_eq!(spool_files(spool.path()), Vec::<String>::new());
}
