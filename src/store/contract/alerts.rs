//! `AlertStore`: an alert is claimed once.

use std::sync::Arc;

use super::{new_org, noon, shared};
use crate::ids::MetricKey;
use crate::limits::{AlertKey, LimitScope, Period, PeriodKey};
use crate::store::DynStore;

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
