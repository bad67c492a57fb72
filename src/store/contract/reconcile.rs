//! `MeteringStore`: reconciling counters with the event log. Drift cannot
//! be made through the trait; each backend's own tests inject it (a
//! counter changed, deleted, or added without events) and check that
//! `reconcile_usage` finds exactly it and `repair_usage` restores the truth.

use std::sync::Arc;

use chrono::TimeDelta;

use super::{hold, kind, new_org, noon, record};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::{CurrentPeriods, Period, PeriodKey};
use crate::store::{CommitRequest, DynStore, ReconcileQuery};

/// Counters built by recording (org-wide and per user, several metrics, two
/// days, a committed and a live hold, a duplicate) agree with the log in
/// every period: the check finds nothing, and a repair changes nothing.
pub async fn recorded_counters_agree_with_the_log(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    let member = UserId::new_v7();
    let tomorrow = noon() + TimeDelta::days(1);
    let events = [
        record(
            &org,
            Some(owner),
            &[(MetricKey::TOKENS, 120), (MetricKey::COST_USD, 2)],
            noon(),
        ),
        record(&org, Some(member), &[(MetricKey::TOKENS, 30)], noon()),
        record(&org, None, &[(MetricKey::TOKENS, 7)], noon()),
        record(&org, Some(member), &[(MetricKey::TOKENS, 11)], tomorrow),
    ];
    store.record_usage(&events).await.unwrap();
    // A duplicate counts once, in the log as in the counters.
    let again = store.record_usage(&events[..1]).await.unwrap();
    assert_eq!(again.duplicates, 1);
    // A committed hold is an event; a live one is not, and is no drift.
    let committed = hold(&org, owner, 50, noon(), 60);
    store.reserve(&committed).await.unwrap();
    let usage = {
        let mut r = record(&org, Some(owner), &[(MetricKey::TOKENS, 40)], noon());
        r.id = crate::ids::EventId::from(committed.id);
        r
    };
    store
        .commit_reservation(&CommitRequest::new(
            org.id,
            owner,
            committed.id,
            usage,
            noon(),
        ))
        .await
        .unwrap();
    store
        .reserve(&hold(&org, owner, 25, noon(), 600))
        .await
        .unwrap();

    let today = CurrentPeriods::at(noon(), org.timezone);
    let next = CurrentPeriods::at(tomorrow, org.timezone);
    for period in [today.daily, today.monthly, next.daily] {
        let query = ReconcileQuery::new(org.id, period);
        assert_eq!(store.reconcile_usage(&query).await.unwrap(), [], "{period}");
        assert_eq!(store.repair_usage(&query).await.unwrap(), [], "{period}");
        let one = query.with_metric(Some(MetricKey::TOKENS));
        assert_eq!(store.reconcile_usage(&one).await.unwrap(), [], "{period}");
    }
    // A period nothing was counted in: nothing to compare, no drift.
    let empty = PeriodKey {
        period: Period::Daily,
        start: today.daily.start - TimeDelta::days(30),
    };
    let query = ReconcileQuery::new(org.id, empty);
    assert_eq!(store.reconcile_usage(&query).await.unwrap(), []);
}

/// Another organization's events and counters are not this one's: an
/// unknown organization has no drift to report, and repairing it is
/// `NotFound`.
pub async fn reconciling_an_unknown_organization(store: Arc<DynStore>) {
    let (org, owner) = new_org(&*store).await;
    store
        .record_usage(&[record(&org, Some(owner), &[(MetricKey::TOKENS, 9)], noon())])
        .await
        .unwrap();
    let period = CurrentPeriods::at(noon(), org.timezone).daily;
    let ghost = ReconcileQuery::new(OrgId::new_v7(), period);
    assert_eq!(store.reconcile_usage(&ghost).await.unwrap(), []);
    assert_eq!(kind(store.repair_usage(&ghost).await), ErrorKind::NotFound);
    let mine = ReconcileQuery::new(org.id, period);
    assert_eq!(store.reconcile_usage(&mine).await.unwrap(), []);
}
