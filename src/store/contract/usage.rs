//! Limits, recording, snapshots, history, alert claims, and isolation.

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{at, hold, kind, limit, new_org, noon, record, shared, usage_at};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::{AlertKey, CurrentPeriods, LimitMode, LimitScope, Period, PeriodKey};
use crate::model::{Organization, UsageEvent};
use crate::store::{CounterScope, DynStore, HistoryQuery, UsageQuery};

/// Setting a limit for a slot that has one replaces its value and mode and
/// keeps its id; another scope is another slot.
pub async fn limits_replace_their_slot(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let first = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Monthly,
        100,
    );
    let stored = store.put_limit(&first).await.unwrap();
    assert_eq!(stored, first);
    let replacement = crate::limits::Limit {
        id: crate::ids::LimitId::new_v7(),
        value: Decimal::from(250),
        mode: LimitMode::Soft,
        ..first.clone()
    };
    let replaced = store.put_limit(&replacement).await.unwrap();
    assert_eq!(
        (replaced.id, replaced.value, replaced.mode),
        (first.id, Decimal::from(250), LimitMode::Soft)
    );
    let own = limit(
        org.id,
        LimitScope::User(owner),
        MetricKey::TOKENS,
        Period::Monthly,
        10,
    );
    store.put_limit(&own).await.unwrap();
    assert_eq!(store.limits(org.id).await.unwrap().len(), 2);
    assert!(store.delete_limit(org.id, own.id).await.unwrap());
    assert!(!store.delete_limit(org.id, own.id).await.unwrap());
    let nowhere = limit(
        OrgId::new_v7(),
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Daily,
        1,
    );
    assert_eq!(kind(store.put_limit(&nowhere).await), ErrorKind::NotFound);
}

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

/// Limits are listed, and a snapshot's limits ordered, by creation time
/// then id, whatever order they were set in.
pub async fn limits_are_ordered_by_creation_time_then_id(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let slot = |scope, metric: &str, period, hours: i64| crate::limits::Limit {
        created_at: noon() + chrono::TimeDelta::hours(hours),
        ..limit(
            org.id,
            scope,
            MetricKey::parse(metric).unwrap(),
            period,
            100,
        )
    };
    let set = [
        slot(LimitScope::Organization, "tokens", Period::Daily, 2),
        slot(LimitScope::User(owner), "tokens", Period::Daily, 0),
        slot(LimitScope::Organization, "tokens", Period::Monthly, 0),
        slot(LimitScope::Organization, "images", Period::Daily, -1),
    ];
    for l in &set {
        store.put_limit(l).await.unwrap();
    }
    let mut expected: Vec<_> = set.iter().map(|l| (l.created_at, l.id)).collect();
    expected.sort();
    let listed: Vec<_> = store
        .limits(org.id)
        .await
        .unwrap()
        .iter()
        .map(|l| (l.created_at, l.id))
        .collect();
    assert_eq!(listed, expected, "limits()");
    let query = UsageQuery {
        org: org.id,
        user: Some(owner),
        metric: None,
        periods: CurrentPeriods::at(noon(), org.timezone),
        now: noon(),
    };
    let snapshot = store.usage_snapshot(&query).await.unwrap();
    let in_snapshot: Vec<_> = snapshot
        .limits
        .iter()
        .map(|u| (u.limit.created_at, u.limit.id))
        .collect();
    assert_eq!(in_snapshot, expected, "usage_snapshot()");
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
}

/// Of many callers claiming the same alert at once, exactly one wins, and
/// it stays claimed.
pub async fn an_alert_is_claimed_once_however_many_race(store: Arc<DynStore>) {
    let (org, _) = new_org(&*store).await;
    let key = AlertKey {
        org: org.id,
        scope: LimitScope::Organization,
        metric: MetricKey::TOKENS,
        period: PeriodKey::containing(Period::Monthly, noon(), org.timezone),
        threshold_percent: 80,
    };
    let claims: Vec<_> = (0..16)
        .map(|_| {
            let (store, key) = (shared(&store), key.clone());
            tokio::spawn(async move { store.claim_alert(&key, noon()).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(!store.claim_alert(&key, noon()).await.unwrap());
    let next = AlertKey {
        threshold_percent: 90,
        ..key
    };
    assert!(store.claim_alert(&next, noon()).await.unwrap());
}

/// Nothing of one organization is visible or writable through another's
/// id: its members, features, limits, usage, history, and holds.
pub async fn organizations_are_kept_apart(store: Arc<DynStore>) {
    let date = |d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let (acme, alice) = new_org(&*store).await;
    let (globex, bob) = new_org(&*store).await;
    let key = crate::ids::FeatureKey::from_static("exports");
    store
        .update_feature(
            acme.id,
            &key,
            &crate::model::FeatureChange::enabled(true),
            noon(),
        )
        .await
        .unwrap();
    let acme_limit = limit(
        acme.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Daily,
        9,
    );
    store.put_limit(&acme_limit).await.unwrap();
    store
        .record_usage(&[record(
            &acme,
            Some(alice),
            &[(MetricKey::TOKENS, 4)],
            noon(),
        )])
        .await
        .unwrap();
    let granted = store
        .reserve(&hold(&acme, alice, 2, noon(), 60))
        .await
        .unwrap();
    assert!(granted.granted);

    assert!(store.membership(globex.id, alice).await.unwrap().is_none());
    let globex_members: Vec<UserId> = store
        .members(globex.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(globex_members, [bob]);
    assert!(store.features(globex.id).await.unwrap().is_empty());
    assert!(store.limits(globex.id).await.unwrap().is_empty());
    assert!(!store.delete_limit(globex.id, acme_limit.id).await.unwrap());
    assert!(!store.delete_feature(globex.id, &key).await.unwrap());
    assert_eq!(store.limits(acme.id).await.unwrap().len(), 1);
    let (used, reserved) =
        usage_at(&*store, &globex, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!((used, reserved), (Decimal::ZERO, Decimal::ZERO));
    let history = HistoryQuery {
        org: globex.id,
        scope: CounterScope::EachUser,
        metric: None,
        period: Period::Daily,
        from: date("2000-01-01"),
        to: date("2100-01-01"),
    };
    assert!(store.usage_history(&history).await.unwrap().is_empty());
    let in_globex = hold(&globex, bob, 1, noon(), 60);
    assert!(store.reserve(&in_globex).await.unwrap().limits.is_empty());
}
