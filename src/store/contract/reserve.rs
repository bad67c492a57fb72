//! Check-and-reserve, expiry, commit and release.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::{at, event_of, hold, kind, limit, new_org, new_org_in, noon, record, shared, usage_at};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, ReservationId, UserId};
use crate::limits::{CurrentPeriods, LimitMode, LimitScope, Period};
use crate::model::{Organization, UsageRecord};
use crate::store::{CommitRequest, DynStore, ReleaseRequest, ReserveRequest};

/// The usage a commit of `request` records: `amount` tokens, with the
/// hold's id and user, made at `now` (so in `now`'s periods).
fn usage_for(
    org: &Organization,
    request: &ReserveRequest,
    amount: i64,
    now: DateTime<Utc>,
) -> UsageRecord {
    let mut usage = record(org, Some(request.user), &[(MetricKey::TOKENS, amount)], now);
    usage.id = event_of(request.id);
    usage.event.id = Some(usage.id);
    usage
}

fn commit_of(
    org: &Organization,
    request: &ReserveRequest,
    amount: i64,
    now: DateTime<Utc>,
) -> CommitRequest {
    CommitRequest {
        org: org.id,
        user: request.user,
        id: request.id,
        usage: usage_for(org, request, amount, now),
        now,
    }
}

async fn tokens_limit(
    store: &DynStore,
    org: &Organization,
    period: Period,
    value: i64,
    mode: LimitMode,
) {
    let mut l = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        period,
        value,
    );
    l.mode = mode;
    store.put_limit(&l).await.unwrap();
}

/// A hold is written only when it fits under every hard limit, and the
/// answer reports the limits without the request; a soft limit never
/// refuses.
pub async fn reserve_holds_only_what_fits_under_hard_limits(store: Arc<DynStore>) {
    let (org, user) = new_org(&*store).await;
    tokens_limit(&*store, &org, Period::Monthly, 100, LimitMode::Hard).await;
    let first = store
        .reserve(&hold(&org, user, 60, noon(), 60))
        .await
        .unwrap();
    assert!(first.granted);
    assert_eq!(first.limits.len(), 1);
    assert_eq!(
        (first.limits[0].used, first.limits[0].reserved),
        (Decimal::ZERO, Decimal::ZERO)
    );
    let second = store
        .reserve(&hold(&org, user, 41, noon(), 60))
        .await
        .unwrap();
    assert!(!second.granted);
    assert_eq!(second.limits[0].reserved, Decimal::from(60));
    assert!(
        store
            .reserve(&hold(&org, user, 40, noon(), 60))
            .await
            .unwrap()
            .granted
    );

    let (soft_org, soft_user) = new_org(&*store).await;
    tokens_limit(&*store, &soft_org, Period::Daily, 10, LimitMode::Soft).await;
    assert!(
        store
            .reserve(&hold(&soft_org, soft_user, 50, noon(), 60))
            .await
            .unwrap()
            .granted
    );
    let missing = Organization {
        id: crate::ids::OrgId::new_v7(),
        ..org
    };
    assert_eq!(
        kind(store.reserve(&hold(&missing, user, 1, noon(), 60)).await),
        ErrorKind::NotFound
    );
}

/// 32 callers reserving 10 each against a limit of 100 at once: exactly 10
/// are granted, and the holds sum to the limit.
pub async fn concurrent_reservations_never_overshoot(store: Arc<DynStore>) {
    let (org, user) = new_org(&*store).await;
    tokens_limit(&*store, &org, Period::Daily, 100, LimitMode::Hard).await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, request) = (shared(&store), hold(&org, user, 10, noon(), 60));
            tokio::spawn(async move { store.reserve(&request).await.unwrap().granted })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 10);
    let (_, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(reserved, Decimal::from(100));
}

/// A hold counts while `now` is before its expiry and not from the instant
/// it expires; the store decides by the `now` it is given.
pub async fn holds_stop_counting_when_they_expire(store: Arc<DynStore>) {
    let (org, user) = new_org(&*store).await;
    tokens_limit(&*store, &org, Period::Daily, 100, LimitMode::Hard).await;
    assert!(
        store
            .reserve(&hold(&org, user, 100, noon(), 60))
            .await
            .unwrap()
            .granted
    );
    let just_before = noon() + TimeDelta::seconds(59);
    assert!(
        !store
            .reserve(&hold(&org, user, 1, just_before, 60))
            .await
            .unwrap()
            .granted
    );
    let expired = noon() + TimeDelta::seconds(60);
    let after = store
        .reserve(&hold(&org, user, 100, expired, 60))
        .await
        .unwrap();
    assert!(after.granted);
    assert_eq!(after.limits[0].reserved, Decimal::ZERO);
}

/// `released_hold` is exact: true for a live hold, false for an expired one
/// (whose usage is still recorded) and for a retried commit (which counts
/// nothing again).
pub async fn commit_reports_whether_the_hold_was_live(store: Arc<DynStore>) {
    let (org, user) = new_org(&*store).await;
    let live = hold(&org, user, 10, noon(), 60);
    store.reserve(&live).await.unwrap();
    let outcome = store
        .commit_reservation(&commit_of(&org, &live, 7, noon()))
        .await
        .unwrap();
    assert!(outcome.released_hold && outcome.recorded);
    let retried = store
        .commit_reservation(&commit_of(&org, &live, 7, noon()))
        .await
        .unwrap();
    assert!(!retried.released_hold && !retried.recorded);

    let lapsing = hold(&org, user, 10, noon(), 60);
    store.reserve(&lapsing).await.unwrap();
    // Another reservation in between must not change the answer.
    store
        .reserve(&hold(&org, user, 1, noon() + TimeDelta::seconds(90), 60))
        .await
        .unwrap();
    let late = noon() + TimeDelta::seconds(120);
    let outcome = store
        .commit_reservation(&commit_of(&org, &lapsing, 5, late))
        .await
        .unwrap();
    assert!(!outcome.released_hold, "the hold had expired");
    assert!(outcome.recorded);
    let (used, _) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, late).await;
    assert_eq!(used, Decimal::from(12));
}

/// A commit counts in the periods the hold was taken in, whatever periods
/// its record names.
pub async fn a_commit_counts_in_its_holds_periods(store: Arc<DynStore>) {
    let (org, user) = new_org(&*store).await;
    let taken = at("2026-03-04T23:59:59Z");
    let request = hold(&org, user, 10, taken, 600);
    store.reserve(&request).await.unwrap();
    let next_day = at("2026-03-05T00:00:01Z");
    store
        .commit_reservation(&commit_of(&org, &request, 10, next_day))
        .await
        .unwrap();
    let (then, _) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, taken).await;
    let (now, _) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, next_day).await;
    assert_eq!((then, now), (Decimal::from(10), Decimal::ZERO));
}

/// The boundary invariant: a hold of the whole limit taken a second before
/// the period ends and committed a second after it counts in the old
/// period, so the new one still has the whole limit — and neither period
/// ever holds more than the limit.
async fn no_overshoot_across(store: &DynStore, tz: Tz, period: Period, before: &str, after: &str) {
    let (org, user) = new_org_in(store, tz).await;
    tokens_limit(store, &org, period, 1000, LimitMode::Hard).await;
    let (before, after) = (at(before), at(after));
    assert_ne!(
        CurrentPeriods::at(before, tz).key(period),
        CurrentPeriods::at(after, tz).key(period),
        "the instants straddle a {period} boundary in {tz}"
    );
    let straddling = hold(&org, user, 1000, before, 600);
    assert!(store.reserve(&straddling).await.unwrap().granted);
    store
        .commit_reservation(&commit_of(&org, &straddling, 1000, after))
        .await
        .unwrap();
    let fresh = hold(&org, user, 1000, after, 600);
    assert!(
        store.reserve(&fresh).await.unwrap().granted,
        "the new period is empty"
    );
    assert!(
        !store
            .reserve(&hold(&org, user, 1, after, 600))
            .await
            .unwrap()
            .granted
    );
    for instant in [before, after] {
        let (used, reserved) = usage_at(store, &org, &MetricKey::TOKENS, period, instant).await;
        assert_eq!(
            used + reserved,
            Decimal::from(1000),
            "{period} of {instant} in {tz}"
        );
    }
}

/// No overshoot across a UTC midnight: a hold taken a second before and
/// committed a second after counts in the day that ended.
pub async fn no_overshoot_across_midnight_utc(store: Arc<DynStore>) {
    no_overshoot_across(
        &*store,
        Tz::UTC,
        Period::Daily,
        "2026-03-04T23:59:59Z",
        "2026-03-05T00:00:01Z",
    )
    .await;
}

/// No overshoot across the end of January in Tokyo (15:00 UTC): a hold
/// taken a second before and committed a second after counts in January.
pub async fn no_overshoot_across_month_end_in_tokyo(store: Arc<DynStore>) {
    let tokyo = chrono_tz::Asia::Tokyo;
    no_overshoot_across(
        &*store,
        tokyo,
        Period::Monthly,
        "2026-01-31T14:59:59Z",
        "2026-01-31T15:00:01Z",
    )
    .await;
    no_overshoot_across(
        &*store,
        tokyo,
        Period::Daily,
        "2026-02-10T14:59:59Z",
        "2026-02-10T15:00:01Z",
    )
    .await;
}

/// A commit of a hold that does not exist, or of another user's hold,
/// records nothing: `NotFound` and `PermissionDenied`. A record whose
/// organization or id is not the request's is `InvalidInput`.
pub async fn an_unknown_or_foreign_hold_records_nothing(store: Arc<DynStore>) {
    let (org, alice) = new_org(&*store).await;
    tokens_limit(&*store, &org, Period::Daily, 1000, LimitMode::Hard).await;
    let forged = hold(&org, alice, 10, noon(), 60);
    assert_eq!(
        kind(
            store
                .commit_reservation(&commit_of(&org, &forged, 10, noon()))
                .await
        ),
        ErrorKind::NotFound
    );
    let alices = hold(&org, alice, 10, noon(), 60);
    store.reserve(&alices).await.unwrap();
    let mallory = UserId::new_v7();
    let mut foreign = commit_of(&org, &alices, 10, noon());
    foreign.user = mallory;
    foreign.usage = usage_for(
        &org,
        &ReserveRequest {
            user: mallory,
            ..alices.clone()
        },
        10,
        noon(),
    );
    assert_eq!(
        kind(store.commit_reservation(&foreign).await),
        ErrorKind::PermissionDenied
    );
    let mut renamed = commit_of(&org, &alices, 10, noon());
    renamed.usage.id = event_of(ReservationId::new_v7());
    assert_eq!(
        kind(store.commit_reservation(&renamed).await),
        ErrorKind::InvalidInput
    );
    let (used, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(
        (used, reserved),
        (Decimal::ZERO, Decimal::from(10)),
        "nothing recorded, the hold kept"
    );
}

/// Another organization's id reaches none of an organization's holds:
/// committing one through it is `NotFound` and records nothing anywhere,
/// releasing one through it finds nothing live, and the hold stays.
pub async fn holds_are_out_of_reach_of_another_org(store: Arc<DynStore>) {
    let (acme, alice) = new_org(&*store).await;
    let (globex, _bob) = new_org(&*store).await;
    for org in [&acme, &globex] {
        tokens_limit(&*store, org, Period::Daily, 1000, LimitMode::Hard).await;
    }
    let alices = hold(&acme, alice, 10, noon(), 60);
    assert!(store.reserve(&alices).await.unwrap().granted);

    let through_globex = commit_of(&globex, &alices, 10, noon());
    assert_eq!(
        kind(store.commit_reservation(&through_globex).await),
        ErrorKind::NotFound
    );
    let release = ReleaseRequest {
        org: globex.id,
        user: alice,
        id: alices.id,
        now: noon(),
    };
    assert!(!store.release_reservation(&release).await.unwrap());

    for (org, reserved) in [(&acme, 10), (&globex, 0)] {
        let (used, held) = usage_at(&*store, org, &MetricKey::TOKENS, Period::Daily, noon()).await;
        assert_eq!(
            (used, held),
            (Decimal::ZERO, Decimal::from(reserved)),
            "nothing recorded; acme's hold kept"
        );
    }
    let outcome = store
        .commit_reservation(&commit_of(&acme, &alices, 10, noon()))
        .await
        .unwrap();
    assert!(
        outcome.recorded && outcome.released_hold,
        "positive control"
    );
}

/// Releasing drops the hold of its own user and says whether it was live;
/// another user's release is refused and the hold stays.
pub async fn release_is_for_the_holds_user_only(store: Arc<DynStore>) {
    let (org, alice) = new_org(&*store).await;
    let request = hold(&org, alice, 10, noon(), 60);
    store.reserve(&request).await.unwrap();
    let release = |user, now| ReleaseRequest {
        org: org.id,
        user,
        id: request.id,
        now,
    };
    let by_other = store
        .release_reservation(&release(UserId::new_v7(), noon()))
        .await;
    assert_eq!(kind(by_other), ErrorKind::PermissionDenied);
    assert!(
        store
            .release_reservation(&release(alice, noon()))
            .await
            .unwrap()
    );
    assert!(
        !store
            .release_reservation(&release(alice, noon()))
            .await
            .unwrap()
    );
    let (_, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(reserved, Decimal::ZERO);
    let lapsed = hold(&org, alice, 10, noon(), 60);
    store.reserve(&lapsed).await.unwrap();
    let late = ReleaseRequest {
        id: lapsed.id,
        ..release(alice, noon() + TimeDelta::seconds(61))
    };
    assert!(
        !store.release_reservation(&late).await.unwrap(),
        "an expired hold was not live"
    );
}
