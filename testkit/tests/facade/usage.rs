//! Recording usage: idempotent by event id, counted in the period of the
//! event's time, which must lie in the supported window around the
//! tenancy's clock.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use tenancy::clock::Clock;
use tenancy::model::{MAX_EVENT_AGE, MAX_EVENT_LEAD};
use tenancy::{ErrorKind, EventId, OrgId, Period, UsageEvent};

use crate::scene::{dec, kind, monthly, scene, utc};

/// The same event id counts once, within a batch and across calls.
#[tokio::test]
async fn usage_is_idempotent_by_event_id() {
    let s = scene().await;
    let event = UsageEvent::new(s.org)
        .id(EventId::new_v7())
        .user(s.owner)
        .ai_call("openai", "gpt-4o", "ad_copy")
        .tokens(100, 20, 30)
        .cost_usd(Decimal::new(125, 4));
    let first = s
        .tenancy
        .service()
        .record_usage(event.clone())
        .await
        .unwrap();
    assert_eq!((first.inserted, first.duplicates), (1, 0));
    let again = s
        .tenancy
        .service()
        .record_usage_batch(vec![event.clone(), event.clone()])
        .await
        .unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    let fresh = UsageEvent::new(s.org).user(s.owner).tokens(1, 0, 0);
    let mixed = s
        .tenancy
        .service()
        .record_usage_batch(vec![fresh, event])
        .await
        .unwrap();
    assert_eq!((mixed.inserted, mixed.duplicates), (1, 1));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(151));
    assert_eq!(s.used(&s.owner_ctx, "cost_usd").await, Decimal::new(125, 4));
    // Recording for an org that does not exist is NotFound, not a panic.
    assert_eq!(
        kind(
            s.tenancy
                .service()
                .record_usage(UsageEvent::new(OrgId::new_v7()).tokens(1, 0, 0))
                .await
        ),
        ErrorKind::NotFound
    );
}

/// Usage counts into the period its event time falls in.
#[tokio::test]
async fn usage_counts_into_the_event_period() {
    let s = scene().await;
    s.limit(monthly("tokens", 1_000)).await;
    let last_month = utc("2026-02-27T12:00:00Z");
    s.tenancy
        .service()
        .record_usage(
            UsageEvent::new(s.org)
                .user(s.owner)
                .tokens(400, 0, 0)
                .at(last_month),
        )
        .await
        .unwrap();
    s.tenancy
        .service()
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(10, 0, 0))
        .await
        .unwrap();
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(10));
    s.clock.set(utc("2026-02-28T12:00:00Z"));
    assert_eq!(
        s.used(&s.owner_ctx, "tokens").await,
        dec(400),
        "February has the earlier event"
    );
}

/// An event time more than 31 days before or 5 minutes after the
/// tenancy's clock is `InvalidInput` naming `occurred_at`, and a batch
/// holding one writes nothing; the edges of the window are accepted.
#[tokio::test]
async fn event_times_outside_the_window_are_refused() {
    let s = scene().await;
    let now = s.clock.now();
    let at = |when: DateTime<Utc>| {
        UsageEvent::new(s.org)
            .user(s.owner)
            .tokens(1, 0, 0)
            .at(when)
    };
    let refused = [
        DateTime::<Utc>::MAX_UTC,
        DateTime::<Utc>::MIN_UTC,
        now - MAX_EVENT_AGE - TimeDelta::seconds(1),
        now - TimeDelta::days(40),
        now + MAX_EVENT_LEAD + TimeDelta::seconds(1),
        now + TimeDelta::minutes(10),
    ];
    for when in refused {
        let err = s
            .tenancy
            .service()
            .record_usage(at(when))
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.field()),
            (ErrorKind::InvalidInput, Some("occurred_at")),
            "{when}"
        );
    }
    let batch = vec![at(now), at(now + TimeDelta::minutes(10))];
    assert_eq!(
        s.tenancy
            .service()
            .record_usage_batch(batch)
            .await
            .unwrap_err()
            .field(),
        Some("occurred_at")
    );
    assert!(
        s.tenancy
            .usage_summary(&s.owner_ctx)
            .await
            .unwrap()
            .is_empty()
    );

    let edges = vec![at(now - MAX_EVENT_AGE), at(now + MAX_EVENT_LEAD)];
    let outcome = s.tenancy.service().record_usage_batch(edges).await.unwrap();
    assert_eq!(outcome.inserted, 2);
}

/// The window follows the tenancy's clock: an event time accepted before
/// the clock moved 40 days on is refused after.
#[tokio::test]
async fn the_event_window_moves_with_the_clock() {
    let s = scene().await;
    let then = s.clock.now();
    let event = || {
        UsageEvent::new(s.org)
            .user(s.owner)
            .tokens(5, 0, 0)
            .at(then)
    };
    s.tenancy.service().record_usage(event()).await.unwrap();
    s.clock
        .advance(std::time::Duration::from_secs(40 * 24 * 3600));
    assert_eq!(
        s.tenancy
            .service()
            .record_usage(event())
            .await
            .unwrap_err()
            .field(),
        Some("occurred_at")
    );
    s.clock.set(then);
    assert_eq!(
        s.used_in(&s.owner_ctx, "tokens", Period::Daily).await,
        dec(5),
        "only the first was recorded"
    );
}
