//! Every capability at once: organizations are kept apart.

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{hold, limit, new_org, noon, record, usage_at};
use crate::ids::{MetricKey, UserId};
use crate::limits::{LimitScope, Period};
use crate::store::{CounterScope, DynStore, HistoryQuery};

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
