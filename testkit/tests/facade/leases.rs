//! Budget leases through the facade: a `LeasedMeter` deciding locally on
//! leases over `MemoryStore`, with a fake clock. Sizing shrinks near the
//! limit, one meter cannot starve another, usage is recorded exactly once,
//! shutdown and a crash give the budget back.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tenancy::limits::lease::LeaseConfig;
use tenancy::{ErrorKind, NewLimit, Role, Tenancy, TenantContext, UsageRecorder};

use crate::scene::{Scene, dec as d, kind, scene, tenancy_on};

/// What is held against the org-wide daily tokens limit now, per the store
/// (holds and live leases), and what is used.
async fn daily(s: &Scene, ctx: &TenantContext) -> (Decimal, Decimal) {
    let decision = s
        .tenancy
        .check_limit(ctx, "tokens", Decimal::ZERO)
        .await
        .expect("check");
    (decision.used, decision.reserved)
}

async fn with_daily_limit(value: i64) -> Scene {
    let s = scene().await;
    s.limit(NewLimit::from_limit_type("daily_tokens", d(value)).unwrap())
        .await;
    s
}

/// Lets the meter's background work run (up to 100 yields) until what the
/// store holds satisfies `done`; the caller asserts the exact value after.
async fn held_settles(s: &Scene, done: impl Fn(Decimal) -> bool) {
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if done(daily(s, &s.owner_ctx).await.1) {
            return;
        }
    }
}

fn recorder(tenancy: &Tenancy) -> UsageRecorder {
    UsageRecorder::builder(tenancy.clone())
        .start()
        .expect("recorder")
}

/// Every decision on a lease is local, each commit is one event recorded
/// once, and shutdown flushes it and returns the lease: the store then
/// counts exactly what was committed, and holds nothing.
#[tokio::test]
async fn local_decisions_are_recorded_exactly_once() {
    let s = with_daily_limit(100_000).await;
    let meter = s
        .tenancy
        .leased(recorder(&s.tenancy), LeaseConfig::default())
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..50 {
        let held = meter
            .reserve(&s.owner_ctx, "tokens", d(100))
            .await
            .unwrap()
            .into_granted()
            .expect("fits");
        assert!(held.is_local());
        assert_eq!(held.amount(), d(100));
        ids.insert(meter.commit(held, d(80)).await.unwrap());
    }
    assert_eq!(ids.len(), 50, "one event per commit");
    // Leased (an eighth of 100 000) or, once the recorder delivered some
    // of it, used: never both.
    let (used, leased) = daily(&s, &s.owner_ctx).await;
    assert_eq!(used + leased, d(12_500));
    let report = meter.shutdown().await.unwrap();
    assert!(report.flushed);
    assert_eq!(report.returned, 1);
    assert_eq!(daily(&s, &s.owner_ctx).await, (d(4000), d(0)));
    // After shutdown, decided per call.
    let held = meter
        .reserve(&s.owner_ctx, "tokens", d(5))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    assert!(!held.is_local());
    meter.commit(held, d(5)).await.unwrap();
    assert_eq!(daily(&s, &s.owner_ctx).await, (d(4005), d(0)));
}

/// Slices shrink as the budget does, and the last part is decided by the
/// store call by call: spending 10 at a time, every token of the limit is
/// used and none more.
#[tokio::test]
async fn slices_shrink_and_the_last_part_is_decided_per_call() {
    let s = with_daily_limit(1000).await;
    let config = LeaseConfig::default()
        .with_share(dec!(0.5))
        .with_min_slice(d(10));
    let meter = s.tenancy.leased(recorder(&s.tenancy), config).unwrap();
    let mut decisions = Vec::new();
    let mut leased = Vec::new();
    loop {
        let Some(held) = meter
            .reserve(&s.owner_ctx, "tokens", d(10))
            .await
            .unwrap()
            .into_granted()
        else {
            break;
        };
        decisions.push(held.is_local());
        let (used, reserved) = daily(&s, &s.owner_ctx).await;
        leased.push(used + reserved);
        meter.commit(held, d(10)).await.unwrap();
        assert!(decisions.len() <= 100, "never past the limit");
    }
    assert_eq!(decisions.len(), 100, "the whole budget, 10 at a time");
    // The first slice is half of 1000.
    assert_eq!(leased[0], d(500));
    assert!(decisions[..50].iter().all(|local| *local));
    // The tail went to the store, one call each.
    assert!(!decisions[99], "{decisions:?}");
    let per_call = decisions.iter().filter(|local| !**local).count();
    assert!((1..=10).contains(&per_call), "{per_call} per call");
    meter.shutdown().await.unwrap();
    assert_eq!(daily(&s, &s.owner_ctx).await, (d(1000), d(0)));
}

/// One meter cannot starve another: each grant is at most `share` of what
/// is left, and a renewal returns the unused part before it takes a new
/// one, so a second instance (and per-call callers) still find room.
#[tokio::test]
async fn one_instance_cannot_starve_the_others() {
    let s = with_daily_limit(1000).await;
    let config = LeaseConfig::default().with_share(dec!(0.25));
    let greedy = s
        .tenancy
        .leased(recorder(&s.tenancy), config.clone())
        .unwrap();
    let second = tenancy_on(&s.store, &s.clock, s.alerts.clone());
    let other = second.leased(recorder(&second), config).unwrap();
    // The greedy one asks again and again: a quarter, no more.
    for _ in 0..10 {
        let outcome = greedy.reserve(&s.owner_ctx, "tokens", d(1)).await.unwrap();
        drop(outcome);
    }
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(250));
    // The other instance gets a quarter of the 750 left.
    let ctx = second.context(s.owner, s.org).await.unwrap();
    let mine = other
        .reserve(&ctx, "tokens", d(100))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    assert!(mine.is_local());
    assert_eq!(daily(&s, &s.owner_ctx).await.1, dec!(437.5));
    // Asking for more than any slice it may take, the greedy one returns
    // its lease and is decided per call.
    let big = greedy
        .reserve(&s.owner_ctx, "tokens", d(300))
        .await
        .unwrap()
        .into_granted()
        .expect("per call");
    assert!(!big.is_local());
    assert_eq!(daily(&s, &s.owner_ctx).await.1, dec!(487.5));
    // And a per-call caller still finds the rest, to the last token.
    let rest = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", dec!(512.5))
        .await
        .unwrap();
    assert!(matches!(rest, tenancy::ReserveOutcome::Granted(_)));
    drop((big, mine, rest));
}

/// Near the limit, a lease goes back: the top-up that finds no fresh slice
/// returns the unused part at once, so a per-call caller (another
/// instance) finds it, and the meter decides per call from then on.
#[tokio::test]
async fn near_the_limit_the_unused_lease_goes_back() {
    let s = with_daily_limit(400).await;
    let config = LeaseConfig::default().with_min_slice(d(40));
    let meter = s.tenancy.leased(recorder(&s.tenancy), config).unwrap();
    let mut held = vec![
        meter
            .reserve(&s.owner_ctx, "tokens", d(1))
            .await
            .unwrap()
            .into_granted()
            .unwrap(),
    ];
    // An eighth of 400.
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(50));
    let elsewhere = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", d(310))
        .await
        .unwrap();
    assert!(matches!(elsewhere, tenancy::ReserveOutcome::Granted(_)));
    // 40 left: an eighth of it is under the 40 minimum slice. Taking the
    // lease under half its grant starts a top-up that finds nothing.
    for _ in 0..25 {
        held.push(
            meter
                .reserve_local(&s.owner_ctx, "tokens", d(1))
                .unwrap()
                .expect("decided locally"),
        );
    }
    held_settles(&s, |held| held < d(360)).await;
    // The 24 unused went back; the 26 decided stay covered.
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(310 + 26));
    let late = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", d(64))
        .await
        .unwrap();
    assert!(
        matches!(late, tenancy::ReserveOutcome::Granted(_)),
        "the returned part is anyone's: {late:?}"
    );
    assert!(
        meter
            .reserve_local(&s.owner_ctx, "tokens", d(1))
            .unwrap()
            .is_none()
    );
    // Nothing is left, and the store says so.
    let denied = meter.reserve(&s.owner_ctx, "tokens", d(1)).await.unwrap();
    assert!(
        matches!(denied, tenancy::LeasedOutcome::Denied(_)),
        "{denied:?}"
    );
    drop((held, elsewhere, late, denied));
    meter.shutdown().await.unwrap();
}

/// A reservation dropped without commit or release goes back to its lease
/// at once; released, the same.
#[tokio::test]
async fn dropped_and_released_reservations_go_back_to_the_lease() {
    let s = with_daily_limit(1000).await;
    let meter = s
        .tenancy
        .leased(
            recorder(&s.tenancy),
            LeaseConfig::default().with_share(Decimal::ONE),
        )
        .unwrap();
    for _ in 0..3 {
        let held = meter
            .reserve_local(&s.owner_ctx, "tokens", d(1000))
            .unwrap();
        let held = match held {
            Some(h) => h,
            None => meter
                .reserve(&s.owner_ctx, "tokens", d(1000))
                .await
                .unwrap()
                .into_granted()
                .unwrap(),
        };
        assert!(held.is_local());
        drop(held);
    }
    let held = meter
        .reserve_local(&s.owner_ctx, "tokens", d(1000))
        .unwrap()
        .unwrap();
    assert!(meter.release(held).await.unwrap());
    assert!(
        meter
            .reserve_local(&s.owner_ctx, "tokens", d(1000))
            .unwrap()
            .is_some()
    );
    assert_eq!(daily(&s, &s.owner_ctx).await, (d(0), d(1000)));
}

/// A meter that crashes (dropped without shutdown) keeps its lease until
/// the TTL; then the budget is back for everyone.
#[tokio::test]
async fn a_crashed_instance_lease_lapses_at_its_ttl() {
    let s = with_daily_limit(1000).await;
    let config = LeaseConfig::default().with_share(Decimal::ONE);
    let crashed = s
        .tenancy
        .leased(recorder(&s.tenancy), config.clone())
        .unwrap();
    let held = crashed
        .reserve(&s.owner_ctx, "tokens", d(10))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    std::mem::forget(held);
    drop(crashed);
    let survivor = s.tenancy.leased(recorder(&s.tenancy), config).unwrap();
    let denied = survivor
        .reserve(&s.owner_ctx, "tokens", d(10))
        .await
        .unwrap();
    assert!(
        denied.into_granted().is_none(),
        "the crashed lease holds it all"
    );
    s.clock.advance(std::time::Duration::from_secs(30));
    let back = survivor
        .reserve(&s.owner_ctx, "tokens", d(1000))
        .await
        .unwrap()
        .into_granted()
        .expect("the budget is back");
    drop(back);
}

/// Who may decide: a viewer may not reserve, locally or not; bad settings
/// and amounts name their field; one organization's lease never serves
/// another's members.
#[tokio::test]
async fn roles_settings_and_organizations_are_checked() {
    let s = with_daily_limit(1000).await;
    let meter = s
        .tenancy
        .leased(recorder(&s.tenancy), LeaseConfig::default())
        .unwrap();
    let viewer = s.member(Role::Viewer).await;
    assert_eq!(
        kind(meter.reserve(&viewer, "tokens", d(1)).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(meter.reserve_local(&viewer, "tokens", d(1))),
        ErrorKind::PermissionDenied
    );
    let err = meter
        .reserve(&s.owner_ctx, "tokens", d(-1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().starts_with("estimate"), "{err}");
    let bad = LeaseConfig::default().with_share(d(2));
    assert_eq!(
        kind(s.tenancy.leased(recorder(&s.tenancy), bad)),
        ErrorKind::InvalidInput
    );

    // Another organization on the same meter: its own lease, its own limit.
    let other_owner = tenancy::UserId::new_v7();
    let other = s
        .tenancy
        .create_organization(
            other_owner,
            tenancy::NewOrganization::new("Other", &tenancy_testkit::unique_slug("other")).unwrap(),
        )
        .await
        .unwrap();
    s.op()
        .set_limit(
            other.id,
            NewLimit::from_limit_type("daily_tokens", d(10)).unwrap(),
        )
        .await
        .unwrap();
    let other_ctx = s.tenancy.context(other_owner, other.id).await.unwrap();
    let mine = meter
        .reserve(&s.owner_ctx, "tokens", d(100))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    assert!(mine.is_local());
    let theirs = meter.reserve(&other_ctx, "tokens", d(11)).await.unwrap();
    assert!(theirs.into_granted().is_none(), "their limit is 10");
    assert_eq!(daily(&s, &other_ctx).await.1, d(0));
    drop(mine);
}

/// At midnight a lease of the day that ended decides nothing more: a
/// reservation held across midnight is counted in the day it was decided
/// in, and the next one takes a lease of the new day.
#[tokio::test]
async fn a_lease_ends_with_its_day() {
    let s = crate::scene::scene_at("UTC", "2026-03-04T23:59:50Z").await;
    s.limit(NewLimit::from_limit_type("daily_tokens", d(1000)).unwrap())
        .await;
    let meter = s
        .tenancy
        .leased(recorder(&s.tenancy), LeaseConfig::default())
        .unwrap();
    let before = meter
        .reserve(&s.owner_ctx, "tokens", d(10))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    assert!(before.is_local());
    s.clock.advance(std::time::Duration::from_secs(20));
    // The old day's lease no longer decides.
    assert!(
        meter
            .reserve_local(&s.owner_ctx, "tokens", d(1))
            .unwrap()
            .is_none()
    );
    meter.commit(before, d(10)).await.unwrap();
    let after = meter
        .reserve(&s.owner_ctx, "tokens", d(7))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    assert!(after.is_local(), "a lease of the new day");
    meter.commit(after, d(7)).await.unwrap();
    meter.shutdown().await.unwrap();
    // Today counts 7; the month counts both.
    assert_eq!(daily(&s, &s.owner_ctx).await, (d(7), d(0)));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, d(17));
}

/// Past half its last grant, a lease grows in the background without
/// returning what it covers: local decisions go on meanwhile, and the new
/// part is still a share of what is left.
#[tokio::test]
async fn a_lease_grows_in_the_background_before_it_runs_dry() {
    let s = with_daily_limit(1000).await;
    let meter = s
        .tenancy
        .leased(
            recorder(&s.tenancy),
            LeaseConfig::default().with_share(dec!(0.5)),
        )
        .unwrap();
    let first = meter
        .reserve(&s.owner_ctx, "tokens", d(1))
        .await
        .unwrap()
        .into_granted()
        .unwrap();
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(500));
    let mut held = vec![first];
    for _ in 0..250 {
        held.push(
            meter
                .reserve_local(&s.owner_ctx, "tokens", d(1))
                .unwrap()
                .expect("decided locally"),
        );
    }
    // 249 free, under half of 500: a top-up is on its way.
    held_settles(&s, |held| held > d(500)).await;
    // Half of the 500 left beside the 500 it keeps covering.
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(750));
    for _ in 0..400 {
        held.push(
            meter
                .reserve_local(&s.owner_ctx, "tokens", d(1))
                .unwrap()
                .expect("still local"),
        );
    }
    drop(held);
    meter.shutdown().await.unwrap();
    assert_eq!(daily(&s, &s.owner_ctx).await, (d(0), d(0)));
}

/// Leases carry budgets, not rates: with a rate limit on requests, every
/// reserve through the meter is decided per call, and the rate limit
/// admits its burst and no more.
#[tokio::test]
async fn a_rate_limited_request_is_decided_per_call_with_its_rate_limit() {
    let s = with_daily_limit(100_000).await;
    let rpm = tenancy::NewRateLimit::from_limit_type("minute_requests", d(2)).unwrap();
    s.op().set_rate_limit(s.org, rpm).await.unwrap();
    let meter = s
        .tenancy
        .leased(recorder(&s.tenancy), LeaseConfig::default())
        .unwrap();
    let mut granted = 0;
    for _ in 0..5 {
        if let Some(held) = meter
            .reserve(&s.owner_ctx, "tokens", dec!(10))
            .await
            .unwrap()
            .into_granted()
        {
            granted += 1;
            meter.commit(held, dec!(10)).await.unwrap();
        }
    }
    assert_eq!(granted, 2, "the burst of the minute_requests limit");
    meter.shutdown().await.unwrap();
    // A minute on, the rate limit is free again and the check shows the
    // budget: the two grants' usage, recorded once each, nothing held.
    s.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(daily(&s, &s.owner_ctx).await, (dec!(20), dec!(0)));
}

/// A rate limit set while a lease is live applies from the lease's next
/// top-up: the top-up returns the lease instead of growing it, and the
/// meter then decides per call, rate limit included.
#[tokio::test]
async fn a_rate_limit_set_during_a_lease_applies_from_its_next_top_up() {
    let s = with_daily_limit(1000).await;
    let meter = s
        .tenancy
        .leased(
            recorder(&s.tenancy),
            LeaseConfig::default().with_share(dec!(0.5)),
        )
        .unwrap();
    let mut held = vec![
        meter
            .reserve(&s.owner_ctx, "tokens", d(1))
            .await
            .unwrap()
            .into_granted()
            .unwrap(),
    ];
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(500));
    let rpm = tenancy::NewRateLimit::from_limit_type("minute_requests", d(1)).unwrap();
    s.op().set_rate_limit(s.org, rpm).await.unwrap();
    // Still local until the lease runs under half of its grant.
    for _ in 0..250 {
        held.push(
            meter
                .reserve_local(&s.owner_ctx, "tokens", d(1))
                .unwrap()
                .expect("decided locally"),
        );
    }
    held_settles(&s, |held| held < d(500)).await;
    // The unused 249 went back; the 251 decided stay covered.
    assert_eq!(daily(&s, &s.owner_ctx).await.1, d(251));
    assert!(
        meter
            .reserve_local(&s.owner_ctx, "tokens", d(1))
            .unwrap()
            .is_none()
    );
    let first = meter.reserve(&s.owner_ctx, "tokens", d(1)).await.unwrap();
    let second = meter.reserve(&s.owner_ctx, "tokens", d(1)).await.unwrap();
    assert!(
        matches!(&first, tenancy::LeasedOutcome::Granted(r) if !r.is_local()),
        "{first:?}"
    );
    assert!(
        matches!(second, tenancy::LeasedOutcome::Denied(_)),
        "the rate limit's burst is 1: {second:?}"
    );
    drop((held, first));
    meter.shutdown().await.unwrap();
}
