//! `MeteringStore`: recording and reading usage (holds are in `reserve`).

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{at, kind, limit, new_org, noon, record, shared, usage_at};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::{CurrentPeriods, LimitScope, Period};
use crate::model::{Organization, UsageEvent};
use crate::store::{CounterScope, DynStore, HistoryQuery, UsageQuery};

/// An event id counts once: repeated inside a batch, and sent again later.
pub async fn record_is_idempotent_by_event_id(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let event = record(&org, Some(owner), &[(MetricKey::TOKENS, 7)], noon());
    let first = store
        .record_usage(&[event.clone(), event.clone()])
        .await
        .unwrap();
    assert_eq!((first.inserted, first.duplicates), (1, 1));
    let again = store.record_usage(&[event]).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 1));
    let (used, _) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(used, Decimal::from(7));
}

/// A store adds the amounts it is given — computed by the core — and
/// derives nothing from the event's own fields: an event reporting 1 000
/// tokens whose record says 3 counts 3.
pub async fn record_counts_exactly_the_given_amounts(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let mut r = UsageEvent::new(org.id)
        .user(owner)
        .tokens(600, 100, 300)
        .cost_usd(Decimal::new(5, 1))
        .into_record(noon(), org.timezone)
        .unwrap();
    r.amounts = vec![
        (MetricKey::TOKENS, Decimal::from(3)),
        (MetricKey::ADS_CREATED, Decimal::ONE),
    ];
    store.record_usage(&[r]).await.unwrap();
    let count = |metric: MetricKey| {
        let store = shared(&store);
        let org = org.clone();
        async move {
            usage_at(&*store, &org, &metric, Period::Monthly, noon())
                .await
                .0
        }
    };
    assert_eq!(count(MetricKey::TOKENS).await, Decimal::from(3));
    assert_eq!(count(MetricKey::ADS_CREATED).await, Decimal::ONE);
    assert_eq!(count(MetricKey::COST_USD).await, Decimal::ZERO);
}

/// A batch with one event for an organization that does not exist is
/// refused whole: its other events are not counted.
pub async fn a_batch_is_recorded_all_or_nothing(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let good = record(&org, Some(owner), &[(MetricKey::TOKENS, 5)], noon());
    let ghost = Organization {
        id: OrgId::new_v7(),
        ..org.clone()
    };
    let bad = record(&ghost, None, &[(MetricKey::TOKENS, 5)], noon());
    assert_eq!(
        kind(store.record_usage(&[good.clone(), bad]).await),
        ErrorKind::NotFound
    );
    let (used, _) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(used, Decimal::ZERO);
    assert_eq!(store.record_usage(&[good]).await.unwrap().inserted, 1);
}

/// A user's snapshot holds the org-wide limits and counters and the user's
/// own, never another user's.
pub async fn snapshots_count_org_wide_and_own_usage(store: Arc<DynStore>) {
    let (org, alice) = new_org(&*store).await;
    let bob = UserId::new_v7();
    for user in [alice, bob] {
        let own = limit(
            org.id,
            LimitScope::User(user),
            MetricKey::TOKENS,
            Period::Daily,
            50,
        );
        store.put_limit(&own).await.unwrap();
    }
    let wide = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Daily,
        100,
    );
    store.put_limit(&wide).await.unwrap();
    let batch = [
        record(&org, Some(alice), &[(MetricKey::TOKENS, 10)], noon()),
        record(&org, Some(bob), &[(MetricKey::TOKENS, 20)], noon()),
    ];
    store.record_usage(&batch).await.unwrap();
    let query = UsageQuery {
        org: org.id,
        user: Some(alice),
        metric: None,
        periods: CurrentPeriods::at(noon(), org.timezone),
        now: noon(),
    };
    let snapshot = store.usage_snapshot(&query).await.unwrap();
    let limits: Vec<(LimitScope, Decimal)> = snapshot
        .limits
        .iter()
        .map(|u| (u.limit.scope, u.used))
        .collect();
    assert_eq!(limits.len(), 2, "{limits:?}");
    assert!(limits.contains(&(LimitScope::Organization, Decimal::from(30))));
    assert!(limits.contains(&(LimitScope::User(alice), Decimal::from(10))));
    assert!(
        snapshot
            .counters
            .iter()
            .all(|c| c.scope.user().is_none_or(|u| u == alice))
    );
    assert!(
        snapshot
            .counters
            .iter()
            .any(|c| c.scope == LimitScope::User(alice))
    );
}

/// History returns each counter's usage per period between two period
/// starts, for the org, one user, or each user.
pub async fn history_reads_past_periods(store: Arc<DynStore>) {
    let (org, alice) = new_org(&*store).await;
    let bob = UserId::new_v7();
    let days = [
        "2026-03-01T10:00:00Z",
        "2026-03-02T10:00:00Z",
        "2026-03-05T10:00:00Z",
    ];
    for (i, day) in days.iter().enumerate() {
        let batch = [
            record(
                &org,
                Some(alice),
                &[(MetricKey::TOKENS, 10 * (i as i64 + 1))],
                at(day),
            ),
            record(&org, Some(bob), &[(MetricKey::TOKENS, 1)], at(day)),
        ];
        store.record_usage(&batch).await.unwrap();
    }
    let date = |d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let query = |scope| HistoryQuery {
        org: org.id,
        scope,
        metric: Some(MetricKey::TOKENS),
        period: Period::Daily,
        from: date("2026-03-02"),
        to: date("2026-03-05"),
    };
    let wide = store
        .usage_history(&query(CounterScope::Organization))
        .await
        .unwrap();
    let series: Vec<(NaiveDate, Decimal)> = wide.iter().map(|v| (v.period.start, v.used)).collect();
    assert_eq!(
        series,
        [
            (date("2026-03-02"), Decimal::from(21)),
            (date("2026-03-05"), Decimal::from(31))
        ]
    );
    let bobs = store
        .usage_history(&query(CounterScope::User(bob)))
        .await
        .unwrap();
    assert_eq!(bobs.len(), 2);
    assert!(
        bobs.iter()
            .all(|v| v.scope == LimitScope::User(bob) && v.used == Decimal::ONE)
    );
    let each = store
        .usage_history(&query(CounterScope::EachUser))
        .await
        .unwrap();
    assert_eq!(each.len(), 4);
    assert!(each.iter().all(|v| v.scope != LimitScope::Organization));
    let monthly = HistoryQuery {
        period: Period::Monthly,
        from: date("2026-03-01"),
        ..query(CounterScope::Organization)
    };
    let month = store.usage_history(&monthly).await.unwrap();
    assert_eq!(
        month.iter().map(|v| v.used).collect::<Vec<_>>(),
        [Decimal::from(63)]
    );
    // The widest bounds a date can have read everything, on every backend.
    let everything = HistoryQuery {
        from: NaiveDate::MIN,
        to: NaiveDate::MAX,
        ..query(CounterScope::Organization)
    };
    let all = store.usage_history(&everything).await.unwrap();
    assert_eq!(
        all.iter().map(|v| v.used).sum::<Decimal>(),
        Decimal::from(63),
        "{all:?}"
    );
}
