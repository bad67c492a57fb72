//! `LimitStore`: a limit per slot, and their order.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::{kind, limit, new_org, noon};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId};
use crate::limits::{CurrentPeriods, LimitMode, LimitScope, Period};
use crate::store::{DynStore, UsageQuery};

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
