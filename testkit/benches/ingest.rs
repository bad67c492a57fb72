//! Sustained usage ingest into PostgreSQL through the PostgREST stand-in
//! (private cluster, loopback, same host): the [`UsageRecorder`] against a
//! naive recorder that sends one request per event
//! (`Tenancy::record_usage`), in events per second, and their ratio. The
//! issue's target for the recorder is 25,000 events/s.
//!
//! The summary also splits the CPU each event costs between this process,
//! the stand-in and PostgreSQL (read from `/proc`): on 2 shared cores their
//! sum bounds the rate. Then a sweep of concurrent `record_usage_batch`
//! calls (batches in flight) and of several recorders side by side.
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench ingest
//! ```
//!
//! Starts its own private PostgreSQL cluster and the stand-in in front of
//! it; skips (with a line) when either is missing. Prints a plain summary
//! after criterion's report; `TENANCY_BENCH_QUICK=1` prints only the
//! default recorder's rate and CPU split. With criterion's `--test` each
//! criterion bench runs once and the summary is the quick one, to check the
//! bench end to end.

use tenancy_testkit::cpu;
use tenancy_testkit::postgrest as postgrest_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rust_decimal_macros::dec;
use tenancy::alerts::AlertSink;
use tenancy::limits::{AlertThresholds, LimitAlert};
use tenancy::supabase::SupabaseStore;
use tenancy::{NewLimit, NewOrganization, OrgId, PlatformOperator, Tenancy, UsageEvent, UserId};
use tenancy::{UsageRecorder, async_trait};
use tokio::runtime::Runtime;

use postgrest_server::Server;

/// Events per recorder measurement.
const RECORDER_EVENTS: usize = 20_000;
/// Events per naive measurement (one request each).
const NAIVE_EVENTS: usize = 1_000;
/// The issue's target.
const TARGET: f64 = 25_000.0;

fn store(server: &Server) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(server.url())
        .service_role_key(server.service_key())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("store")
}

/// A fresh org (no limits unless `limited`) and a user in it.
async fn org(tenancy: &Tenancy, limited: bool) -> (OrgId, UserId) {
    let owner = UserId::new_v7();
    let slug = tenancy_testkit::unique_slug("ingest");
    let org = tenancy
        .create_organization(owner, NewOrganization::new("Ingest", &slug).unwrap())
        .await
        .expect("org");
    if limited {
        tenancy
            .operator(&PlatformOperator::new("bench"))
            .set_limit(
                org.id,
                NewLimit::from_limit_type("monthly_tokens", dec!(1000000000000000)).unwrap(),
            )
            .await
            .expect("limit");
    }
    (org.id, owner)
}

/// A sink that takes 50 ms per alert, as a slow webhook would.
#[derive(Debug)]
struct SlowSink;

#[async_trait]
impl AlertSink for SlowSink {
    async fn deliver(&self, _alert: &LimitAlert) -> tenancy::Result<()> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }
}

/// A sink that takes no time.
#[derive(Debug)]
struct InstantSink;

#[async_trait]
impl AlertSink for InstantSink {
    async fn deliver(&self, _alert: &LimitAlert) -> tenancy::Result<()> {
        Ok(())
    }
}

/// USERS users of one org, each with a small daily token limit of their
/// own, so that their events keep crossing 80, 90 and 100 %: three alerts
/// per user, and an alert check per user per batch.
const ALERTING_USERS: usize = 200;

async fn alerting_org(tenancy: &Tenancy) -> (OrgId, Vec<UserId>) {
    let (org, owner) = org(tenancy, false).await;
    let ctx = tenancy.context(owner, org).await.expect("owner");
    let operator = PlatformOperator::new("bench");
    let mut users = Vec::with_capacity(ALERTING_USERS);
    for _ in 0..ALERTING_USERS {
        let user = UserId::new_v7();
        tenancy
            .add_member(&ctx, user, tenancy::Role::Member)
            .await
            .expect("member");
        let limit = NewLimit::from_limit_type("daily_tokens", dec!(10000))
            .unwrap()
            .for_user(user);
        tenancy
            .operator(&operator)
            .set_limit(org, limit)
            .await
            .expect("limit");
        users.push(user);
    }
    (org, users)
}

/// A tenancy on `store` delivering alerts to `sink`, or with alerts off.
fn tenancy_with(store: &SupabaseStore, sink: Option<Arc<dyn AlertSink>>) -> Tenancy {
    let builder = Tenancy::builder().store(store.clone());
    match sink {
        Some(sink) => builder.shared_alert_sink(sink),
        None => builder.alert_thresholds(AlertThresholds::new([]).expect("no thresholds")),
    }
    .build()
    .expect("tenancy")
}

/// `events` spread over `users` through one default recorder, record to
/// flush; the alert deliveries they cause are left running.
async fn run_alerting(tenancy: &Tenancy, org: OrgId, users: &[UserId], events: usize) -> Duration {
    let recorder = UsageRecorder::builder(tenancy.clone())
        .max_buffered_events(events)
        .start()
        .expect("recorder");
    let started = Instant::now();
    for i in 0..events {
        recorder
            .record(event(org, users[i % users.len()], i))
            .expect("record");
    }
    recorder.flush().await.expect("flush");
    let elapsed = started.elapsed();
    recorder.shutdown(Duration::from_secs(1)).await;
    elapsed
}

fn event(org: OrgId, user: UserId, i: usize) -> UsageEvent {
    UsageEvent::new(org)
        .user(user)
        .ai_call("openai", "gpt-4o", "ingest")
        .tokens(100 + (i % 1_000) as u64, 0, 50)
        .cost_usd(dec!(0.0012))
}

/// Records `events` on `recorders` UsageRecorders (round robin) as fast as
/// `record` allows and flushes; the time from the first `record` to the
/// end of the flush.
async fn run_recorders(
    tenancy: &Tenancy,
    org: OrgId,
    user: UserId,
    recorders: usize,
    batch_size: usize,
    events: usize,
) -> Duration {
    let all: Vec<UsageRecorder> = (0..recorders)
        .map(|_| {
            UsageRecorder::builder(tenancy.clone())
                .batch_size(batch_size)
                .max_buffered_events((events / recorders + batch_size).max(batch_size))
                .start()
                .expect("recorder")
        })
        .collect();
    let started = Instant::now();
    for i in 0..events {
        all[i % recorders]
            .record(event(org, user, i))
            .expect("record");
        // Let the flushers run on a busy runtime now and then.
        if i % 5_000 == 4_999 {
            tokio::task::yield_now().await;
        }
    }
    for recorder in &all {
        recorder.flush().await.expect("flush");
    }
    let elapsed = started.elapsed();
    let mut sent = 0;
    for recorder in all {
        sent += recorder.shutdown(Duration::from_secs(10)).await.stats.sent;
    }
    assert_eq!(sent, events as u64, "every event stored once");
    elapsed
}

/// One `record_usage` request per event, `concurrency` at a time.
async fn run_naive(
    tenancy: &Tenancy,
    org: OrgId,
    user: UserId,
    concurrency: usize,
    events: usize,
) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let tenancy = tenancy.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..events).step_by(concurrency) {
                let outcome = tenancy
                    .service()
                    .record_usage(event(org, user, i))
                    .await
                    .expect("record_usage");
                assert_eq!(outcome.inserted, 1);
            }
        }));
    }
    for task in tasks {
        task.await.expect("naive task");
    }
    started.elapsed()
}

/// `events` as batches of `batch_size` through `record_usage_batch`,
/// `in_flight` batches at a time.
async fn run_batches(
    tenancy: &Tenancy,
    org: OrgId,
    user: UserId,
    in_flight: usize,
    batch_size: usize,
    events: usize,
) -> Duration {
    let batches = events / batch_size;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let tenancy = tenancy.clone();
        tasks.push(tokio::spawn(async move {
            for b in (t..batches).step_by(in_flight) {
                let batch: Vec<UsageEvent> = (0..batch_size)
                    .map(|i| event(org, user, b * batch_size + i))
                    .collect();
                let outcome = tenancy
                    .service()
                    .record_usage_batch(batch)
                    .await
                    .expect("batch");
                assert_eq!(outcome.inserted, batch_size);
            }
        }));
    }
    for task in tasks {
        task.await.expect("batch task");
    }
    started.elapsed()
}

/// CPU seconds used so far by this process, the stand-in, and every
/// `postgres` process on the machine (with reaped children), read from
/// `/proc`: where an ingested event's CPU goes.
#[derive(Debug, Clone, Copy)]
struct CpuSplit {
    client: f64,
    stand_in: f64,
    postgres: f64,
}

impl CpuSplit {
    fn now(stand_in_pid: u32) -> CpuSplit {
        CpuSplit {
            client: cpu::process_seconds(None),
            stand_in: cpu::process_seconds(Some(stand_in_pid)),
            postgres: cpu::postgres_seconds(),
        }
    }

    /// Microseconds per event in each, from `self` to `later`.
    fn per_event(&self, later: &CpuSplit, events: usize) -> (f64, f64, f64) {
        let us = |a: f64, b: f64| (b - a) * 1e6 / events as f64;
        (
            us(self.client, later.client),
            us(self.stand_in, later.stand_in),
            us(self.postgres, later.postgres),
        )
    }
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn criterion_benches(c: &mut Criterion, rt: &Runtime, tenancy: &Tenancy) {
    let (org, user) = rt.block_on(org(tenancy, false));
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(RECORDER_EVENTS as u64));
    group.bench_function("usage_recorder_batch_500", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += run_recorders(tenancy, org, user, 1, 500, RECORDER_EVENTS).await;
            }
            total
        })
    });
    group.throughput(Throughput::Elements(NAIVE_EVENTS as u64));
    group.bench_function("naive_one_request_per_event", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += run_naive(tenancy, org, user, 1, NAIVE_EVENTS).await;
            }
            total
        })
    });
    group.finish();
}

/// The median of `runs` timings of `f`, as events/s.
async fn median_rate<F, Fut>(runs: usize, events: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        rates.push(rate(events, f().await));
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rates[rates.len() / 2]
}

async fn summary(tenancy: &Tenancy, stand_in_pid: u32) {
    let (org, user) = org(tenancy, false).await;
    let (limited_org, limited_user) = self::org(tenancy, true).await;
    println!();
    println!("== ingest summary (PostgreSQL + PostgREST stand-in on loopback, median of 3) ==");
    let cpu_before = CpuSplit::now(stand_in_pid);
    let recorder = median_rate(3, RECORDER_EVENTS, || {
        run_recorders(tenancy, org, user, 1, 500, RECORDER_EVENTS)
    })
    .await;
    let (client_us, stand_in_us, postgres_us) =
        cpu_before.per_event(&CpuSplit::now(stand_in_pid), 3 * RECORDER_EVENTS);
    if short_summary() {
        println!(
            "UsageRecorder (default config): {recorder:.0} events/s; CPU per event: client \
             {client_us:.1} µs, stand-in {stand_in_us:.1} µs, PostgreSQL {postgres_us:.1} µs"
        );
        return;
    }
    let recorder_1000 = median_rate(3, RECORDER_EVENTS, || {
        run_recorders(tenancy, org, user, 1, 1_000, RECORDER_EVENTS)
    })
    .await;
    let recorder_limited = median_rate(3, RECORDER_EVENTS, || {
        run_recorders(tenancy, limited_org, limited_user, 1, 500, RECORDER_EVENTS)
    })
    .await;
    let naive = median_rate(3, NAIVE_EVENTS, || {
        run_naive(tenancy, org, user, 1, NAIVE_EVENTS)
    })
    .await;
    let naive_8 = median_rate(3, NAIVE_EVENTS * 2, || {
        run_naive(tenancy, org, user, 8, NAIVE_EVENTS * 2)
    })
    .await;
    println!(
        "UsageRecorder (default config, batch 500, 4 in flight): {recorder:>9.0} events/s \
         ({RECORDER_EVENTS} events, record→flush)"
    );
    println!(
        "  CPU per event: client {client_us:.1} µs, stand-in {stand_in_us:.1} µs, \
         PostgreSQL {postgres_us:.1} µs (2 cores: at most {:.0} events/s if CPU-bound)",
        2e6 / (client_us + stand_in_us + postgres_us)
    );
    println!(
        "UsageRecorder, batch 1000:                                 {recorder_1000:>9.0} events/s"
    );
    println!(
        "UsageRecorder, batch 500, org with a monthly_tokens limit:  {recorder_limited:>9.0} events/s \
         (one usage snapshot per batch for alerts)"
    );
    println!("naive, one record_usage request per event, sequential:     {naive:>9.0} events/s");
    println!("naive, one request per event, 8 concurrent:                {naive_8:>9.0} events/s");
    println!(
        "ratio UsageRecorder / naive sequential: {:.1}x; / naive 8-concurrent: {:.1}x",
        recorder / naive,
        recorder / naive_8
    );
    println!(
        "target {TARGET:.0} events/s: {}",
        if recorder >= TARGET { "MET" } else { "NOT MET" }
    );
    println!();
    println!("-- batches in flight (record_usage_batch, 20,000 events) --");
    for batch_size in [500, 1_000] {
        for in_flight in [1, 2, 4, 8] {
            let r = median_rate(3, 20_000, || {
                run_batches(tenancy, org, user, in_flight, batch_size, 20_000)
            })
            .await;
            println!("batch {batch_size:>5}, {in_flight} in flight: {r:>9.0} events/s");
        }
    }
    println!();
    println!("-- several UsageRecorders side by side (batch 500, {RECORDER_EVENTS} events) --");
    for recorders in [2, 4] {
        let r = median_rate(3, RECORDER_EVENTS, || {
            run_recorders(tenancy, org, user, recorders, 500, RECORDER_EVENTS)
        })
        .await;
        println!("{recorders} recorders: {r:>9.0} events/s");
    }
}

/// `TENANCY_BENCH_QUICK=1`: only the default recorder's rate and CPU split,
/// no criterion run and no sweeps (for trying a change).
fn quick() -> bool {
    std::env::var_os("TENANCY_BENCH_QUICK").is_some()
}

/// Criterion's `--test`: each criterion bench once, then the quick summary.
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// Whether the summary stops after the default recorder's rate.
fn short_summary() -> bool {
    quick() || test_mode()
}

/// Ingest with a sink that takes 50 ms per alert, beside a sink that takes
/// none and alerts turned off: alert delivery is off the ingestion path
/// when the first ratio stays near 1 (target: within 10 %).
async fn alert_summary(store: &SupabaseStore) {
    let mut rates = Vec::new();
    for (label, sink) in [
        ("alerts off", None),
        (
            "instant sink",
            Some(Arc::new(InstantSink) as Arc<dyn AlertSink>),
        ),
        ("50 ms sink", Some(Arc::new(SlowSink) as Arc<dyn AlertSink>)),
    ] {
        let tenancy = tenancy_with(store, sink);
        let mut runs = Vec::new();
        for _ in 0..3 {
            // A fresh org per run: alerts fire once per threshold and period.
            let (org, users) = alerting_org(&tenancy).await;
            runs.push(rate(
                RECORDER_EVENTS,
                run_alerting(&tenancy, org, &users, RECORDER_EVENTS).await,
            ));
            tenancy.flush_alerts().await;
        }
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        rates.push((label, runs[1]));
    }
    println!();
    println!(
        "-- alerts: {RECORDER_EVENTS} events from {ALERTING_USERS} users with daily limits of \
         their own (600 alerts a run), median of 3 --"
    );
    for (label, rate) in &rates {
        println!("{label:<14} {rate:>9.0} events/s");
    }
    let (off, instant, slow) = (rates[0].1, rates[1].1, rates[2].1);
    println!(
        "50 ms sink / instant sink: {:.2}x the time; / alerts off: {:.2}x (target ≤ 1.10x: {})",
        instant / slow,
        off / slow,
        if instant / slow <= 1.10 {
            "MET"
        } else {
            "NOT MET"
        }
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then there is nothing to run quickly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(server) = Server::shared() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tenancy = Tenancy::builder().store(store(server)).build().unwrap();
    if !quick() || test_mode() {
        let mut criterion = Criterion::default().configure_from_args();
        criterion_benches(&mut criterion, &rt, &tenancy);
        criterion.final_summary();
    }
    rt.block_on(summary(&tenancy, server.pid()));
    if !short_summary() || std::env::var_os("TENANCY_BENCH_ALERTS").is_some() {
        rt.block_on(alert_summary(&store(server)));
    }
}
