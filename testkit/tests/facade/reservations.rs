//! Reservations: hold an estimate, commit the actual amount (in the
//! periods the hold was taken in) or release it; concurrent holders never
//! overshoot; holds expire, and a hold the store no longer knows records
//! nothing.

use std::time::Duration;

use rust_decimal::Decimal;
use tenancy::limits::LimitLevel;
use tenancy::{ErrorKind, Period, ReserveOutcome, Role, UsageEvent};

use crate::scene::{RESERVATION_TTL, Scene, daily, dec, kind, monthly, scene, utc};

/// Reserves `amount` tokens as `ctx`, which must be granted.
async fn hold(s: &Scene, ctx: &tenancy::TenantContext, amount: i64) -> tenancy::Reservation {
    s.tenancy
        .reserve(ctx, "tokens", dec(amount))
        .await
        .unwrap()
        .granted()
        .expect("fits")
}

/// A reservation holds its estimate; commit records the actual amount and
/// drops the hold; a retried commit counts once.
#[tokio::test]
async fn reserve_then_commit_counts_once() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    s.limit(monthly("tokens", 100)).await;
    let t = &s.tenancy;

    assert_eq!(
        kind(t.reserve(&viewer, "tokens", dec(1)).await),
        ErrorKind::PermissionDenied
    );

    let hold = hold(&s, &member, 60).await;
    assert_eq!(
        (hold.amount(), hold.org(), hold.user()),
        (dec(60), s.org, member.user())
    );
    let d = s.check(&member, "tokens", 50).await;
    assert!(!d.allowed, "the hold counts");
    assert_eq!((d.used, d.reserved), (dec(0), dec(60)));
    let denied = t.reserve(&member, "tokens", dec(50)).await.unwrap();
    assert!(
        matches!(denied, ReserveOutcome::Denied(ref d) if !d.allowed && d.remaining == Some(dec(40)))
    );

    let outcome = t.commit(&hold, dec(30)).await.unwrap();
    assert!(outcome.released_hold && outcome.recorded);
    let retry = t.commit(&hold, dec(30)).await.unwrap();
    assert!(
        !retry.released_hold && !retry.recorded,
        "a retried commit counts once"
    );
    let d = s.check(&member, "tokens", 0).await;
    assert_eq!((d.used, d.reserved), (dec(30), dec(0)));
}

/// Release drops a hold without recording anything, once; a released hold
/// is unknown to a later commit, which records nothing (`NotFound`).
#[tokio::test]
async fn release_drops_the_hold_and_records_nothing() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 100)).await;
    let t = &s.tenancy;
    let hold = hold(&s, &member, 70).await;
    assert!(t.release(&hold).await.unwrap());
    assert!(!t.release(&hold).await.unwrap());
    let d = s.check(&member, "tokens", 0).await;
    assert_eq!((d.used, d.reserved), (dec(0), dec(0)));
    assert_eq!(kind(t.commit(&hold, dec(70)).await), ErrorKind::NotFound);
    assert_eq!(s.used(&member, "tokens").await, dec(0));
}

/// An actual amount above the estimate is recorded in full, even past the
/// limit.
#[tokio::test]
async fn commit_above_estimate_is_recorded() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let hold = hold(&s, &s.owner_ctx, 90).await;
    let event = UsageEvent::new(s.org)
        .user(s.owner)
        .ai_call("anthropic", "claude", "script")
        .tokens(100, 0, 20)
        .cost_usd(Decimal::new(3, 2));
    s.tenancy.commit_event(&hold, event).await.unwrap();
    let d = s.check(&s.owner_ctx, "tokens", 1).await;
    assert_eq!(
        (d.used, d.allowed, d.level),
        (dec(120), false, LimitLevel::Exceeded)
    );
    assert_eq!(s.used(&s.owner_ctx, "cost_usd").await, Decimal::new(3, 2));
}

/// 64 tasks reserving 10 at a time against a limit of 1 000: exactly 100
/// reservations are granted and final usage is 1 000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_overshoot() {
    let s = scene().await;
    s.limit(monthly("tokens", 1_000)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let tenancy = s.tenancy.clone();
        let ctx = s.owner_ctx.clone();
        tasks.spawn(async move {
            let mut granted = 0u32;
            // Bounded, so a store that never denies fails instead of hanging.
            for _ in 0..1_000 {
                match tenancy
                    .reserve(&ctx, "tokens", dec(10))
                    .await
                    .expect("reserve")
                {
                    ReserveOutcome::Granted(hold) => {
                        granted += 1;
                        tenancy.commit(&hold, dec(10)).await.expect("commit");
                    }
                    ReserveOutcome::Denied(_) => return granted,
                }
            }
            panic!("a limit of 1000 still granting after 1000 reservations");
        });
    }
    let mut granted = 0;
    while let Some(result) = tasks.join_next().await {
        granted += result.expect("task");
    }
    assert_eq!(granted, 100);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(1_000));
}

/// An expired hold stops counting without any background job.
#[tokio::test]
async fn reservations_expire() {
    let s = scene().await;
    s.limit(daily("ads_created", 3)).await;
    let ads = |n| s.tenancy.reserve(&s.owner_ctx, "ads_created", dec(n));
    let held = ads(3).await.unwrap().granted().unwrap();
    assert_eq!(held.expires_at(), utc("2026-03-04T10:01:00Z"));
    assert!(!ads(1).await.unwrap().decision().allowed);
    s.clock.advance(RESERVATION_TTL + Duration::from_secs(1));
    let d = s.check(&s.owner_ctx, "ads_created", 3).await;
    assert!(d.allowed && d.reserved.is_zero(), "{d:?}");
    assert!(ads(3).await.unwrap().granted().is_some());
}

/// A commit after its hold expired still records the usage, but reports
/// that it released no live hold.
#[tokio::test]
async fn a_commit_after_expiry_records_but_releases_nothing() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let hold = hold(&s, &s.owner_ctx, 40).await;
    s.clock.advance(RESERVATION_TTL + Duration::from_secs(1));
    let outcome = s.tenancy.commit(&hold, dec(25)).await.unwrap();
    assert!(!outcome.released_hold, "the hold had expired");
    assert!(outcome.recorded, "the work was done: it is billed");
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(25));
    let retry = s.tenancy.commit(&hold, dec(25)).await.unwrap();
    assert!(!retry.recorded && !retry.released_hold);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(25));
}

/// A hold purged after the retention (an expired hold kept for 7 days) is
/// unknown: its commit is `NotFound` and records nothing.
#[tokio::test]
async fn a_commit_of_a_purged_hold_is_not_found() {
    let s = scene().await;
    let stale = hold(&s, &s.owner_ctx, 40).await;
    let retention = tenancy::EXPIRED_HOLD_RETENTION.to_std().unwrap();
    s.clock
        .advance(RESERVATION_TTL + retention + Duration::from_secs(1));
    // A later reservation lets the store purge what expired before the
    // retention.
    let fresh = hold(&s, &s.owner_ctx, 1).await;
    assert_eq!(
        kind(s.tenancy.commit(&stale, dec(40)).await),
        ErrorKind::NotFound
    );
    assert!(s.tenancy.release(&fresh).await.unwrap());
    let lines = s.tenancy.usage_summary(&s.owner_ctx).await.unwrap();
    assert!(lines.is_empty(), "nothing was recorded: {lines:#?}");
}

/// From the end of the retention a commit is `NotFound` even when nothing
/// has purged the hold yet (no reservation since); a second before, it is
/// still recognised.
#[tokio::test]
async fn past_the_retention_a_commit_is_not_found_whether_or_not_purged() {
    let s = scene().await;
    let retention = tenancy::EXPIRED_HOLD_RETENTION.to_std().unwrap();
    let last_chance = hold(&s, &s.owner_ctx, 30).await;
    let too_late = hold(&s, &s.owner_ctx, 40).await;
    s.clock
        .advance(RESERVATION_TTL + retention - Duration::from_secs(1));
    let outcome = s.tenancy.commit(&last_chance, dec(30)).await.unwrap();
    assert!(outcome.recorded && !outcome.released_hold, "{outcome:?}");
    s.clock.advance(Duration::from_secs(1));
    let err = s.tenancy.commit(&too_late, dec(40)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        s.used(&s.owner_ctx, "tokens").await,
        dec(30),
        "only the first"
    );
}

/// A hold taken at 23:59:59 on the last day of a month and committed at
/// 00:00:01 counts in the day and month it was taken in, not in the new
/// ones.
#[tokio::test]
async fn a_commit_counts_in_the_periods_of_its_hold() {
    let s = scene().await;
    s.clock.set(utc("2026-03-31T23:59:59Z"));
    s.limit(daily("tokens", 100)).await;
    let hold = hold(&s, &s.owner_ctx, 100).await;
    s.clock.set(utc("2026-04-01T00:00:01Z"));
    let outcome = s.tenancy.commit(&hold, dec(80)).await.unwrap();
    assert!(outcome.released_hold && outcome.recorded);
    assert_eq!(
        s.used_in(&s.owner_ctx, "tokens", Period::Daily).await,
        dec(0)
    );
    assert_eq!(
        s.used(&s.owner_ctx, "tokens").await,
        dec(0),
        "April is empty"
    );
    let d = s.check(&s.owner_ctx, "tokens", 100).await;
    assert!(d.allowed, "the new day's budget is whole: {d:?}");

    s.clock.set(utc("2026-03-31T23:59:59Z"));
    assert_eq!(
        s.used_in(&s.owner_ctx, "tokens", Period::Daily).await,
        dec(80)
    );
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(80));
}
