//! The contract of plans: the catalog's versions are immutable and
//! numbered in order, an organization has exactly one assignment, trials
//! fall to their fallback at their end, overrides sit on top of the plan
//! until they lapse, and the effective view is the same on every backend.
//!
//! The catalog is global, and shared by every test on the SQL backends:
//! each test uses plan keys of its own ([`unique_key`]) and never expects
//! the catalog to be empty.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::{kind, limit, new_org, noon, record, shared, usage_at};
use crate::error::ErrorKind;
use crate::ids::{FeatureKey, MetricKey, OrgId, PlanKey, UserId};
use crate::limits::rate::NewRateLimit;
use crate::limits::rate::{REQUESTS, RateAction, RateRequest, RateWindow};
use crate::limits::{CurrentPeriods, LimitScope, NewLimit, Period};
use crate::model::audit::AuditQuery;
use crate::model::plan::{
    AssignPlan, EntitlementChange, EntitlementSource, Entitlements, MigratePlan, NewPlanVersion,
    PlanRef, PlanVersion,
};
use crate::model::{FeatureChange, Membership, Role};
use crate::store::{DynStore, UsageQuery};

/// Calls `$callback! { $($prefix)* ; <every test of this file> }`: this
/// file's part of the list [`store_contract_tests!`](crate::store_contract_tests) runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __plan_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            plan_versions_are_numbered_in_order_and_immutable,
            concurrent_puts_of_one_key_get_distinct_versions,
            an_organization_has_one_assignment_replaced_by_assign,
            missing_organizations_and_versions_are_not_found,
            a_trial_falls_to_its_fallback_exactly_at_its_end,
            an_override_sits_on_top_of_the_plan_until_it_lapses,
            per_user_limits_are_kept_beside_the_plan,
            migrate_moves_one_organization_or_all_of_a_version,
            migrate_moves_the_trials_falling_to_the_version,
            reserve_and_the_snapshot_honour_the_plan_limit,
            plan_rate_limits_are_enforced_by_acquire,
            the_entitlements_version_grows_with_every_kind_of_change,
            entitlements_are_the_organizations_own,
            valid_until_is_the_first_lapse_after_now,
            watchers_hear_of_changes,
            plan_changes_are_audited,
            a_lease_is_sized_by_the_plan_limit,
            deleting_an_organization_drops_its_assignment,
            a_change_to_a_lapsed_override_starts_afresh,
        }
    };
}

/// A plan key no other test (or earlier run on the same database) uses.
fn unique_key(prefix: &str) -> PlanKey {
    let id = uuid::Uuid::new_v4().simple().to_string();
    PlanKey::parse(&format!("{prefix}-{}", &id[..12])).unwrap_or_else(|e| panic!("{e}"))
}

fn veo() -> FeatureKey {
    FeatureKey::from_static("veo")
}

fn tokens(value: i64) -> NewLimit {
    NewLimit::new(MetricKey::TOKENS, Period::Monthly, Decimal::from(value))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A plan version with `veo` (on, configured), a monthly token limit of
/// `monthly_tokens`, and a rate of 2 requests a minute.
fn plan(key: &PlanKey, monthly_tokens: i64) -> NewPlanVersion {
    NewPlanVersion::new(key.clone(), "Contract plan")
        .and_then(|p| p.feature_config(veo(), json!({"max": monthly_tokens})))
        .and_then(|p| p.limit(tokens(monthly_tokens)))
        .and_then(|p| {
            p.rate_limit(
                NewRateLimit::new(REQUESTS, RateWindow::Minute, Decimal::TWO)
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .unwrap_or_else(|e| panic!("a valid plan: {e}"))
}

async fn put(store: &DynStore, plan: &NewPlanVersion) -> PlanVersion {
    store
        .put_plan_version(plan, noon())
        .await
        .unwrap_or_else(|e| panic!("put a plan version: {e}"))
}

async fn assign(store: &DynStore, request: &AssignPlan) {
    store
        .assign_plan(request)
        .await
        .unwrap_or_else(|e| panic!("assign a plan: {e}"));
}

async fn entitlements(store: &DynStore, org: OrgId, at: DateTime<Utc>) -> Entitlements {
    store
        .entitlements(org, at)
        .await
        .unwrap_or_else(|e| panic!("entitlements: {e}"))
}

/// The effective org-wide monthly token limit's value and source.
fn token_limit(e: &Entitlements) -> Option<(Decimal, EntitlementSource)> {
    e.limits
        .iter()
        .find(|(l, _)| {
            l.scope == LimitScope::Organization
                && l.metric == MetricKey::TOKENS
                && l.period == Period::Monthly
        })
        .map(|(l, s)| (l.value, s.clone()))
}

fn plan_source(plan: &PlanRef) -> EntitlementSource {
    EntitlementSource::Plan { plan: plan.clone() }
}

/// Versions of a key are numbered 1, 2, 3 in the order they are put, each
/// stamped with its `now`, kept exactly as written, listed in order, and
/// given entry ids of their own (the same request twice included).
pub async fn plan_versions_are_numbered_in_order_and_immutable(store: Arc<DynStore>) {
    let key = unique_key("order");
    let mut put_ones = Vec::new();
    for (i, value) in [100, 200, 200].into_iter().enumerate() {
        let now = noon() + TimeDelta::seconds(i64::try_from(i).unwrap());
        let v = store
            .put_plan_version(&plan(&key, value), now)
            .await
            .unwrap();
        assert_eq!(v.plan.key, key);
        assert_eq!(v.plan.version, u32::try_from(i + 1).unwrap());
        assert_eq!(v.created_at, now);
        assert_eq!(v.name, "Contract plan");
        assert_eq!(v.features.len(), 1);
        assert_eq!(v.features[0].config, json!({"max": value}));
        assert_eq!(v.limits[0].value, Decimal::from(value));
        assert_eq!(v.rate_limits[0].burst, Decimal::TWO);
        put_ones.push(v);
    }
    // The same request twice: entries get fresh ids per version.
    assert_ne!(put_ones[1].limits[0].id, put_ones[2].limits[0].id);
    assert_ne!(put_ones[1].rate_limits[0].id, put_ones[2].rate_limits[0].id);

    assert_eq!(store.plan_versions(Some(&key)).await.unwrap(), put_ones);
    let all = store.plan_versions(None).await.unwrap();
    let ours: Vec<_> = all.iter().filter(|v| v.plan.key == key).cloned().collect();
    assert_eq!(ours, put_ones);
    for v in &put_ones {
        assert_eq!(store.plan_version(&v.plan).await.unwrap().as_ref(), Some(v));
    }
    let fourth = PlanRef {
        key: key.clone(),
        version: 4,
    };
    assert_eq!(store.plan_version(&fourth).await.unwrap(), None);
    let other = unique_key("none");
    assert!(store.plan_versions(Some(&other)).await.unwrap().is_empty());
}

/// Puts of one key racing each other never get the same number: eight
/// concurrent puts get versions 1 to 8.
pub async fn concurrent_puts_of_one_key_get_distinct_versions(store: Arc<DynStore>) {
    let key = unique_key("race");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = shared(&store);
            let request = plan(&key, 100 + i);
            tokio::spawn(async move { store.put_plan_version(&request, noon()).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for task in tasks {
        let v = task.await.unwrap().unwrap_or_else(|e| panic!("put: {e}"));
        versions.insert(v.plan.version);
    }
    assert_eq!(versions, (1..=8).collect::<BTreeSet<u32>>());
    assert_eq!(store.plan_versions(Some(&key)).await.unwrap().len(), 8);
}

/// An organization has at most one assignment: assigning replaces it
/// (start, trial and fallback with it), unassigning removes it, once.
pub async fn an_organization_has_one_assignment_replaced_by_assign(store: Arc<DynStore>) {
    let key = unique_key("one");
    let v1 = put(&store, &plan(&key, 10)).await;
    let v2 = put(&store, &plan(&key, 20)).await;
    let (org, _) = new_org(&store).await;
    assert_eq!(store.plan_assignment(org.id).await.unwrap(), None);

    let trial_end = noon() + TimeDelta::days(14);
    let first = store
        .assign_plan(
            &AssignPlan::new(org.id, v2.plan.clone(), noon()).trial(trial_end, v1.plan.clone()),
        )
        .await
        .unwrap();
    assert_eq!(first.org, org.id);
    assert_eq!(first.plan, v2.plan);
    assert_eq!(first.started_at, noon());
    assert_eq!(first.trial_ends_at, Some(trial_end));
    assert_eq!(first.fallback, Some(v1.plan.clone()));
    assert_eq!(store.plan_assignment(org.id).await.unwrap(), Some(first));

    let later = noon() + TimeDelta::hours(1);
    let second = store
        .assign_plan(&AssignPlan::new(org.id, v1.plan.clone(), later))
        .await
        .unwrap();
    assert_eq!(second.plan, v1.plan);
    assert_eq!(second.started_at, later);
    assert_eq!(
        (second.trial_ends_at, second.fallback.clone()),
        (None, None)
    );
    assert_eq!(store.plan_assignment(org.id).await.unwrap(), Some(second));

    assert!(store.unassign_plan(org.id).await.unwrap());
    assert!(!store.unassign_plan(org.id).await.unwrap());
    assert_eq!(store.plan_assignment(org.id).await.unwrap(), None);
    let e = entitlements(&store, org.id, later).await;
    assert_eq!((e.assignment, e.plan), (None, None));
    assert!(e.limits.is_empty() && e.features.is_empty() && e.rate_limits.is_empty());
}

/// Assigning to an unknown organization, or an unknown plan version or
/// fallback, is `NotFound` and changes nothing; so is migrating to an
/// unknown version, and the entitlements of an unknown organization.
pub async fn missing_organizations_and_versions_are_not_found(store: Arc<DynStore>) {
    let key = unique_key("missing");
    let v1 = put(&store, &plan(&key, 10)).await;
    let nowhere = PlanRef {
        key: key.clone(),
        version: 9,
    };
    let unknown_key = PlanRef {
        key: unique_key("ghost"),
        version: 1,
    };
    let (org, _) = new_org(&store).await;
    let stranger = OrgId::new_v7();

    let to_stranger = AssignPlan::new(stranger, v1.plan.clone(), noon());
    assert_eq!(
        kind(store.assign_plan(&to_stranger).await),
        ErrorKind::NotFound
    );
    for missing in [&nowhere, &unknown_key] {
        let bad_plan = AssignPlan::new(org.id, missing.clone(), noon());
        assert_eq!(
            kind(store.assign_plan(&bad_plan).await),
            ErrorKind::NotFound
        );
        let bad_fallback = AssignPlan::new(org.id, v1.plan.clone(), noon())
            .trial(noon() + TimeDelta::days(1), missing.clone());
        assert_eq!(
            kind(store.assign_plan(&bad_fallback).await),
            ErrorKind::NotFound
        );
    }
    assert_eq!(store.plan_assignment(org.id).await.unwrap(), None);
    assert_eq!(store.plan_assignment(stranger).await.unwrap(), None);
    assert!(!store.unassign_plan(stranger).await.unwrap());

    assign(&store, &AssignPlan::new(org.id, v1.plan.clone(), noon())).await;
    let to_nowhere = MigratePlan::new(v1.plan.clone(), 9);
    assert_eq!(
        kind(store.migrate_plan(&to_nowhere).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.plan_assignment(org.id).await.unwrap().map(|a| a.plan),
        Some(v1.plan.clone())
    );
    assert_eq!(
        kind(store.entitlements(stranger, noon()).await),
        ErrorKind::NotFound
    );
}

/// A trial is the trial plan until just before `trial_ends_at`, and the
/// fallback from that instant on, by the instant asked about (no job
/// runs); without a fallback, no plan at all.
pub async fn a_trial_falls_to_its_fallback_exactly_at_its_end(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("pro"), 1000)).await;
    let free_key = unique_key("free");
    let free = put(
        &store,
        &NewPlanVersion::new(free_key, "Free")
            .and_then(|p| p.limit(tokens(10)))
            .unwrap(),
    )
    .await;
    let (org, _) = new_org(&store).await;
    let (bare, _) = new_org(&store).await;
    let ends = noon() + TimeDelta::days(14);
    assign(
        &store,
        &AssignPlan::new(org.id, pro.plan.clone(), noon()).trial(ends, free.plan.clone()),
    )
    .await;
    assign(
        &store,
        &AssignPlan::new(bare.id, pro.plan.clone(), noon()).trial(ends, None),
    )
    .await;

    let just_before = ends - TimeDelta::microseconds(1);
    let during = entitlements(&store, org.id, just_before).await;
    assert_eq!(during.plan, Some(pro.plan.clone()));
    assert_eq!(during.valid_until, Some(ends));
    assert_eq!(
        token_limit(&during),
        Some((Decimal::from(1000), plan_source(&pro.plan)))
    );
    assert_eq!(during.features.len(), 1);
    assert!(during.features[0].0.enabled);

    let after = entitlements(&store, org.id, ends).await;
    assert_eq!(after.plan, Some(free.plan.clone()));
    assert_eq!(after.valid_until, None);
    assert_eq!(
        token_limit(&after),
        Some((Decimal::from(10), plan_source(&free.plan)))
    );
    assert!(after.features.is_empty(), "{:?}", after.features);
    assert!(after.rate_limits.is_empty());
    // The assignment itself is what was written: the trial is over by time.
    assert_eq!(after.assignment.as_ref().map(|a| &a.plan), Some(&pro.plan));

    let fallen = entitlements(&store, bare.id, ends).await;
    assert_eq!(fallen.plan, None);
    assert!(fallen.limits.is_empty() && fallen.features.is_empty());
}

/// An organization's own rows replace the plan's entries (a feature by
/// key, a limit by org-wide metric and period) until their `expires_at`;
/// from that instant on the plan applies again. The rows stay: the
/// organization's own lists still show them.
pub async fn an_override_sits_on_top_of_the_plan_until_it_lapses(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("over"), 1000)).await;
    let (org, owner) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    let lapse = noon() + TimeDelta::days(3);

    let mut raised = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Monthly,
        1200,
    );
    raised.expires_at = Some(lapse);
    let raised = store.put_limit(&raised).await.unwrap();
    assert_eq!(raised.expires_at, Some(lapse));
    store
        .update_feature(
            org.id,
            &veo(),
            &FeatureChange::enabled(false).until(Some(lapse)),
            noon(),
        )
        .await
        .unwrap();
    let other = FeatureKey::from_static("extra");
    store
        .update_feature(org.id, &other, &FeatureChange::enabled(true), noon())
        .await
        .unwrap();

    let during = entitlements(&store, org.id, lapse - TimeDelta::seconds(1)).await;
    let overridden = EntitlementSource::Override {
        expires_at: Some(lapse),
    };
    assert_eq!(
        token_limit(&during),
        Some((Decimal::from(1200), overridden.clone()))
    );
    let (id, _) = during
        .limits
        .iter()
        .find(|(l, _)| l.metric == MetricKey::TOKENS)
        .map(|(l, s)| (l.id, s))
        .unwrap();
    assert_eq!(id, raised.id);
    assert_eq!(during.limits.len(), 1, "the override replaces the plan's");
    let keys: Vec<_> = during
        .features
        .iter()
        .map(|(f, _)| f.key.as_str())
        .collect();
    assert_eq!(keys, ["extra", "veo"]);
    let (veo_now, source) = &during.features[1];
    assert!(!veo_now.enabled);
    assert_eq!(source, &overridden);
    assert_eq!(
        during.features[0].1,
        EntitlementSource::Override { expires_at: None }
    );
    assert_eq!(during.valid_until, Some(lapse));

    let after = entitlements(&store, org.id, lapse).await;
    assert_eq!(
        token_limit(&after),
        Some((Decimal::from(1000), plan_source(&pro.plan)))
    );
    let plan_limit = after
        .limits
        .iter()
        .find(|(l, _)| l.metric == MetricKey::TOKENS)
        .map(|(l, _)| l.clone())
        .unwrap();
    assert_eq!(plan_limit.id, pro.limits[0].id);
    assert_eq!(plan_limit.org, org.id);
    assert_eq!(plan_limit.created_at, pro.created_at);
    assert_eq!(plan_limit.expires_at, None);
    let veo_after = after.features.iter().find(|(f, _)| f.key == veo()).unwrap();
    assert!(veo_after.0.enabled);
    assert_eq!(veo_after.0.config, json!({"max": 1000}));
    assert_eq!(veo_after.1, plan_source(&pro.plan));
    assert_eq!(after.valid_until, None);

    // Lapsed rows are ignored, not deleted.
    assert_eq!(
        store.limits(org.id).await.unwrap(),
        std::slice::from_ref(&raised)
    );
    let own = store.features(org.id).await.unwrap();
    assert_eq!(own.len(), 2);
    // Reserve reads the same view: 1100 fits under the override, and no
    // longer once it lapsed (the first hold expired by then).
    let before = super::hold(&org, owner, 1100, noon(), 1);
    assert!(store.reserve(&before).await.unwrap().granted);
    let big = super::hold(&org, owner, 1100, lapse, 60);
    let denied = store.reserve(&big).await.unwrap();
    assert!(!denied.granted);
    assert_eq!(denied.limits[0].limit.id, pro.limits[0].id);
}

/// Per-user limits are added as they are beside the plan's org-wide ones,
/// and both bind a reservation.
pub async fn per_user_limits_are_kept_beside_the_plan(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("peruser"), 1000)).await;
    let (org, owner) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    let mine = store
        .put_limit(&limit(
            org.id,
            LimitScope::User(owner),
            MetricKey::TOKENS,
            Period::Monthly,
            50,
        ))
        .await
        .unwrap();

    let e = entitlements(&store, org.id, noon()).await;
    assert_eq!(e.limits.len(), 2);
    assert_eq!(
        token_limit(&e),
        Some((Decimal::from(1000), plan_source(&pro.plan)))
    );
    let user_row = e
        .limits
        .iter()
        .find(|(l, _)| l.scope == LimitScope::User(owner))
        .unwrap();
    assert_eq!(user_row.0, mine);
    assert_eq!(user_row.1, EntitlementSource::Override { expires_at: None });

    let result = store
        .reserve(&super::hold(&org, owner, 60, noon(), 60))
        .await
        .unwrap();
    assert!(!result.granted, "the user's own limit binds");
    assert_eq!(result.limits.len(), 2);
    let ok = store
        .reserve(&super::hold(&org, owner, 50, noon(), 60))
        .await
        .unwrap();
    assert!(ok.granted);
}

/// Migrating moves one organization, or every organization on a version,
/// to another version of the same plan (keeping start, trial and
/// fallback), returns how many moved, and never touches usage.
pub async fn migrate_moves_one_organization_or_all_of_a_version(store: Arc<DynStore>) {
    let key = unique_key("migrate");
    let v1 = put(&store, &plan(&key, 100)).await;
    let v2 = put(&store, &plan(&key, 200)).await;
    let elsewhere = put(&store, &plan(&unique_key("else"), 5)).await;
    let ends = noon() + TimeDelta::days(30);
    let mut orgs = Vec::new();
    for _ in 0..3 {
        let (org, owner) = new_org(&store).await;
        assign(
            &store,
            &AssignPlan::new(org.id, v1.plan.clone(), noon()).trial(ends, elsewhere.plan.clone()),
        )
        .await;
        store
            .record_usage(&[record(
                &org,
                Some(owner),
                &[(MetricKey::TOKENS, 70)],
                noon(),
            )])
            .await
            .unwrap();
        orgs.push(org);
    }
    let (other, _) = new_org(&store).await;
    assign(
        &store,
        &AssignPlan::new(other.id, elsewhere.plan.clone(), noon()),
    )
    .await;

    let one = MigratePlan::new(v1.plan.clone(), 2).org(orgs[0].id);
    assert_eq!(store.migrate_plan(&one).await.unwrap(), 1);
    assert_eq!(
        store.migrate_plan(&one).await.unwrap(),
        0,
        "no longer on v1"
    );
    let moved = store.plan_assignment(orgs[0].id).await.unwrap().unwrap();
    assert_eq!(moved.plan, v2.plan);
    assert_eq!(
        (moved.started_at, moved.trial_ends_at, moved.fallback),
        (noon(), Some(ends), Some(elsewhere.plan.clone()))
    );
    let stayed = store.plan_assignment(orgs[1].id).await.unwrap().unwrap();
    assert_eq!(stayed.plan, v1.plan);

    let all = MigratePlan::new(v1.plan.clone(), 2);
    assert_eq!(store.migrate_plan(&all).await.unwrap(), 2);
    assert_eq!(store.migrate_plan(&all).await.unwrap(), 0);
    for org in &orgs {
        let a = store.plan_assignment(org.id).await.unwrap().unwrap();
        assert_eq!(a.plan, v2.plan);
        let e = entitlements(&store, org.id, noon()).await;
        assert_eq!(
            token_limit(&e),
            Some((Decimal::from(200), plan_source(&v2.plan)))
        );
        let (used, _) = usage_at(&store, org, &MetricKey::TOKENS, Period::Monthly, noon()).await;
        assert_eq!(used, Decimal::from(70), "usage is untouched");
    }
    let untouched = store.plan_assignment(other.id).await.unwrap().unwrap();
    assert_eq!(untouched.plan, elsewhere.plan);
    // Back down to v1, one organization: allowed, any version of the key.
    let back = MigratePlan::new(v2.plan.clone(), 1).org(orgs[2].id);
    assert_eq!(store.migrate_plan(&back).await.unwrap(), 1);
}

/// A migration also moves the trials whose fallback is the migrated
/// version, so none of them falls to the old version later: one
/// organization's, or all; an assignment whose plan and fallback both
/// move counts once.
pub async fn migrate_moves_the_trials_falling_to_the_version(store: Arc<DynStore>) {
    let free = unique_key("free");
    let free_v1 = put(&store, &plan(&free, 10)).await;
    let free_v2 = put(&store, &plan(&free, 20)).await;
    let pro = put(&store, &plan(&unique_key("pro"), 100)).await;
    let ends = noon() + TimeDelta::days(14);
    let (on_free, _) = new_org(&store).await;
    assign(
        &store,
        &AssignPlan::new(on_free.id, free_v1.plan.clone(), noon()),
    )
    .await;
    let mut trials = Vec::new();
    for _ in 0..2 {
        let (org, _) = new_org(&store).await;
        assign(
            &store,
            &AssignPlan::new(org.id, pro.plan.clone(), noon()).trial(ends, free_v1.plan.clone()),
        )
        .await;
        trials.push(org);
    }
    // Free on v1 falling to v1 itself: both move, counted once.
    let (both, _) = new_org(&store).await;
    assign(
        &store,
        &AssignPlan::new(both.id, free_v1.plan.clone(), noon()).trial(ends, free_v1.plan.clone()),
    )
    .await;

    let one = MigratePlan::new(free_v1.plan.clone(), 2).org(trials[0].id);
    assert_eq!(store.migrate_plan(&one).await.unwrap(), 1);
    let moved = store.plan_assignment(trials[0].id).await.unwrap().unwrap();
    assert_eq!(
        (&moved.plan, moved.trial_ends_at, &moved.fallback),
        (&pro.plan, Some(ends), &Some(free_v2.plan.clone())),
        "the trial is untouched; its fallback moved"
    );
    let other = store.plan_assignment(trials[1].id).await.unwrap().unwrap();
    assert_eq!(other.fallback, Some(free_v1.plan.clone()));

    let all = MigratePlan::new(free_v1.plan.clone(), 2);
    assert_eq!(store.migrate_plan(&all).await.unwrap(), 3);
    assert_eq!(store.migrate_plan(&all).await.unwrap(), 0);
    let other = store.plan_assignment(trials[1].id).await.unwrap().unwrap();
    assert_eq!(
        (&other.plan, &other.fallback),
        (&pro.plan, &Some(free_v2.plan.clone()))
    );
    let both = store.plan_assignment(both.id).await.unwrap().unwrap();
    assert_eq!(
        (&both.plan, &both.fallback),
        (&free_v2.plan, &Some(free_v2.plan.clone()))
    );
    let on_free = store.plan_assignment(on_free.id).await.unwrap().unwrap();
    assert_eq!((&on_free.plan, &on_free.fallback), (&free_v2.plan, &None));
    // After the trial, the fallback in effect is the new version's.
    let after = entitlements(&store, trials[1].id, ends + TimeDelta::hours(1)).await;
    assert_eq!(
        token_limit(&after),
        Some((Decimal::from(20), plan_source(&free_v2.plan)))
    );
}

/// The plan's limit decides `reserve` and shows in the usage snapshot
/// (with the plan entry's id); usage so far in the period counts against a
/// new plan's limit from the next call on: a downgrade below it denies.
pub async fn reserve_and_the_snapshot_honour_the_plan_limit(store: Arc<DynStore>) {
    let key = unique_key("reserve");
    let pro = put(&store, &plan(&key, 100)).await;
    let free = put(&store, &plan(&unique_key("down"), 30)).await;
    let (org, owner) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    store
        .record_usage(&[record(
            &org,
            Some(owner),
            &[(MetricKey::TOKENS, 60)],
            noon(),
        )])
        .await
        .unwrap();

    let denied = store
        .reserve(&super::hold(&org, owner, 50, noon(), 60))
        .await
        .unwrap();
    assert!(!denied.granted);
    assert_eq!(denied.limits.len(), 1);
    assert_eq!(denied.limits[0].limit.id, pro.limits[0].id);
    assert_eq!(denied.limits[0].used, Decimal::from(60));
    let granted = store
        .reserve(&super::hold(&org, owner, 40, noon(), 60))
        .await
        .unwrap();
    assert!(granted.granted);

    let query = UsageQuery {
        org: org.id,
        user: None,
        metric: Some(MetricKey::TOKENS),
        periods: CurrentPeriods::at(noon(), org.timezone),
        now: noon(),
    };
    let snapshot = store.usage_snapshot(&query).await.unwrap();
    assert_eq!(snapshot.limits.len(), 1);
    let line = &snapshot.limits[0];
    assert_eq!(line.limit.id, pro.limits[0].id);
    assert_eq!(line.limit.value, Decimal::from(100));
    assert_eq!(
        (line.used, line.reserved),
        (Decimal::from(60), Decimal::from(40))
    );

    // Downgrade below the usage so far: the next hard-limited call is denied.
    assign(&store, &AssignPlan::new(org.id, free.plan.clone(), noon())).await;
    let after = store
        .reserve(&super::hold(&org, owner, 1, noon(), 60))
        .await
        .unwrap();
    assert!(!after.granted);
    assert_eq!(after.limits[0].limit.id, free.limits[0].id);
    assert_eq!(after.limits[0].limit.value, Decimal::from(30));
    assert_eq!(
        after.limits[0].used,
        Decimal::from(60),
        "usage carries over"
    );
    // Unassigned: no limit at all any more.
    assert!(store.unassign_plan(org.id).await.unwrap());
    let free_again = store
        .reserve(&super::hold(&org, owner, 1000, noon(), 60))
        .await
        .unwrap();
    assert!(free_again.granted && free_again.limits.is_empty());
}

/// A plan's rate limit is enforced by `acquire_rate`, with state of its
/// own per organization (two organizations on one version do not share
/// it), and an org-wide override on its (metric, window) replaces it.
pub async fn plan_rate_limits_are_enforced_by_acquire(store: Arc<DynStore>) {
    let Some(rates) = store.rate_limits() else {
        return;
    };
    let pro = put(&store, &plan(&unique_key("rate"), 100)).await;
    let (a, a_owner) = new_org(&store).await;
    let (b, b_owner) = new_org(&store).await;
    for org in [&a, &b] {
        assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    }
    let request = |org: OrgId, user: UserId| RateRequest {
        org,
        user,
        charges: vec![(REQUESTS, Decimal::ONE)],
        now: noon(),
        action: RateAction::Acquire,
    };
    let mut granted = Vec::new();
    for _ in 0..3 {
        granted.push(
            rates
                .acquire_rate(&request(a.id, a_owner))
                .await
                .unwrap()
                .granted,
        );
    }
    assert_eq!(granted, [true, true, false], "a burst of two");
    let result = rates.acquire_rate(&request(b.id, b_owner)).await.unwrap();
    assert!(result.granted, "b has its own state");
    assert_eq!(result.limits.len(), 1);
    assert_eq!(result.limits[0].limit.id, pro.rate_limits[0].id);
    assert_eq!(result.limits[0].limit.org, b.id);

    // An override with a larger burst replaces the plan's.
    let wide = NewRateLimit::new(REQUESTS, RateWindow::Minute, Decimal::from(10))
        .unwrap()
        .into_limit(crate::ids::LimitId::new_v7(), a.id, noon());
    rates.put_rate_limit(&wide).await.unwrap();
    let now = rates.acquire_rate(&request(a.id, a_owner)).await.unwrap();
    assert!(now.granted);
    assert_eq!(now.limits.len(), 1);
    assert_eq!(now.limits[0].limit.id, wide.id);
    // The plan's rate limit is in the effective view, the override on top.
    let e = entitlements(&store, a.id, noon()).await;
    assert_eq!(e.rate_limits.len(), 1);
    assert_eq!(e.rate_limits[0].0.id, wide.id);
}

/// Every kind of change to entitlements makes the version grow: an
/// assignment, a migration, a feature, a limit, a rate limit, and their
/// removal. (A new catalog version is no change to any organization's
/// entitlements: each names its version, and versions never change.)
pub async fn the_entitlements_version_grows_with_every_kind_of_change(store: Arc<DynStore>) {
    let key = unique_key("version");
    let v1 = put(&store, &plan(&key, 1)).await;
    put(&store, &plan(&key, 2)).await;
    let mut last = store.entitlements_version().await.unwrap();
    let mut grew = |now: i64, what: &str| {
        assert!(now > last, "{what}: {now} after {last}");
        last = now;
    };
    let (org, _) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, v1.plan.clone(), noon())).await;
    grew(store.entitlements_version().await.unwrap(), "assign");
    store
        .migrate_plan(&MigratePlan::new(v1.plan.clone(), 2).org(org.id))
        .await
        .unwrap();
    grew(store.entitlements_version().await.unwrap(), "migrate");
    store
        .update_feature(org.id, &veo(), &FeatureChange::enabled(true), noon())
        .await
        .unwrap();
    grew(store.entitlements_version().await.unwrap(), "a feature");
    store.delete_feature(org.id, &veo()).await.unwrap();
    grew(
        store.entitlements_version().await.unwrap(),
        "a feature deleted",
    );
    let l = store
        .put_limit(&limit(
            org.id,
            LimitScope::Organization,
            MetricKey::TOKENS,
            Period::Daily,
            5,
        ))
        .await
        .unwrap();
    grew(store.entitlements_version().await.unwrap(), "a limit");
    store.delete_limit(org.id, l.id).await.unwrap();
    grew(
        store.entitlements_version().await.unwrap(),
        "a limit deleted",
    );
    if let Some(rates) = store.rate_limits() {
        let r = NewRateLimit::new(REQUESTS, RateWindow::Second, Decimal::ONE)
            .unwrap()
            .into_limit(crate::ids::LimitId::new_v7(), org.id, noon());
        rates.put_rate_limit(&r).await.unwrap();
        grew(store.entitlements_version().await.unwrap(), "a rate limit");
        rates.delete_rate_limit(org.id, r.id).await.unwrap();
        grew(
            store.entitlements_version().await.unwrap(),
            "a rate limit deleted",
        );
    }
    assert!(store.unassign_plan(org.id).await.unwrap());
    grew(store.entitlements_version().await.unwrap(), "unassign");
}

/// One organization's entitlements never show another's plan, overrides,
/// or per-user rows, though both are on the same plan version.
pub async fn entitlements_are_the_organizations_own(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("own"), 100)).await;
    let (a, a_owner) = new_org(&store).await;
    let (b, _) = new_org(&store).await;
    let (c, _) = new_org(&store).await;
    for org in [&a, &b] {
        assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    }
    store
        .put_limit(&limit(
            a.id,
            LimitScope::Organization,
            MetricKey::TOKENS,
            Period::Monthly,
            7,
        ))
        .await
        .unwrap();
    store
        .put_limit(&limit(
            a.id,
            LimitScope::User(a_owner),
            MetricKey::COST_USD,
            Period::Daily,
            3,
        ))
        .await
        .unwrap();
    store
        .update_feature(
            a.id,
            &FeatureKey::from_static("a-only"),
            &FeatureChange::enabled(true),
            noon(),
        )
        .await
        .unwrap();

    let ea = entitlements(&store, a.id, noon()).await;
    let eb = entitlements(&store, b.id, noon()).await;
    let ec = entitlements(&store, c.id, noon()).await;
    assert_eq!((ea.org, eb.org, ec.org), (a.id, b.id, c.id));
    assert_eq!(ea.limits.len(), 2);
    assert!(ea.limits.iter().all(|(l, _)| l.org == a.id));
    assert!(eb.limits.iter().all(|(l, _)| l.org == b.id));
    assert!(eb.rate_limits.iter().all(|(l, _)| l.org == b.id));
    assert_eq!(
        token_limit(&eb),
        Some((Decimal::from(100), plan_source(&pro.plan)))
    );
    assert_eq!(eb.limits.len(), 1);
    assert!(eb.features.iter().all(|(f, _)| f.key == veo()));
    assert_eq!(eb.assignment.as_ref().map(|x| x.org), Some(b.id));
    assert_eq!((ec.assignment, ec.plan), (None, None));
    assert!(ec.limits.is_empty() && ec.features.is_empty() && ec.rate_limits.is_empty());
}

/// `valid_until` is the earliest instant after the one asked about at
/// which an override lapses or the trial ends; `None` when nothing will.
pub async fn valid_until_is_the_first_lapse_after_now(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("until"), 100)).await;
    let (org, owner) = new_org(&store).await;
    let h = |n: i64| noon() + TimeDelta::hours(n);
    assert_eq!(entitlements(&store, org.id, noon()).await.valid_until, None);
    assign(
        &store,
        &AssignPlan::new(org.id, pro.plan.clone(), noon()).trial(h(10), None),
    )
    .await;
    let mut user_limit = limit(
        org.id,
        LimitScope::User(owner),
        MetricKey::TOKENS,
        Period::Daily,
        5,
    );
    user_limit.expires_at = Some(h(4));
    store.put_limit(&user_limit).await.unwrap();
    store
        .update_feature(
            org.id,
            &veo(),
            &FeatureChange::enabled(false).until(Some(h(2))),
            noon(),
        )
        .await
        .unwrap();
    if let Some(rates) = store.rate_limits() {
        let r = NewRateLimit::new(REQUESTS, RateWindow::Minute, Decimal::ONE)
            .unwrap()
            .until(h(6))
            .into_limit(crate::ids::LimitId::new_v7(), org.id, noon());
        rates.put_rate_limit(&r).await.unwrap();
    }
    let until = |e: Entitlements| e.valid_until;
    assert_eq!(
        until(entitlements(&store, org.id, noon()).await),
        Some(h(2))
    );
    assert_eq!(until(entitlements(&store, org.id, h(2)).await), Some(h(4)));
    let after_user = until(entitlements(&store, org.id, h(4)).await);
    if store.rate_limits().is_some() {
        assert_eq!(after_user, Some(h(6)));
    } else {
        assert_eq!(after_user, Some(h(10)));
    }
    assert_eq!(until(entitlements(&store, org.id, h(7)).await), Some(h(10)));
    assert_eq!(until(entitlements(&store, org.id, h(10)).await), None);
}

/// How long a streaming store may take to push a change.
const PUSHED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a store pushes changes, a watcher hears of a change to one
/// organization as that organization's own change, `Org(org)`, within a few
/// seconds: an assignment, and then an override. `All` does not count, and
/// other organizations' changes (other tests share the database) are
/// skipped. Before each change, whatever earlier steps pushed is drained: a
/// marker organization's change commits after them, so once the marker's
/// is heard, theirs were too.
pub async fn watchers_hear_of_changes(store: Arc<DynStore>) {
    let Some(mut watch) = store.watch_entitlements().await.unwrap() else {
        return;
    };
    let pro = put(&store, &plan(&unique_key("watch"), 100)).await;
    let (warm_up, _) = new_org(&store).await;
    assign(
        &store,
        &AssignPlan::new(warm_up.id, pro.plan.clone(), noon()),
    )
    .await;
    // A first organization's change (or, on `PgStore`, the connection's
    // own `All` once it listens) is heard: from here on, nothing committed
    // goes unheard.
    let first = tokio::time::timeout(PUSHED_WITHIN, watch.next()).await;
    assert!(
        matches!(first, Ok(Some(_))),
        "a streaming store pushes an organization's change: {first:?}"
    );
    let (org, _) = new_org(&store).await;
    let (marker, _) = new_org(&store).await;
    // Members are no entitlement; the assignment is.
    store
        .add_member(&Membership {
            user_id: UserId::new_v7(),
            organization_id: org.id,
            role: Role::Viewer,
            created_at: noon(),
        })
        .await
        .unwrap();
    assign(
        &store,
        &AssignPlan::new(marker.id, pro.plan.clone(), noon()),
    )
    .await;
    hear(&mut watch, marker.id, "the marker's assignment").await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    hear(&mut watch, org.id, "the assignment").await;

    let off = FeatureChange::enabled(false);
    store
        .update_feature(marker.id, &veo(), &off, noon())
        .await
        .unwrap();
    hear(&mut watch, marker.id, "the marker's override").await;
    store
        .update_feature(org.id, &veo(), &off, noon())
        .await
        .unwrap();
    hear(&mut watch, org.id, "the override").await;
}

/// Waits for `Org(org)` on `watch`, skipping `All` and other
/// organizations' changes; fails after [`PUSHED_WITHIN`].
async fn hear(watch: &mut crate::store::EntitlementWatch, org: OrgId, what: &str) {
    let heard = tokio::time::timeout(PUSHED_WITHIN, async {
        loop {
            match watch.next().await {
                Some(EntitlementChange::Org(o)) if o == org => return Ok(()),
                Some(EntitlementChange::All | EntitlementChange::Org(_)) => continue,
                None => return Err("the stream ended"),
            }
        }
    })
    .await;
    assert_eq!(
        heard,
        Ok(Ok(())),
        "{what} was pushed as Org({org}) within {PUSHED_WITHIN:?}"
    );
}

/// Assignments are audited as the organization's `plan` events (target the
/// plan key; created, updated by a reassignment or a migration, deleted),
/// and a new catalog version as `plan_version.created` under the nil
/// organization id, target `<key>:<version>`.
pub async fn plan_changes_are_audited(store: Arc<DynStore>) {
    let key = unique_key("audit");
    let v1 = put(&store, &plan(&key, 1)).await;
    let v2 = put(&store, &plan(&key, 2)).await;
    let (org, _) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, v1.plan.clone(), noon())).await;
    assign(
        &store,
        &AssignPlan::new(org.id, v1.plan.clone(), noon())
            .trial(noon() + TimeDelta::days(1), v2.plan.clone()),
    )
    .await;
    store
        .migrate_plan(&MigratePlan::new(v1.plan.clone(), 2).org(org.id))
        .await
        .unwrap();
    assert!(store.unassign_plan(org.id).await.unwrap());

    let query = AuditQuery::new(100)
        .unwrap()
        .org(org.id)
        .action("plan")
        .unwrap();
    let mut events = store.audit_log(&query).await.unwrap();
    events.reverse();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "plan.created",
            "plan.updated",
            "plan.updated",
            "plan.deleted"
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.target.as_deref() == Some(key.as_str()))
    );
    let migrated = events[2].after.as_ref().unwrap();
    assert_eq!(migrated["version"], json!(2));
    assert_eq!(migrated["organization_id"], json!(org.id));
    assert_eq!(migrated["fallback_version"], json!(2));
    assert!(events[3].after.is_none());

    let nil = OrgId::from(uuid::Uuid::nil());
    let catalog = AuditQuery::new(500)
        .unwrap()
        .org(nil)
        .action("plan_version.created")
        .unwrap();
    let targets: Vec<_> = store
        .audit_log(&catalog)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.target)
        .collect();
    for v in [&v1, &v2] {
        let target = format!("{}:{}", v.plan.key, v.plan.version);
        assert!(targets.contains(&target), "{target} in {targets:?}");
    }
}

/// A budget lease is sized by the effective limit: the plan's, with the
/// usage so far counted against it.
pub async fn a_lease_is_sized_by_the_plan_limit(store: Arc<DynStore>) {
    let Some(leases) = store.leases() else { return };
    let pro = put(&store, &plan(&unique_key("lease"), 100)).await;
    let (org, owner) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    store
        .record_usage(&[record(
            &org,
            Some(owner),
            &[(MetricKey::TOKENS, 60)],
            noon(),
        )])
        .await
        .unwrap();
    let request = crate::limits::lease::LeaseRequest::new(
        crate::limits::lease::LeaseId::new_v7(),
        org.id,
        owner,
        MetricKey::TOKENS,
        CurrentPeriods::at(noon(), org.timezone),
        noon(),
        noon() + TimeDelta::seconds(30),
        Decimal::ZERO,
        Decimal::from(1000),
    )
    .with_share(Decimal::ONE);
    let grant = leases.lease_budget(&request).await.unwrap();
    assert_eq!(grant.free, Decimal::from(40), "the plan's 100 less 60 used");
    assert_eq!(grant.headroom, Some(Decimal::ZERO));
}

/// Deleting an organization deletes its assignment with it; the catalog
/// stays.
pub async fn deleting_an_organization_drops_its_assignment(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("gone"), 100)).await;
    let (org, _) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    assert!(store.delete_organization(org.id).await.unwrap());
    assert_eq!(store.plan_assignment(org.id).await.unwrap(), None);
    assert!(!store.unassign_plan(org.id).await.unwrap());
    assert_eq!(
        kind(store.entitlements(org.id, noon()).await),
        ErrorKind::NotFound
    );
    assert_eq!(store.plan_version(&pro.plan).await.unwrap(), Some(pro));
}

/// A lapsed override counts as absent for a change too: changing only
/// `enabled` of a feature row that lapsed starts from a fresh row (no
/// config, no expiry), and setting a limit in a lapsed slot takes the new
/// expiry (or none).
pub async fn a_change_to_a_lapsed_override_starts_afresh(store: Arc<DynStore>) {
    let pro = put(&store, &plan(&unique_key("afresh"), 100)).await;
    let (org, _) = new_org(&store).await;
    assign(&store, &AssignPlan::new(org.id, pro.plan.clone(), noon())).await;
    let lapse = noon() + TimeDelta::hours(1);
    let change = FeatureChange::config(json!({"o": 1}))
        .unwrap()
        .until(Some(lapse));
    store
        .update_feature(org.id, &veo(), &change, noon())
        .await
        .unwrap();
    let later = lapse + TimeDelta::hours(1);
    let fresh = store
        .update_feature(org.id, &veo(), &FeatureChange::enabled(true), later)
        .await
        .unwrap();
    assert!(fresh.enabled);
    assert_eq!((fresh.config, fresh.expires_at), (json!(null), None));
    let e = entitlements(&store, org.id, later).await;
    let (veo_now, source) = e.features.iter().find(|(f, _)| f.key == veo()).unwrap();
    assert_eq!(veo_now.config, json!(null));
    assert_eq!(source, &EntitlementSource::Override { expires_at: None });

    let mut lapsing = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Monthly,
        7,
    );
    lapsing.expires_at = Some(lapse);
    let first = store.put_limit(&lapsing).await.unwrap();
    let mut again = limit(
        org.id,
        LimitScope::Organization,
        MetricKey::TOKENS,
        Period::Monthly,
        9,
    );
    again.expires_at = None;
    let replaced = store.put_limit(&again).await.unwrap();
    assert_eq!(replaced.id, first.id, "the same slot");
    assert_eq!(
        (replaced.value, replaced.expires_at),
        (Decimal::from(9), None)
    );
    assert_eq!(
        token_limit(&entitlements(&store, org.id, later).await),
        Some((
            Decimal::from(9),
            EntitlementSource::Override { expires_at: None }
        ))
    );
}
