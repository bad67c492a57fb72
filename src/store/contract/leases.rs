//! The contract of budget leases (skipped where `Backend::leases` is `None`).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::{kind, limit, new_org, noon, record, shared, usage_at};
use crate::error::ErrorKind;
use crate::ids::{MetricKey, OrgId, UserId};
use crate::limits::lease::{LEASE_METADATA_KEY, LeaseGrant, LeaseId, LeaseRequest};
use crate::limits::{CurrentPeriods, LimitScope, Period};
use crate::model::{Organization, UsageRecord};
use crate::store::{CommitRequest, DynStore, LeaseStore, ReconcileQuery, ReserveRequest};

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __lease_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            a_lease_counts_as_held_and_its_grant_is_a_share_of_the_headroom,
            recording_moves_a_lease_amount_to_used_once,
            a_renewal_returns_the_unused_part_and_a_return_ends_the_lease,
            a_crashed_instance_lease_lapses_at_its_ttl,
            expired_leases_never_count,
            a_user_lease_counts_against_that_user_limits_only,
            leases_are_kept_apart_between_organizations,
            the_invariant_holds_under_concurrent_leases_and_reserves,
            leases_agree_with_their_events_after_normal_use,
            reconciling_the_leases_of_an_unknown_organization,
        }
    };
}

fn dec(n: i64) -> Decimal {
    Decimal::from(n)
}

/// A request for lease `id` of `user` on tokens at `now`, living `ttl`
/// seconds, covering `spoken_for` and up to `want` more, taking at most
/// `share` of the headroom.
#[allow(clippy::too_many_arguments)]
fn lease(
    org: &Organization,
    id: LeaseId,
    user: UserId,
    now: DateTime<Utc>,
    ttl: i64,
    spoken_for: i64,
    want: i64,
    share: Decimal,
) -> LeaseRequest {
    LeaseRequest::new(
        id,
        org.id,
        user,
        MetricKey::TOKENS,
        CurrentPeriods::at(now, org.timezone),
        now,
        now + TimeDelta::seconds(ttl),
        dec(spoken_for),
        dec(want),
    )
    .with_share(share)
}

fn half() -> Decimal {
    Decimal::new(5, 1)
}

/// A hold of `amount` tokens for `user`, for ten minutes.
fn hold(org: &Organization, user: UserId, amount: i64, now: DateTime<Utc>) -> ReserveRequest {
    super::hold(org, user, amount, now, 600)
}

/// A usage record of `amount` tokens decided on lease `id`.
fn on_lease(
    org: &Organization,
    user: UserId,
    id: LeaseId,
    amount: i64,
    at: DateTime<Utc>,
) -> UsageRecord {
    let mut r = record(org, Some(user), &[(MetricKey::TOKENS, amount)], at);
    r.event.metadata = serde_json::json!({ LEASE_METADATA_KEY: id.to_string(), "job": "x" });
    r
}

async fn grant(leases: &dyn LeaseStore, request: &LeaseRequest) -> LeaseGrant {
    leases
        .lease_budget(request)
        .await
        .unwrap_or_else(|e| panic!("lease: {e}"))
}

async fn org_with_daily_limit(store: &DynStore, value: i64) -> (Organization, UserId) {
    let (org, owner) = new_org(store).await;
    store
        .put_limit(&limit(
            org.id,
            LimitScope::Organization,
            MetricKey::TOKENS,
            Period::Daily,
            value,
        ))
        .await
        .unwrap();
    (org, owner)
}

/// A live lease is held against the limit: the snapshot counts it, a
/// reserve cannot take it, and a grant is at most `share` of what is left.
pub async fn a_lease_counts_as_held_and_its_grant_is_a_share_of_the_headroom(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    let first = grant(
        leases,
        &lease(
            &org,
            LeaseId::new_v7(),
            owner,
            noon(),
            30,
            0,
            10_000,
            half(),
        ),
    )
    .await;
    assert_eq!(
        (first.free, first.granted, first.consumed),
        (dec(500), dec(500), dec(0))
    );
    assert_eq!(first.headroom, Some(dec(500)));
    assert_eq!(first.outstanding(), dec(500));
    let (used, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!((used, reserved), (dec(0), dec(500)));
    // 501 does not fit beside the lease; 300 does.
    assert!(
        !store
            .reserve(&hold(&org, owner, 501, noon()))
            .await
            .unwrap()
            .granted
    );
    let held = store
        .reserve(&hold(&org, owner, 300, noon()))
        .await
        .unwrap();
    assert!(held.granted);
    assert_eq!(held.limits[0].reserved, dec(500));
    // A second lease: half of the 200 left, and no more than asked.
    let second = grant(
        leases,
        &lease(
            &org,
            LeaseId::new_v7(),
            owner,
            noon(),
            30,
            0,
            10_000,
            half(),
        ),
    )
    .await;
    assert_eq!((second.free, second.headroom), (dec(100), Some(dec(100))));
    let small = grant(
        leases,
        &lease(&org, LeaseId::new_v7(), owner, noon(), 30, 0, 30, half()),
    )
    .await;
    assert_eq!(small.free, dec(30));
    // Below `min`: nothing.
    let refused = grant(
        leases,
        &lease(&org, LeaseId::new_v7(), owner, noon(), 30, 0, 100, half()).with_min(dec(40)),
    )
    .await;
    assert_eq!(refused.free, dec(0));
    let (_, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(reserved, dec(500 + 300 + 100 + 30));
    // Without a hard limit, what was asked.
    let (free_org, user) = new_org(&*store).await;
    let unlimited = grant(
        leases,
        &lease(
            &free_org,
            LeaseId::new_v7(),
            user,
            noon(),
            30,
            0,
            777,
            half(),
        ),
    )
    .await;
    assert_eq!((unlimited.free, unlimited.headroom), (dec(777), None));
    // Bad amounts are refused by name.
    let bad = lease(&org, LeaseId::new_v7(), owner, noon(), 30, 0, 10, dec(2));
    assert_eq!(
        kind(leases.lease_budget(&bad).await),
        ErrorKind::InvalidInput
    );
}

/// Usage recorded with the lease in its metadata moves from leased to
/// used in one step, once: a duplicate changes nothing, and an event of
/// another user naming the lease consumes nothing from it.
pub async fn recording_moves_a_lease_amount_to_used_once(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    let id = LeaseId::new_v7();
    grant(
        leases,
        &lease(&org, id, owner, noon(), 30, 0, 400, Decimal::ONE),
    )
    .await;
    let spent = on_lease(&org, owner, id, 150, noon());
    store
        .record_usage(std::slice::from_ref(&spent))
        .await
        .unwrap();
    let tokens = MetricKey::TOKENS;
    let daily = |at| usage_at(&*store, &org, &tokens, Period::Daily, at);
    assert_eq!(daily(noon()).await, (dec(150), dec(250)));
    let again = store
        .record_usage(std::slice::from_ref(&spent))
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1);
    assert_eq!(daily(noon()).await, (dec(150), dec(250)));
    // Another user's event naming the lease: counted, not consumed.
    let stranger = on_lease(&org, UserId::new_v7(), id, 20, noon());
    store.record_usage(&[stranger]).await.unwrap();
    assert_eq!(daily(noon()).await, (dec(170), dec(250)));
    // A committed hold whose event names the lease consumes from it too.
    let request = hold(&org, owner, 50, noon());
    store.reserve(&request).await.unwrap();
    let mut usage = on_lease(&org, owner, id, 50, noon());
    usage.id = crate::ids::EventId::from(request.id);
    store
        .commit_reservation(&CommitRequest::new(
            org.id,
            owner,
            request.id,
            usage,
            noon(),
        ))
        .await
        .unwrap();
    assert_eq!(daily(noon()).await, (dec(220), dec(200)));
    // A renewal sees what was consumed: it covers at least that.
    let renewed = grant(
        leases,
        &lease(&org, id, owner, noon(), 30, 0, 0, Decimal::ONE),
    )
    .await;
    assert_eq!((renewed.consumed, renewed.granted), (dec(200), dec(200)));
    assert_eq!(renewed.outstanding(), dec(0));
    // Spending past the lease: the work is counted, the lease counts 0.
    store
        .record_usage(&[on_lease(&org, owner, id, 30, noon())])
        .await
        .unwrap();
    assert_eq!(daily(noon()).await, (dec(250), dec(0)));
}

/// A renewal returns what the lease covered beyond `spoken_for` before
/// granting afresh; a return (`want` 0, expiring now) ends it.
pub async fn a_renewal_returns_the_unused_part_and_a_return_ends_the_lease(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    let id = LeaseId::new_v7();
    let first = grant(leases, &lease(&org, id, owner, noon(), 30, 0, 800, half())).await;
    assert_eq!(first.free, dec(500));
    // 100 decided on it (not recorded yet): covered; the other 400 back,
    // and half of what is then left granted.
    let renewed = grant(
        leases,
        &lease(&org, id, owner, noon(), 30, 100, 800, half()),
    )
    .await;
    assert_eq!((renewed.free, renewed.granted), (dec(450), dec(550)));
    // Renewing again and again takes no more: the unused part comes back
    // before each grant.
    for _ in 0..5 {
        let again = grant(
            leases,
            &lease(&org, id, owner, noon(), 30, 100, 800, half()),
        )
        .await;
        assert_eq!(again.granted, dec(550));
    }
    let tokens = MetricKey::TOKENS;
    let daily = |at| usage_at(&*store, &org, &tokens, Period::Daily, at);
    assert_eq!(daily(noon()).await, (dec(0), dec(550)));
    // Returned: 100 still covered until the usage lands.
    let back = grant(leases, &lease(&org, id, owner, noon(), 30, 100, 0, half())).await;
    assert_eq!((back.free, back.granted), (dec(0), dec(100)));
    assert_eq!(daily(noon()).await, (dec(0), dec(100)));
    store
        .record_usage(&[on_lease(&org, owner, id, 100, noon())])
        .await
        .unwrap();
    assert_eq!(daily(noon()).await, (dec(100), dec(0)));
    // Ended now: counts nothing, whatever it covered.
    let ended = grant(leases, &lease(&org, id, owner, noon(), 0, 300, 0, half())).await;
    assert_eq!(ended.expires_at, noon());
    assert_eq!(daily(noon()).await, (dec(100), dec(0)));
}

/// An instance that crashes holding a lease (nobody returns it): the lease
/// counts until its TTL, then the budget is back for the others.
pub async fn a_crashed_instance_lease_lapses_at_its_ttl(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    // Instance A leases 400 and is never heard of again.
    let crashed = grant(
        leases,
        &lease(
            &org,
            LeaseId::new_v7(),
            owner,
            noon(),
            30,
            0,
            400,
            Decimal::ONE,
        ),
    )
    .await;
    assert_eq!(crashed.free, dec(400));
    // Instance B, a second before A's lease lapses: 600 left.
    let before = noon() + TimeDelta::seconds(29);
    assert!(
        !store
            .reserve(&hold(&org, owner, 601, before))
            .await
            .unwrap()
            .granted
    );
    let b = grant(
        leases,
        &lease(
            &org,
            LeaseId::new_v7(),
            owner,
            before,
            30,
            0,
            10_000,
            Decimal::ONE,
        ),
    )
    .await;
    assert_eq!(b.free, dec(600));
    // At A's expiry its 400 is back.
    let lapsed = noon() + TimeDelta::seconds(30);
    let (_, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, lapsed).await;
    assert_eq!(reserved, dec(600));
    assert!(
        store
            .reserve(&hold(&org, owner, 400, lapsed))
            .await
            .unwrap()
            .granted
    );
}

/// An expired lease counts nothing anywhere — snapshot, reserve, another
/// lease's headroom — whether or not it was deleted.
pub async fn expired_leases_never_count(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    grant(
        leases,
        &lease(
            &org,
            LeaseId::new_v7(),
            owner,
            noon(),
            10,
            0,
            900,
            Decimal::ONE,
        ),
    )
    .await;
    let later = noon() + TimeDelta::seconds(10);
    let (_, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, later).await;
    assert_eq!(reserved, dec(0));
    // Nothing purges it (purge_before far back), and still it counts 0.
    let other = lease(
        &org,
        LeaseId::new_v7(),
        owner,
        later,
        30,
        0,
        10_000,
        Decimal::ONE,
    )
    .with_purge_before(noon() - TimeDelta::days(30));
    assert_eq!(grant(leases, &other).await.free, dec(1000));
    let (_, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, later).await;
    assert_eq!(reserved, dec(1000));
    // The day after, the lease of the day before counts nowhere.
    let tomorrow = noon() + TimeDelta::days(1);
    assert!(
        store
            .reserve(&hold(&org, owner, 1000, tomorrow))
            .await
            .unwrap()
            .granted
    );
}

/// A lease for one user counts against the org-wide limits and that
/// user's own, not against another user's.
pub async fn a_user_lease_counts_against_that_user_limits_only(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = new_org(&*store).await;
    let member = UserId::new_v7();
    for user in [owner, member] {
        store
            .put_limit(&limit(
                org.id,
                LimitScope::User(user),
                MetricKey::TOKENS,
                Period::Daily,
                100,
            ))
            .await
            .unwrap();
    }
    let mine = grant(
        leases,
        &lease(
            &org,
            LeaseId::new_v7(),
            owner,
            noon(),
            30,
            0,
            1000,
            Decimal::ONE,
        ),
    )
    .await;
    assert_eq!(mine.free, dec(100));
    assert!(
        !store
            .reserve(&hold(&org, owner, 1, noon()))
            .await
            .unwrap()
            .granted
    );
    assert!(
        store
            .reserve(&hold(&org, member, 100, noon()))
            .await
            .unwrap()
            .granted
    );
}

/// Leases are per organization: one org's lease never counts in another,
/// an unknown organization is `NotFound`, and a lease id cannot change
/// user, metric or periods (`Conflict`).
pub async fn leases_are_kept_apart_between_organizations(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (a, a_owner) = org_with_daily_limit(&*store, 1000).await;
    let (b, b_owner) = org_with_daily_limit(&*store, 1000).await;
    let id = LeaseId::new_v7();
    grant(
        leases,
        &lease(&a, id, a_owner, noon(), 30, 0, 1000, Decimal::ONE),
    )
    .await;
    assert!(
        store
            .reserve(&hold(&b, b_owner, 1000, noon()))
            .await
            .unwrap()
            .granted
    );
    assert!(
        !store
            .reserve(&hold(&a, a_owner, 1, noon()))
            .await
            .unwrap()
            .granted
    );
    // Recording in b with a's lease id consumes nothing from a's lease.
    let foreign = on_lease(&b, a_owner, id, 10, noon());
    store.record_usage(&[foreign]).await.unwrap();
    let (_, reserved) = usage_at(&*store, &a, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(reserved, dec(1000));
    let ghost = Organization {
        id: OrgId::new_v7(),
        ..a.clone()
    };
    let request = lease(
        &ghost,
        LeaseId::new_v7(),
        a_owner,
        noon(),
        30,
        0,
        1,
        Decimal::ONE,
    );
    assert_eq!(
        kind(leases.lease_budget(&request).await),
        ErrorKind::NotFound
    );
    let hijack = lease(&a, id, UserId::new_v7(), noon(), 30, 0, 1, Decimal::ONE);
    assert_eq!(
        kind(leases.lease_budget(&hijack).await),
        ErrorKind::Conflict
    );
}

/// Four instances renew leases and spend them (recording usage with the
/// lease in its metadata) while four others reserve and commit per call,
/// all at once: no grant ever passes the limit, and at the end the counter
/// is exactly what was spent, never above the limit.
pub async fn the_invariant_holds_under_concurrent_leases_and_reserves(store: Arc<DynStore>) {
    if store.leases().is_none() {
        return;
    }
    const LIMIT: i64 = 1000;
    let (org, owner) = org_with_daily_limit(&*store, LIMIT).await;
    let org = Arc::new(org);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, org) = (shared(&store), Arc::clone(&org));
        tasks.push(tokio::spawn(async move {
            let leases = store.leases().expect("leases");
            let id = LeaseId::new_v7();
            let mut spent = 0;
            for _ in 0..15 {
                let request = lease(&org, id, owner, noon(), 30, spent, 60, Decimal::new(25, 2))
                    .with_min(dec(1));
                let g = leases.lease_budget(&request).await.expect("lease");
                assert!(g.headroom.is_none_or(|h| h >= Decimal::ZERO), "{g:?}");
                let free = i64::try_from(g.free.trunc()).expect("small");
                if free > 0 {
                    store
                        .record_usage(&[on_lease(&org, owner, id, free, noon())])
                        .await
                        .expect("record");
                    spent += free;
                }
            }
            spent
        }));
    }
    for _ in 0..4 {
        let (store, org) = (shared(&store), Arc::clone(&org));
        tasks.push(tokio::spawn(async move {
            let mut spent = 0;
            for _ in 0..15 {
                let request = hold(&org, owner, 7, noon());
                if store.reserve(&request).await.expect("reserve").granted {
                    let mut usage = record(&org, Some(owner), &[(MetricKey::TOKENS, 7)], noon());
                    usage.id = crate::ids::EventId::from(request.id);
                    store
                        .commit_reservation(&CommitRequest::new(
                            org.id,
                            owner,
                            request.id,
                            usage,
                            noon(),
                        ))
                        .await
                        .expect("commit");
                    spent += 7;
                }
            }
            spent
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("task");
    }
    let (used, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(used, dec(total), "every amount counted once");
    assert!(used <= dec(LIMIT), "overshoot: {used}");
    assert!(used + reserved <= dec(LIMIT), "{used} + {reserved}");
    assert!(total > 0);
}

/// After ordinary use (events recorded naming leases, a duplicate, another
/// user's event naming a lease, a commit naming one, an event of another
/// metric, a renewal between records), every lease's `consumed` is what
/// its events sum to: reconciliation finds nothing in either period, for
/// one metric or all, and a repair corrects nothing.
pub async fn leases_agree_with_their_events_after_normal_use(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    let other = UserId::new_v7();
    let (a, b, idle) = (LeaseId::new_v7(), LeaseId::new_v7(), LeaseId::new_v7());
    grant(
        leases,
        &lease(&org, a, owner, noon(), 30, 0, 400, Decimal::ONE),
    )
    .await;
    grant(
        leases,
        &lease(&org, b, other, noon(), 30, 0, 100, Decimal::ONE),
    )
    .await;
    grant(
        leases,
        &lease(&org, idle, owner, noon(), 30, 0, 50, Decimal::ONE),
    )
    .await;
    let spent = on_lease(&org, owner, a, 150, noon());
    store
        .record_usage(&[
            spent.clone(),
            spent,
            on_lease(&org, other, a, 20, noon()),
            on_lease(&org, other, b, 30, noon()),
        ])
        .await
        .unwrap();
    let mut cost = record(&org, Some(owner), &[(MetricKey::COST_USD, 3)], noon());
    cost.event.metadata = serde_json::json!({ LEASE_METADATA_KEY: a.to_string() });
    store.record_usage(&[cost]).await.unwrap();
    let request = hold(&org, owner, 50, noon());
    store.reserve(&request).await.unwrap();
    let mut usage = on_lease(&org, owner, a, 50, noon());
    usage.id = crate::ids::EventId::from(request.id);
    store
        .commit_reservation(&CommitRequest::new(
            org.id,
            owner,
            request.id,
            usage,
            noon(),
        ))
        .await
        .unwrap();
    // A renewal keeps what was consumed; more usage lands after it.
    let renewed = grant(
        leases,
        &lease(&org, a, owner, noon(), 30, 0, 300, Decimal::ONE),
    )
    .await;
    assert_eq!(renewed.consumed, dec(200));
    store
        .record_usage(&[on_lease(&org, owner, a, 10, noon())])
        .await
        .unwrap();
    let periods = CurrentPeriods::at(noon(), org.timezone);
    for period in [periods.daily, periods.monthly] {
        let all = ReconcileQuery::new(org.id, period);
        assert_eq!(leases.reconcile_leases(&all).await.unwrap(), []);
        let tokens = ReconcileQuery::new(org.id, period).with_metric(Some(MetricKey::TOKENS));
        assert_eq!(leases.reconcile_leases(&tokens).await.unwrap(), []);
        assert_eq!(leases.repair_leases(&all).await.unwrap(), []);
    }
    // The repair changed nothing: each lease still holds what is left.
    let (used, reserved) = usage_at(&*store, &org, &MetricKey::TOKENS, Period::Daily, noon()).await;
    assert_eq!(used, dec(150 + 20 + 30 + 50 + 10));
    // a: 400 + 300 granted after 200 consumed (500), 210 consumed; b: 70;
    // idle: 50.
    assert_eq!(reserved, dec(290 + 70 + 50));
}

/// An organization that does not exist has no drifting leases, and its
/// repair is `NotFound`; another organization's leases are not its.
pub async fn reconciling_the_leases_of_an_unknown_organization(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let (org, owner) = org_with_daily_limit(&*store, 1000).await;
    let id = LeaseId::new_v7();
    grant(
        leases,
        &lease(&org, id, owner, noon(), 30, 0, 100, Decimal::ONE),
    )
    .await;
    store
        .record_usage(&[on_lease(&org, owner, id, 40, noon())])
        .await
        .unwrap();
    let period = CurrentPeriods::at(noon(), org.timezone).daily;
    let ghost = ReconcileQuery::new(OrgId::new_v7(), period);
    assert_eq!(leases.reconcile_leases(&ghost).await.unwrap(), []);
    assert_eq!(
        kind(leases.repair_leases(&ghost).await),
        ErrorKind::NotFound
    );
    let (stranger, _) = new_org(&*store).await;
    let theirs = ReconcileQuery::new(stranger.id, period);
    assert_eq!(leases.repair_leases(&theirs).await.unwrap(), []);
    assert_eq!(
        leases
            .reconcile_leases(&ReconcileQuery::new(org.id, period))
            .await
            .unwrap(),
        []
    );
}
