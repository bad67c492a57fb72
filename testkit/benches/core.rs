//! Core benchmarks on the embedded `MemoryStore`, each beside a baseline
//! measured in the same run:
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench core
//! ```
//!
//! `features`, `context` and `limits` run against an organization with
//! history ([`OrgHistory::default`]: 10 members, 7 limits, 30 days of
//! usage, 3 000 events, seeded through the public API), the owner's
//! context, and 4 features enabled.
//!
//! - `features/*`: a cached `has_feature`, with the key as a `&str`
//!   (validated on every call) and as a `FeatureKey` constant (validated
//!   once), against a bare `HashMap` lookup of the same key (the floor),
//!   and an uncached one (cache TTL zero).
//! - `context/*`: `Tenancy::context` against the store's own membership read.
//! - `limits/*`: `check_limit` (three token limits apply to the owner:
//!   monthly, daily and their own) against the store's own
//!   `usage_snapshot` it is built on (the same query, built once), and
//!   `reserve` + `commit`.
//! - `recorder/*`: `UsageRecorder::record` enqueue cost, p50 and p99 over
//!   200 000 calls, with the backend healthy and down, beside pushing the
//!   same event into a bare `Mutex<VecDeque>`.
//! - `contention/*`: 64 tasks spending a 1 000-token limit 10 at a time,
//!   atomically (`reserve` + `commit`) and naively (`check_limit` then
//!   `record_usage`); the overshoot each produced is printed before the
//!   timings. Each race starts from a fresh org whose one limit is the
//!   1 000 tokens, so that the overshoot is the race's alone.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tenancy::faults::FaultyStore;
use tenancy::limits::CurrentPeriods;
use tenancy::store::DynStore;
use tenancy::store::UsageQuery;
use tenancy::{
    FeatureKey, MemoryStore, MetricKey, NewLimit, NewOrganization, PlatformOperator,
    ReserveOutcome, Tenancy, TenantContext, UsageEvent, UsageRecorder, UserId,
};
use tenancy_testkit::seed::OrgHistory;
use tokio::runtime::Runtime;

struct Setup {
    tenancy: Tenancy,
    store: Arc<DynStore>,
    ctx: TenantContext,
}

fn setup(rt: &Runtime, feature_ttl: Duration) -> Setup {
    rt.block_on(async {
        let store: Arc<DynStore> = Arc::new(MemoryStore::new());
        let tenancy = Tenancy::builder()
            .shared_store(Arc::clone(&store))
            .feature_cache_ttl(feature_ttl)
            .build()
            .unwrap();
        let seeded = OrgHistory::default()
            .seed(&tenancy, "bench", Utc::now())
            .await
            .unwrap();
        let operator = PlatformOperator::new("bench");
        for key in ["veo_avatars", "exports", "brand_kits", "sso"] {
            tenancy
                .operator(&operator)
                .enable_feature(seeded.org, key)
                .await
                .unwrap();
        }
        let ctx = tenancy.context(seeded.owner, seeded.org).await.unwrap();
        Setup {
            tenancy,
            store,
            ctx,
        }
    })
}

fn features(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let cached = setup(&rt, Duration::from_secs(3600));
    let uncached = setup(&rt, Duration::ZERO);
    let baseline: HashMap<String, bool> = ["veo_avatars", "exports", "brand_kits", "sso"]
        .into_iter()
        .map(|k| (k.to_owned(), true))
        .collect();

    let mut group = c.benchmark_group("features");
    // The floor: the same lookup in a plain map, inside the same async
    // harness, so the ratio shows what the cache, TTL check and validation
    // add.
    group.bench_function("baseline_hashmap_lookup", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(baseline.get(black_box("veo_avatars")).copied()) })
    });
    group.bench_function("has_feature_cached", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cached
                    .tenancy
                    .has_feature(&cached.ctx, black_box("veo_avatars"))
                    .await,
            )
        })
    });
    // The key checked once, at compile time: what a hit costs without the
    // per-call validation.
    const K: FeatureKey = FeatureKey::from_static("veo_avatars");
    group.bench_function("has_feature_cached_const_key", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(cached.tenancy.has_feature(&cached.ctx, black_box(&K)).await)
        })
    });
    group.bench_function("has_feature_uncached", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                uncached
                    .tenancy
                    .has_feature(&uncached.ctx, black_box("veo_avatars"))
                    .await,
            )
        })
    });
    group.finish();
}

fn context(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let s = setup(&rt, Duration::from_secs(3600));
    let (user, org) = (s.ctx.user(), s.ctx.org());
    let mut group = c.benchmark_group("context");
    group.bench_function("baseline_store_membership", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.store.membership(org, user).await) })
    });
    group.bench_function("context", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.tenancy.context(user, org).await) })
    });
    group.finish();
}

fn limits(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let s = setup(&rt, Duration::from_secs(3600));
    // The seeded limits leave room for the run: nothing is denied.
    let one = Decimal::ONE;
    // What `check_limit` asks the store, built once: the baseline is the
    // store's read alone, and the ratio is what the facade adds (the key
    // and amount checks, the clock, the periods, the decision).
    let now = Utc::now();
    let query = UsageQuery::new(
        s.ctx.org(),
        CurrentPeriods::at(now, s.ctx.organization().timezone),
        now,
    )
    .with_user(Some(s.ctx.user()))
    .with_metric(Some(MetricKey::parse("tokens").unwrap()));
    let snapshot = rt.block_on(s.store.usage_snapshot(&query)).unwrap();
    assert_eq!(snapshot.limits.len(), 3, "{snapshot:#?}");
    assert!(
        snapshot.limits.iter().all(|l| l.used > Decimal::ZERO),
        "the history counts: {snapshot:#?}"
    );
    let mut group = c.benchmark_group("limits");
    group.bench_function("baseline_store_usage_snapshot", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.store.usage_snapshot(black_box(&query)).await) })
    });
    group.bench_function("check_limit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.tenancy.check_limit(&s.ctx, "tokens", one).await) })
    });
    group.bench_function("reserve_commit", |b| {
        b.to_async(&rt).iter(|| async {
            let hold = s.tenancy.reserve(&s.ctx, "tokens", one).await.unwrap();
            let hold = hold.granted().unwrap();
            black_box(s.tenancy.commit(&hold, one).await.unwrap())
        })
    });
    group.finish();
}

const TASKS: usize = 64;
const LIMIT: i64 = 1_000;
const STEP: i64 = 10;

/// One race: 64 tasks spend a 1 000-token limit 10 at a time until denied.
/// Returns the tokens recorded.
async fn race(atomic: bool) -> Decimal {
    let store = MemoryStore::new();
    let tenancy = Tenancy::builder().store(store).build().unwrap();
    let owner = UserId::new_v7();
    let org = tenancy
        .create_organization(owner, NewOrganization::new("Race", "race").unwrap())
        .await
        .unwrap();
    let operator = PlatformOperator::new("bench");
    let limit = NewLimit::from_limit_type("monthly_tokens", Decimal::from(LIMIT)).unwrap();
    tenancy
        .operator(&operator)
        .set_limit(org.id, limit)
        .await
        .unwrap();
    let ctx = tenancy.context(owner, org.id).await.unwrap();
    let step = Decimal::from(STEP);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (tenancy, ctx) = (tenancy.clone(), ctx.clone());
        tasks.spawn(async move {
            loop {
                if atomic {
                    match tenancy.reserve(&ctx, "tokens", step).await.unwrap() {
                        ReserveOutcome::Granted(hold) => {
                            tokio::task::yield_now().await; // the "expensive call"
                            tenancy.commit(&hold, step).await.unwrap();
                        }
                        ReserveOutcome::Denied(_) => return,
                    }
                } else {
                    if !tenancy
                        .check_limit(&ctx, "tokens", step)
                        .await
                        .unwrap()
                        .allowed
                    {
                        return;
                    }
                    tokio::task::yield_now().await; // the "expensive call"
                    let event = UsageEvent::new(ctx.org()).user(ctx.user()).tokens(10, 0, 0);
                    tenancy.service().record_usage(event).await.unwrap();
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let summary = tenancy.usage_summary(&ctx).await.unwrap();
    summary
        .iter()
        .filter(|l| l.limit.is_some())
        .map(|l| l.used)
        .next()
        .unwrap_or_default()
}

fn contention(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, atomic) in [("reserve_commit", true), ("naive_check_then_record", false)] {
        let runs = 20;
        let started = Instant::now();
        let mut worst = Decimal::ZERO;
        for _ in 0..runs {
            worst = worst.max(rt.block_on(race(atomic)) - Decimal::from(LIMIT));
        }
        let per_run = started.elapsed() / runs;
        println!(
            "contention/{name}: {TASKS} tasks, limit {LIMIT}, step {STEP}: worst overshoot {worst} tokens \
             over {runs} runs; {:.0} spends/s",
            (LIMIT / STEP) as f64 / per_run.as_secs_f64()
        );
    }
    let mut group = c.benchmark_group("contention");
    group.sample_size(20);
    group.bench_function("reserve_commit_64_tasks", |b| {
        b.to_async(&rt).iter(|| race(true))
    });
    group.bench_function("naive_check_then_record_64_tasks", |b| {
        b.to_async(&rt).iter(|| race(false))
    });
    group.finish();
}

const RECORDS: usize = 200_000;

/// p50 and p99 of `call` over `RECORDS` pre-built inputs, timing each call
/// alone (building the input is not timed).
fn percentiles<T>(inputs: Vec<T>, mut call: impl FnMut(T)) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(inputs.len());
    for input in inputs {
        let start = Instant::now();
        call(input);
        times.push(start.elapsed());
    }
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

/// Percentiles matter here, not a mean, so this times each call itself.
fn recorder(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let faults = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let tenancy = Tenancy::builder()
        .shared_store(faults.clone() as Arc<DynStore>)
        .build()
        .unwrap();
    let org = rt
        .block_on(tenancy.create_organization(
            UserId::new_v7(),
            NewOrganization::new("Rec", "rec").unwrap(),
        ))
        .unwrap();
    let event = UsageEvent::new(org.id)
        .user(UserId::new_v7())
        .ai_call("openai", "gpt-4o", "ad_copy")
        .tokens(1200, 0, 300);

    // The floor: the same event cloned into a locked queue.
    let events = || vec![event.clone(); RECORDS];
    let queue = Mutex::new(VecDeque::new());
    let (p50, p99) = percentiles(events(), |e| queue.lock().unwrap().push_back(black_box(e)));
    println!("recorder/baseline_mutex_vecdeque_push: p50 {p50:?} p99 {p99:?}");

    for (name, down) in [
        ("record_backend_healthy", false),
        ("record_backend_down", true),
    ] {
        faults.set_down(down);
        let _guard = rt.enter();
        let recorder = UsageRecorder::builder(tenancy.clone())
            .max_buffered_events(RECORDS * 2)
            .start()
            .unwrap();
        let (p50, p99) = percentiles(events(), |e| {
            black_box(recorder.record(e).unwrap());
        });
        println!(
            "recorder/{name}: p50 {p50:?} p99 {p99:?} (ratio to baseline p50 computed in BENCHMARKS.md)"
        );
        faults.set_down(false);
        rt.block_on(recorder.shutdown(Duration::from_secs(30)));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = features, context, limits, recorder, contention
}
criterion_main!(benches);
