//! A rate-limit decision beside `check_limit`, on `MemoryStore` and on
//! `PgStore` (direct connection to a private PostgreSQL cluster, loopback),
//! in one run:
//!
//! ```text
//! cargo bench -p tenancy-testkit --bench rate_limits
//! ```
//!
//! Each backend gets an organization with history ([`OrgHistory::default`]:
//! 10 members, 7 limits, 30 days of usage) and two org-wide rate limits
//! that leave room for the run (`minute_requests` and `minute_tokens` of
//! 10^12), so nothing is denied and every decision takes the same path.
//!
//! - `<backend>/check_limit`: budget and rate (two store calls: the rate
//!   peek, then the budget snapshot);
//! - `<backend>/check_rate`: the rate decision alone, through the facade
//!   (one store call, a peek);
//! - `<backend>/acquire_rate`: the store's atomic GCRA step that `reserve`
//!   makes, charging both limits (one store call, a write on SQL).
//!
//! The PgStore group is skipped, with a line, when PostgreSQL cannot run
//! here.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tenancy::limits::rate::{NewRateLimit, REQUESTS, RateAction, RateRequest};
use tenancy::postgres::PgStore;
use tenancy::store::DynStore;
use tenancy::{MemoryStore, MetricKey, PlatformOperator, Tenancy, TenantContext};
use tenancy_testkit::pg::{self, DATABASE};
use tenancy_testkit::seed::OrgHistory;
use tokio::runtime::Runtime;

struct Setup {
    tenancy: Tenancy,
    store: Arc<DynStore>,
    ctx: TenantContext,
}

async fn setup(store: Arc<DynStore>) -> Setup {
    let tenancy = Tenancy::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let seeded = OrgHistory::default()
        .seed(
            &tenancy,
            &tenancy_testkit::unique_slug("ratebench"),
            Utc::now(),
        )
        .await
        .unwrap();
    let operator = PlatformOperator::new("bench");
    let huge = Decimal::from(1_000_000_000_000i64);
    for limit_type in ["minute_requests", "minute_tokens"] {
        let limit = NewRateLimit::from_limit_type(limit_type, huge).unwrap();
        tenancy
            .operator(&operator)
            .set_rate_limit(seeded.org, limit)
            .await
            .unwrap();
    }
    let ctx = tenancy.context(seeded.owner, seeded.org).await.unwrap();
    let decision = tenancy
        .check_limit(&ctx, "tokens", Decimal::ONE)
        .await
        .unwrap();
    assert!(
        decision.allowed && decision.used > Decimal::ZERO,
        "the history counts and leaves room: {decision:?}"
    );
    let rate = tenancy
        .check_rate(&ctx, "tokens", Decimal::ONE)
        .await
        .unwrap();
    assert!(rate.allowed && rate.limits.len() == 2, "{rate:?}");
    Setup {
        tenancy,
        store,
        ctx,
    }
}

fn group(c: &mut Criterion, rt: &Runtime, name: &str, s: &Setup) {
    let one = Decimal::ONE;
    let rates = s.store.rate_limits().expect("rate limits");
    let mut group = c.benchmark_group(name);
    group.bench_function("check_limit", |b| {
        b.to_async(rt)
            .iter(|| async { black_box(s.tenancy.check_limit(&s.ctx, "tokens", one).await) })
    });
    group.bench_function("check_rate", |b| {
        b.to_async(rt)
            .iter(|| async { black_box(s.tenancy.check_rate(&s.ctx, "tokens", one).await) })
    });
    group.bench_function("acquire_rate", |b| {
        b.to_async(rt).iter(|| async {
            let request = RateRequest {
                org: s.ctx.org(),
                user: s.ctx.user(),
                charges: vec![(REQUESTS, one), (MetricKey::TOKENS, one)],
                now: Utc::now(),
                action: RateAction::Acquire,
            };
            let result = rates.acquire_rate(&request).await.unwrap();
            assert!(result.granted);
            black_box(result)
        })
    });
    group.finish();
}

fn rate_limits(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let memory = rt.block_on(setup(Arc::new(MemoryStore::new())));
    group(c, &rt, "memory", &memory);
    let Some(cluster) = rt.block_on(pg::shared_with_fixtures()) else {
        println!("SKIPPED pg/*: PostgreSQL cannot run here");
        return;
    };
    let store: Arc<DynStore> = Arc::new(
        PgStore::builder()
            .url(cluster.url(DATABASE))
            .pool_size(4)
            .build()
            .expect("a PgStore"),
    );
    let pg = rt.block_on(setup(store));
    group(c, &rt, "pg", &pg);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = rate_limits
}
criterion_main!(benches);
