//! Two `Tenancy` instances on one database: changes made through one are
//! honoured by the other within a bound, and the distribution of how long
//! that took. Shared by the live tests of each backend
//! (`postgres_live`, `supabase`); `MemoryStore`'s are unit tests beside
//! the propagation task.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tenancy::model::plan::{MigratePlan, NewPlanVersion};
use tenancy::{
    FeatureKey, NewLimit, NewOrganization, PlanKey, PlatformOperator, Tenancy, TenantContext,
    UserId,
};

/// How often the observer reads while it waits for a change.
const PROBE: Duration = Duration::from_millis(1);

/// Observed delays, sorted.
#[derive(Debug, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Latencies(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`th percentile (nearest rank).
    pub fn percentile(&self, p: f64) -> Duration {
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        *self.0.last().expect("samples")
    }

    /// `n=50 p50=12.3 ms p95=20.1 ms max=31.0 ms`
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "n={} min={:.1} ms p50={:.1} ms p95={:.1} ms max={:.1} ms",
            self.len(),
            ms(self.0[0]),
            ms(self.percentile(50.0)),
            ms(self.percentile(95.0)),
            ms(self.max())
        )
    }
}

/// How long after `start` `seen` first answered true, reading every
/// [`PROBE`]; panics with `what` when it did not within `give_up`.
pub async fn until_seen(
    what: &str,
    start: Instant,
    give_up: Duration,
    mut seen: impl AsyncFnMut() -> bool,
) -> Duration {
    loop {
        if seen().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < give_up,
            "{what}: not honoured by the other instance within {give_up:?}"
        );
        tokio::time::sleep(PROBE).await;
    }
}

/// An organization created through `writer`, and its owner's context on
/// `reader`.
pub async fn org_on_both(writer: &Tenancy, reader: &Tenancy, slug: &str) -> TenantContext {
    let owner = UserId::new_v7();
    let org = writer
        .create_organization(owner, NewOrganization::new("Propagation", slug).unwrap())
        .await
        .expect("an organization");
    reader
        .context(owner, org.id)
        .await
        .expect("the reader's context")
}

/// Toggles an override (the feature `exports`, on, off, …) `rounds` times
/// through `writer`'s operator; after each write returns, times how long
/// until `reader`'s cached `has_feature` answers the new value. Each
/// change is first cached stale on the reader (it read the old value).
///
/// `spread`: each write waits a different fraction of it first (0 to
/// 99 %), so that writes fall at every phase of a poller's interval
/// instead of right after the tick that saw the previous one (which would
/// measure the worst case every time).
pub async fn feature_toggles(
    writer: &Tenancy,
    reader: &Tenancy,
    ctx: &TenantContext,
    rounds: usize,
    spread: Duration,
    give_up: Duration,
) -> Latencies {
    let operator = PlatformOperator::new("propagation-test");
    let ops = writer.operator(&operator);
    let key = FeatureKey::from_static("exports");
    assert!(!reader.has_feature(ctx, &key).await.unwrap());
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let on = round % 2 == 0;
        // The reader holds the old value in its cache.
        assert_eq!(reader.has_feature(ctx, &key).await.unwrap(), !on);
        tokio::time::sleep(spread.mul_f64(((round * 37) % 100) as f64 / 100.0)).await;
        if on {
            ops.enable_feature(ctx.org(), "exports").await.unwrap();
        } else {
            ops.disable_feature(ctx.org(), "exports").await.unwrap();
        }
        let start = Instant::now();
        let what = format!("round {round}: exports {}", if on { "on" } else { "off" });
        samples.push(
            until_seen(&what, start, give_up, async || {
                reader.has_feature(ctx, &key).await.unwrap() == on
            })
            .await,
        );
    }
    Latencies::new(samples)
}

/// The plan operations, each timed once: a plan assigned, a limit
/// overridden, a new version created and the organization migrated to
/// it. Returns (what, delay) for each.
pub async fn plan_changes(
    writer: &Tenancy,
    reader: &Tenancy,
    ctx: &TenantContext,
    plan: &str,
    give_up: Duration,
) -> Vec<(&'static str, Duration)> {
    let operator = PlatformOperator::new("propagation-test");
    let ops = writer.operator(&operator);
    let key = PlanKey::parse(plan).unwrap();
    let sso = FeatureKey::from_static("sso");
    let reports = FeatureKey::from_static("reports");
    let tokens = |n: u32| NewLimit::from_limit_type("monthly_tokens", n.into()).unwrap();
    let v1 = ops
        .create_plan_version(
            NewPlanVersion::new(key.clone(), "Pro")
                .unwrap()
                .feature(sso.clone(), true)
                .unwrap()
                .limit(tokens(1_000_000))
                .unwrap(),
        )
        .await
        .expect("version 1");
    let mut timed = Vec::new();

    // Assigned: `sso` turns on for the reader, whose cache said off.
    assert!(!reader.has_feature(ctx, &sso).await.unwrap());
    ops.assign_plan(ctx.org(), v1.plan.clone()).await.unwrap();
    let start = Instant::now();
    timed.push((
        "plan assigned",
        until_seen("plan assigned", start, give_up, async || {
            reader.has_feature(ctx, &sso).await.unwrap()
        })
        .await,
    ));

    // A limit overridden below the plan's: 50 tokens are refused.
    let fifty = Decimal::from(50);
    assert!(
        reader
            .check_limit(ctx, "tokens", fifty)
            .await
            .unwrap()
            .allowed
    );
    ops.set_limit(ctx.org(), tokens(10)).await.unwrap();
    let start = Instant::now();
    timed.push((
        "limit overridden",
        until_seen("limit overridden", start, give_up, async || {
            !reader
                .check_limit(ctx, "tokens", fifty)
                .await
                .unwrap()
                .allowed
        })
        .await,
    ));

    // A new version, then the organization migrated to it: `reports` on.
    let v2 = ops
        .create_plan_version(
            NewPlanVersion::new(key.clone(), "Pro")
                .unwrap()
                .feature(sso.clone(), true)
                .unwrap()
                .feature(reports.clone(), true)
                .unwrap()
                .limit(tokens(2_000_000))
                .unwrap(),
        )
        .await
        .expect("version 2");
    assert!(!reader.has_feature(ctx, &reports).await.unwrap());
    let moved = ops
        .migrate_plan(MigratePlan::new(v1.plan.clone(), v2.plan.version).org(ctx.org()))
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let start = Instant::now();
    timed.push((
        "version created and migrated",
        until_seen("migrated", start, give_up, async || {
            reader.has_feature(ctx, &reports).await.unwrap()
        })
        .await,
    ));
    timed
}
