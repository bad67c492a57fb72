//! Plans in play on the hot paths, on `MemoryStore`, each beside today's
//! path (an organization without a plan) and a floor, in the same run:
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench plans
//! ```
//!
//! Two organizations with the same history ([`OrgHistory::default`]: 10
//! members, 7 limits, 30 days of usage, 3 000 events):
//!
//! - **no plan** (today's path): 4 features enabled by rows, the 7 limits
//!   as rows;
//! - **plan**: on `pro` version 2 (assigned at version 1, then migrated),
//!   whose version holds the 4 features and 5 limits; the 7 limit rows
//!   are overrides on top (6 replace a plan limit, 1 is the owner's own),
//!   plus an override with an expiry on a feature (`veo_avatars`, for 30
//!   days) and on a limit (`images` monthly, for 30 days), so the cached
//!   entry is bounded by its `valid_until`.
//!
//! - `has_feature/*`: a cached `has_feature` (`FeatureKey` constant), plan
//!   and no plan, beside a bare `HashMap` lookup of the key (the floor
//!   `core` uses).
//! - `check_limit/*`: the limit decision (three token limits apply to the
//!   owner: monthly, daily and their own), plan and no plan, beside the
//!   store's own `usage_snapshot` of each organization (the floor `core`
//!   uses; the plan organization's computes the effective view).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tenancy::limits::CurrentPeriods;
use tenancy::model::plan::{MigratePlan, NewPlanVersion};
use tenancy::store::{DynStore, UsageQuery};
use tenancy::{
    FeatureChange, FeatureKey, MemoryStore, MetricKey, NewLimit, PlanKey, PlatformOperator,
    Tenancy, TenantContext,
};
use tenancy_testkit::seed::OrgHistory;
use tokio::runtime::Runtime;

const FEATURES: [&str; 4] = ["veo_avatars", "exports", "brand_kits", "sso"];

struct Setup {
    tenancy: Tenancy,
    store: Arc<DynStore>,
    no_plan: TenantContext,
    plan: TenantContext,
}

fn setup(rt: &Runtime) -> Setup {
    rt.block_on(async {
        let store: Arc<DynStore> = Arc::new(MemoryStore::new());
        let tenancy = Tenancy::builder()
            .shared_store(Arc::clone(&store))
            .feature_cache_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        let now = Utc::now();
        let operator = PlatformOperator::new("bench");
        let ops = tenancy.operator(&operator);

        let today = OrgHistory::default()
            .seed(&tenancy, "no-plan", now)
            .await
            .unwrap();
        for key in FEATURES {
            ops.enable_feature(today.org, key).await.unwrap();
        }

        let planned = OrgHistory::default()
            .seed(&tenancy, "plan", now)
            .await
            .unwrap();
        let pro = PlanKey::parse("pro").unwrap();
        let version = |tokens: i64| {
            let limit = |t: &str, v: i64| NewLimit::from_limit_type(t, v.into()).unwrap();
            let mut plan = NewPlanVersion::new(pro.clone(), "Pro").unwrap();
            for key in FEATURES {
                plan = plan.feature(FeatureKey::parse(key).unwrap(), true).unwrap();
            }
            plan.limit(limit("monthly_tokens", tokens))
                .unwrap()
                .limit(limit("daily_tokens", tokens / 5))
                .unwrap()
                .limit(limit("monthly_cost_usd", 2_000))
                .unwrap()
                .limit(limit("monthly_images", 50_000))
                .unwrap()
                .limit(limit("daily_api_calls", 20_000))
                .unwrap()
        };
        let v1 = ops.create_plan_version(version(100_000_000)).await.unwrap();
        let v2 = ops.create_plan_version(version(200_000_000)).await.unwrap();
        ops.assign_plan(planned.org, v1.plan.clone()).await.unwrap();
        ops.migrate_plan(MigratePlan::new(v1.plan, v2.plan.version).org(planned.org))
            .await
            .unwrap();
        let month = now + TimeDelta::days(30);
        ops.update_feature(
            planned.org,
            "veo_avatars",
            FeatureChange::enabled(true).until(Some(month)),
        )
        .await
        .unwrap();
        ops.set_limit(
            planned.org,
            NewLimit::from_limit_type("monthly_images", 30_000.into())
                .unwrap()
                .until(month),
        )
        .await
        .unwrap();

        let no_plan = tenancy.context(today.owner, today.org).await.unwrap();
        let plan = tenancy.context(planned.owner, planned.org).await.unwrap();
        let entitlements = tenancy.entitlements(&plan).await.unwrap();
        assert!(entitlements.valid_until.is_some(), "{entitlements:#?}");
        Setup {
            tenancy,
            store,
            no_plan,
            plan,
        }
    })
}

fn has_feature(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let s = setup(&rt);
    let baseline: HashMap<String, bool> =
        FEATURES.into_iter().map(|k| (k.to_owned(), true)).collect();
    const K: FeatureKey = FeatureKey::from_static("veo_avatars");
    for ctx in [&s.no_plan, &s.plan] {
        assert!(rt.block_on(s.tenancy.has_feature(ctx, &K)).unwrap());
    }
    let mut group = c.benchmark_group("has_feature");
    group.bench_function("baseline_hashmap_lookup", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(baseline.get(black_box("veo_avatars")).copied()) })
    });
    group.bench_function("cached_no_plan", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.tenancy.has_feature(&s.no_plan, black_box(&K)).await) })
    });
    group.bench_function("cached_plan", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.tenancy.has_feature(&s.plan, black_box(&K)).await) })
    });
    group.finish();
}

fn check_limit(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let s = setup(&rt);
    let one = Decimal::ONE;
    let now = Utc::now();
    let query = UsageQuery::new(
        s.no_plan.org(),
        CurrentPeriods::at(now, s.no_plan.organization().timezone),
        now,
    )
    .with_user(Some(s.no_plan.user()))
    .with_metric(Some(MetricKey::parse("tokens").unwrap()));
    let snapshot = rt.block_on(s.store.usage_snapshot(&query)).unwrap();
    assert_eq!(snapshot.limits.len(), 3, "{snapshot:#?}");
    let plan_query = UsageQuery::new(
        s.plan.org(),
        CurrentPeriods::at(now, s.plan.organization().timezone),
        now,
    )
    .with_user(Some(s.plan.user()))
    .with_metric(Some(MetricKey::parse("tokens").unwrap()));
    let snapshot = rt.block_on(s.store.usage_snapshot(&plan_query)).unwrap();
    assert_eq!(snapshot.limits.len(), 3, "{snapshot:#?}");
    for ctx in [&s.no_plan, &s.plan] {
        let decision = rt
            .block_on(s.tenancy.check_limit(ctx, "tokens", one))
            .unwrap();
        assert!(decision.allowed, "{decision:#?}");
    }
    let mut group = c.benchmark_group("check_limit");
    group.bench_function("baseline_store_usage_snapshot", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.store.usage_snapshot(black_box(&query)).await) })
    });
    group.bench_function("baseline_store_usage_snapshot_plan", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.store.usage_snapshot(black_box(&plan_query)).await) })
    });
    group.bench_function("no_plan", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.tenancy.check_limit(&s.no_plan, "tokens", one).await) })
    });
    group.bench_function("plan", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(s.tenancy.check_limit(&s.plan, "tokens", one).await) })
    });
    group.finish();
}

/// The time per call of `batch` calls of `f`, in ns.
async fn per_call(f: &impl AsyncFn(), batch: usize) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..batch {
        f().await;
    }
    start.elapsed().as_nanos() as f64 / batch as f64
}

/// The median time per call of `a` and of `b`, over `rounds` rounds of
/// `batch` calls each, interleaved (alternating which goes first, so drift
/// favours neither).
fn interleaved(
    rt: &Runtime,
    rounds: usize,
    batch: usize,
    a: impl AsyncFn(),
    b: impl AsyncFn(),
) -> (f64, f64) {
    let (mut ta, mut tb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    rt.block_on(async {
        for round in 0..rounds {
            if round % 2 == 0 {
                ta.push(per_call(&a, batch).await);
                tb.push(per_call(&b, batch).await);
            } else {
                tb.push(per_call(&b, batch).await);
                ta.push(per_call(&a, batch).await);
            }
        }
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(ta), median(tb))
}

/// Plan against no plan, interleaved in small rounds (steadier than two
/// criterion runs minutes apart on a shared machine), printed before the
/// criterion measurements.
fn interleaved_ratios(_: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let s = setup(&rt);
    const K: FeatureKey = FeatureKey::from_static("veo_avatars");
    let (no_plan, plan) = interleaved(
        &rt,
        201,
        2_000,
        async || {
            black_box(
                s.tenancy
                    .has_feature(&s.no_plan, black_box(&K))
                    .await
                    .unwrap(),
            );
        },
        async || {
            black_box(s.tenancy.has_feature(&s.plan, black_box(&K)).await.unwrap());
        },
    );
    println!(
        "interleaved medians, cached has_feature: no plan {no_plan:.1} ns, plan {plan:.1} ns, \
         plan/no plan {:.3}",
        plan / no_plan
    );
    let one = Decimal::ONE;
    let (no_plan, plan) = interleaved(
        &rt,
        201,
        200,
        async || {
            black_box(
                s.tenancy
                    .check_limit(&s.no_plan, "tokens", one)
                    .await
                    .unwrap(),
            );
        },
        async || {
            black_box(s.tenancy.check_limit(&s.plan, "tokens", one).await.unwrap());
        },
    );
    println!(
        "interleaved medians, check_limit: no plan {no_plan:.0} ns, plan {plan:.0} ns, \
         plan/no plan {:.3}",
        plan / no_plan
    );
}

criterion_group!(benches, interleaved_ratios, has_feature, check_limit);
criterion_main!(benches);
