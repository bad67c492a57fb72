//! Period rollovers in the organization's time zone, across a
//! daylight-saving change.

use tenancy::{MetricKey, Period, UsageEvent};

use crate::scene::{daily, dec, monthly, scene_at, utc};

/// Day-end rollover in Asia/Tokyo (UTC+9): the day ends at 15:00 UTC.
#[tokio::test]
async fn daily_rollover_in_tokyo() {
    let s = scene_at("Asia/Tokyo", "2026-01-31T14:58:00Z").await;
    s.limit(daily("ads_created", 2)).await;
    s.limit(monthly("ads_created", 3)).await;
    let ad = || {
        UsageEvent::new(s.org)
            .user(s.owner)
            .quantity(MetricKey::ADS_CREATED, dec(1))
    };
    s.tenancy.service().record_usage(ad()).await.unwrap();
    s.tenancy.service().record_usage(ad()).await.unwrap();
    let d = s.check(&s.owner_ctx, "ads_created", 1).await;
    assert!(!d.allowed);
    assert_eq!(d.resets_at, Some(utc("2026-01-31T15:00:00Z")));

    // Two minutes later it is 1 February in Tokyo: a new day and a new month.
    s.clock.set(utc("2026-01-31T15:00:00Z"));
    let d = s.check(&s.owner_ctx, "ads_created", 2).await;
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.used, dec(0));
    assert_eq!(d.resets_at, Some(utc("2026-02-01T15:00:00Z")));
    s.tenancy.service().record_usage(ad()).await.unwrap();
    s.clock.set(utc("2026-02-01T15:00:00Z"));
    // New day, same month: the monthly limit (3) now leaves 2.
    let d = s.check(&s.owner_ctx, "ads_created", 2).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, Some(dec(2)));
    assert_eq!(
        d.resets_at,
        Some(utc("2026-02-02T15:00:00Z")),
        "the daily limit is as tight and resets first"
    );
}

/// Month-end rollover in America/New_York, and days across the November
/// daylight-saving change (a 25-hour day).
#[tokio::test]
async fn monthly_rollover_in_new_york_across_dst() {
    let s = scene_at("America/New_York", "2026-10-31T12:00:00Z").await;
    s.limit(monthly("tokens", 100)).await;
    s.limit(daily("tokens", 80)).await;
    let tokens = |n| UsageEvent::new(s.org).user(s.owner).tokens(n, 0, 0);
    s.tenancy.service().record_usage(tokens(70)).await.unwrap();
    let d = s.check(&s.owner_ctx, "tokens", 40).await;
    assert!(!d.allowed);
    // October ends at midnight EDT (UTC-4).
    assert_eq!(d.resets_at, Some(utc("2026-11-01T04:00:00Z")));

    // 23:59 EDT on 31 October is still October.
    s.clock.set(utc("2026-11-01T03:59:59Z"));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(70));
    s.clock.set(utc("2026-11-01T04:00:00Z"));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(0));

    // 1 November is 25 hours long: clocks fall back at 02:00 EDT, and the
    // next day starts at midnight EST (UTC-5).
    s.tenancy.service().record_usage(tokens(50)).await.unwrap();
    let d = s.check(&s.owner_ctx, "tokens", 40).await;
    assert!(!d.allowed);
    assert_eq!(d.resets_at, Some(utc("2026-11-02T05:00:00Z")));
    s.clock.set(utc("2026-11-02T04:30:00Z"));
    assert_eq!(
        s.used_in(&s.owner_ctx, "tokens", Period::Daily).await,
        dec(50),
        "still 1 November in New York"
    );
    s.clock.set(utc("2026-11-02T05:00:00Z"));
    let d = s.check(&s.owner_ctx, "tokens", 40).await;
    assert!(d.allowed);
    assert_eq!(
        d.limit,
        Some(dec(100)),
        "the monthly limit is now the tighter: 50 left"
    );
    assert_eq!(d.remaining, Some(dec(50)));
}
