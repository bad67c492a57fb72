//! Plans through the facade: the catalog, assignments and trials,
//! overrides, the effective view and `explain`, and mid-period changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tenancy::clock::Clock;
use tenancy::limits::LimitScope;
use tenancy::limits::rate::RateWindow;
use tenancy::model::audit::{AuditActor, AuditQuery};
use tenancy::model::plan::{
    Entitlement, EntitlementSource, EntitlementValue, MigratePlan, NewPlanVersion, PlanVersion,
};
use tenancy::{
    ErrorKind, FeatureChange, FeatureKey, MetricKey, NewOrganization, NewRateLimit, Period,
    PlanKey, ReserveOutcome, Role, Tenancy, UsageEvent, UserId,
};
use tenancy_testkit::unique_slug;

use crate::scene::{Scene, dec, kind, monthly, scene, utc};

fn exports() -> FeatureKey {
    FeatureKey::parse("exports").unwrap()
}

fn tokens_limit() -> Entitlement {
    Entitlement::Limit {
        metric: MetricKey::TOKENS,
        period: Period::Monthly,
    }
}

/// `free`: 1 000 tokens a month, no exports.
fn free() -> NewPlanVersion {
    NewPlanVersion::new(PlanKey::parse("free").unwrap(), "Free")
        .and_then(|p| p.limit(monthly("tokens", 1_000)))
        .unwrap()
}

/// `pro`: 100 000 tokens a month, exports on, 60 requests a minute.
fn pro() -> NewPlanVersion {
    NewPlanVersion::new(PlanKey::parse("pro").unwrap(), "Pro")
        .and_then(|p| p.feature(exports(), true))
        .and_then(|p| p.limit(monthly("tokens", 100_000)))
        .and_then(|p| p.rate_limit(NewRateLimit::from_limit_type("minute_requests", dec(60))?))
        .unwrap()
}

async fn catalog(s: &Scene) -> (PlanVersion, PlanVersion) {
    let free = s.op().create_plan_version(free()).await.expect("free");
    let pro = s.op().create_plan_version(pro()).await.expect("pro");
    (free, pro)
}

async fn record_tokens(s: &Scene, amount: i64) {
    let event = UsageEvent::new(s.org).quantity(MetricKey::TOKENS, dec(amount));
    s.tenancy
        .service()
        .record_usage(event)
        .await
        .expect("record");
}

/// The quickstart's story: a free organization at its limit is denied;
/// once the operator puts it on pro, the very next call through the same
/// (warm) `Tenancy` is allowed, and pro's feature is on.
#[tokio::test]
async fn a_free_org_at_its_limit_is_allowed_on_the_next_call_after_an_upgrade() {
    let s = scene().await;
    let (free, pro) = catalog(&s).await;
    s.op().assign_plan(s.org, free.plan.clone()).await.unwrap();
    record_tokens(&s, 1_000).await;

    let denied = s.check(&s.owner_ctx, "tokens", 1).await;
    assert!(!denied.allowed);
    assert_eq!(denied.limit, Some(dec(1_000)));
    // Warm every cache.
    assert!(
        !s.tenancy
            .has_feature(&s.owner_ctx, "exports")
            .await
            .unwrap()
    );

    s.op().assign_plan(s.org, pro.plan.clone()).await.unwrap();
    let allowed = s.check(&s.owner_ctx, "tokens", 1).await;
    assert!(allowed.allowed);
    assert_eq!(allowed.limit, Some(dec(100_000)));
    assert_eq!(allowed.used, dec(1_000), "usage so far counts against pro");
    assert!(
        s.tenancy
            .has_feature(&s.owner_ctx, "exports")
            .await
            .unwrap()
    );
    let held = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", dec(500))
        .await
        .unwrap();
    assert!(held.decision().allowed);
    assert_eq!(
        s.tenancy.plan(&s.owner_ctx).await.unwrap().unwrap().plan,
        pro.plan
    );
}

/// A downgrade below the period's usage denies further hard-limited
/// consumption from the next call on, and each crossed threshold of the
/// new limit alerts once, at the change.
#[tokio::test]
async fn a_downgrade_below_usage_denies_further_reserves_and_alerts_once() {
    let s = scene().await;
    let (free, pro) = catalog(&s).await;
    s.op().assign_plan(s.org, pro.plan.clone()).await.unwrap();
    record_tokens(&s, 5_000).await; // 5 % of pro: no alert.
    assert!(s.fired(LimitScope::Organization).await.is_empty());

    s.op().assign_plan(s.org, free.plan.clone()).await.unwrap();
    let denied = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", dec(1))
        .await
        .unwrap();
    let ReserveOutcome::Denied(decision) = denied else {
        panic!("a reserve past the downgraded limit was granted");
    };
    assert_eq!(decision.limit, Some(dec(1_000)));
    assert_eq!(decision.used, dec(5_000));
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80, 90, 100]);

    // More usage (recorded, not reserved), another denial: no new alert.
    record_tokens(&s, 10).await;
    assert!(!s.check(&s.owner_ctx, "tokens", 1).await.allowed);
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80, 90, 100]);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(5_010));
}

/// A trial falls to its fallback at `trial_ends_at` by itself, even with
/// the cache warm and a TTL far longer than the trial: the cached view is
/// used no later than its `valid_until`.
#[tokio::test]
async fn a_trial_falls_to_its_fallback_at_its_end_with_the_cache_warm() {
    let s = scene().await;
    let (free, pro) = catalog(&s).await;
    let tenancy = Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .clock(s.clock.clone())
        .feature_cache_ttl(Duration::from_secs(24 * 3600))
        .build()
        .unwrap();
    let ops = tenancy.operator(&s.operator);
    let ends = utc("2026-03-04T10:10:00Z");
    ops.start_trial(s.org, pro.plan.clone(), ends, free.plan.clone())
        .await
        .unwrap();
    let ctx = tenancy.context(s.owner, s.org).await.unwrap();
    assert!(tenancy.has_feature(&ctx, "exports").await.unwrap());

    // Behind this tenancy's back (straight to the store): hidden while the
    // cached view is valid.
    s.store
        .update_feature(
            s.org,
            &FeatureKey::parse("beta").unwrap(),
            &FeatureChange::enabled(true),
            s.clock.now(),
        )
        .await
        .unwrap();
    s.clock.advance(Duration::from_secs(10 * 60 - 1));
    assert!(tenancy.has_feature(&ctx, "exports").await.unwrap());
    assert!(!tenancy.has_feature(&ctx, "beta").await.unwrap(), "cached");

    s.clock.advance(Duration::from_secs(1));
    assert!(!tenancy.has_feature(&ctx, "exports").await.unwrap());
    assert!(tenancy.has_feature(&ctx, "beta").await.unwrap(), "reloaded");
    let why = tenancy.explain(&ctx, tokens_limit()).await.unwrap();
    assert_eq!(why.plan, Some(free.plan.clone()));
    assert_eq!(why.trial_ends_at, None, "the trial is over");
    // The assignment still says what it was.
    let assignment = tenancy.plan(&ctx).await.unwrap().unwrap();
    assert_eq!(
        (
            assignment.plan,
            assignment.trial_ends_at,
            assignment.fallback
        ),
        (pro.plan, Some(ends), Some(free.plan.clone()))
    );

    let past = ops.start_trial(s.org, free.plan.clone(), s.clock.now(), None);
    assert_eq!(kind(past.await), ErrorKind::InvalidInput);
}

/// "20 % more tokens this month": an override raising the plan's limit,
/// lapsing at the end of the month; the plan's limit applies again from
/// then on, with no job run.
#[tokio::test]
async fn an_override_raises_a_limit_until_the_end_of_the_month() {
    let s = scene().await;
    let (free, _) = catalog(&s).await;
    s.op().assign_plan(s.org, free.plan.clone()).await.unwrap();
    let month_end = utc("2026-04-01T00:00:00Z");
    s.op()
        .set_limit(s.org, monthly("tokens", 1_200).until(month_end))
        .await
        .unwrap();
    record_tokens(&s, 1_000).await;
    assert!(s.check(&s.owner_ctx, "tokens", 200).await.allowed);
    assert!(!s.check(&s.owner_ctx, "tokens", 201).await.allowed);
    let why = s
        .tenancy
        .explain(&s.owner_ctx, tokens_limit())
        .await
        .unwrap();
    assert_eq!(
        why.source,
        Some(EntitlementSource::Override {
            expires_at: Some(month_end)
        })
    );

    // April: a fresh period, and the plan's 1 000 again.
    s.clock.advance(Duration::from_secs(
        (month_end - s.clock.now()).num_seconds() as u64,
    ));
    assert!(s.check(&s.owner_ctx, "tokens", 1_000).await.allowed);
    assert!(!s.check(&s.owner_ctx, "tokens", 1_001).await.allowed);
    let why = s
        .tenancy
        .explain(&s.owner_ctx, tokens_limit())
        .await
        .unwrap();
    assert_eq!(
        why.source,
        Some(EntitlementSource::Plan {
            plan: free.plan.clone()
        })
    );
    // The operator still sees the lapsed row (overrides are the org's own rows).
    assert_eq!(s.op().limits(s.org).await.unwrap().len(), 1);
}

/// `explain` names each source: the plan and its version, an override
/// with its expiry, or the default.
#[tokio::test]
async fn explain_says_where_each_value_comes_from() {
    let s = scene().await;
    let (_, pro) = catalog(&s).await;
    let ctx = &s.owner_ctx;
    let feature = |key: &str| Entitlement::Feature {
        key: FeatureKey::parse(key).unwrap(),
    };
    let requests = Entitlement::RateLimit {
        metric: MetricKey::parse("requests").unwrap(),
        window: RateWindow::Minute,
    };

    // No plan: everything is the default.
    let none = s.tenancy.explain(ctx, feature("exports")).await.unwrap();
    assert!(none.is_default());
    assert_eq!((none.value, none.plan), (None, None));

    s.op().assign_plan(s.org, pro.plan.clone()).await.unwrap();
    let from_plan = s.tenancy.explain(ctx, feature("exports")).await.unwrap();
    assert_eq!(
        from_plan.source,
        Some(EntitlementSource::Plan {
            plan: pro.plan.clone()
        })
    );
    assert_eq!(pro.plan.version, 1);
    assert!(matches!(
        from_plan.value,
        Some(EntitlementValue::Feature { enabled: true, .. })
    ));
    let limit = s.tenancy.explain(ctx, tokens_limit()).await.unwrap();
    assert!(matches!(
        limit.value,
        Some(EntitlementValue::Limit { value, .. }) if value == dec(100_000)
    ));
    let rate = s.tenancy.explain(ctx, requests.clone()).await.unwrap();
    assert!(matches!(
        rate.value,
        Some(EntitlementValue::RateLimit { value, .. }) if value == dec(60)
    ));

    // An override turning the plan's feature off, for good.
    s.op().disable_feature(s.org, "exports").await.unwrap();
    let overridden = s.tenancy.explain(ctx, feature("exports")).await.unwrap();
    assert_eq!(
        overridden.source,
        Some(EntitlementSource::Override { expires_at: None })
    );
    assert!(!s.tenancy.has_feature(ctx, "exports").await.unwrap());
    assert_eq!(overridden.plan, Some(pro.plan.clone()));

    // A feature neither has.
    let default = s.tenancy.explain(ctx, feature("audit")).await.unwrap();
    assert!(default.is_default());
    assert_eq!(default.plan, Some(pro.plan.clone()));

    // The operator's explain agrees with the member's.
    let op = s.op().explain(s.org, requests).await.unwrap();
    assert_eq!(
        op,
        s.tenancy
            .explain(ctx, op.entitlement.clone())
            .await
            .unwrap()
    );
}

/// Orgs stay on their version until migrated; a migration moves them and
/// the next call applies the new version's limits to the usage so far.
#[tokio::test]
async fn orgs_stay_on_their_version_until_migrated() {
    let s = scene().await;
    let (free, _) = catalog(&s).await;
    s.op().assign_plan(s.org, free.plan.clone()).await.unwrap();
    let v2 = NewPlanVersion::new(PlanKey::parse("free").unwrap(), "Free")
        .and_then(|p| p.limit(monthly("tokens", 2_000)))
        .unwrap();
    let v2 = s.op().create_plan_version(v2).await.unwrap();
    assert_eq!(v2.plan.version, 2);
    record_tokens(&s, 1_500).await;
    assert!(
        !s.check(&s.owner_ctx, "tokens", 1).await.allowed,
        "still v1"
    );

    let moved = s
        .op()
        .migrate_plan(MigratePlan::new(free.plan.clone(), 2).org(s.org))
        .await
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(
        s.tenancy.plan(&s.owner_ctx).await.unwrap().unwrap().plan,
        v2.plan
    );
    let allowed = s.check(&s.owner_ctx, "tokens", 500).await;
    assert!(allowed.allowed);
    assert_eq!(allowed.used, dec(1_500), "usage is untouched");
    assert_eq!(
        s.op()
            .plan_versions(Some(&free.plan.key))
            .await
            .unwrap()
            .len(),
        2
    );

    // Removing the plan leaves the org's own rows alone: no limit at all.
    assert!(s.op().remove_plan(s.org).await.unwrap());
    assert!(s.tenancy.plan(&s.owner_ctx).await.unwrap().is_none());
    assert_eq!(s.check(&s.owner_ctx, "tokens", 1_000_000).await.limit, None);
}

/// Any role reads its own organization's plan, entitlements and
/// explanations; nobody reads another organization's; and no member, of
/// any role, has a way to change them (plans, assignments and overrides are
/// the operator's).
#[tokio::test]
async fn members_read_only_their_own_orgs_plan() {
    let s = scene().await;
    let (_, pro) = catalog(&s).await;
    s.op().assign_plan(s.org, pro.plan.clone()).await.unwrap();

    let viewer = s.member(Role::Viewer).await;
    assert_eq!(
        s.tenancy.plan(&viewer).await.unwrap().unwrap().plan,
        pro.plan
    );
    let seen = s.tenancy.entitlements(&viewer).await.unwrap();
    assert_eq!(seen.plan, Some(pro.plan.clone()));
    assert!(seen.features.iter().any(|(f, _)| f.key == exports()));
    assert!(
        s.tenancy
            .explain(&viewer, tokens_limit())
            .await
            .unwrap()
            .value
            .is_some()
    );
    // A viewer may read but not consume.
    assert_eq!(
        kind(s.tenancy.reserve(&viewer, "tokens", dec(1)).await),
        ErrorKind::PermissionDenied
    );

    // A per-user override is its user's alone to see.
    let member = s.member(Role::Member).await;
    s.op()
        .set_limit(s.org, monthly("tokens", 10).for_user(member.user()))
        .await
        .unwrap();
    let own = s.tenancy.entitlements(&member).await.unwrap();
    assert!(
        own.limits
            .iter()
            .any(|(l, _)| l.scope.user() == Some(member.user()))
    );
    let others = s.tenancy.entitlements(&viewer).await.unwrap();
    assert!(others.limits.iter().all(|(l, _)| l.scope.user().is_none()));

    // Someone from another organization gets no context here, so no read.
    let stranger = UserId::new_v7();
    let theirs = s
        .tenancy
        .create_organization(
            stranger,
            NewOrganization::new("Other", &unique_slug("other")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        kind(s.tenancy.context(stranger, s.org).await),
        ErrorKind::PermissionDenied
    );
    let their_ctx = s.tenancy.context(stranger, theirs.id).await.unwrap();
    assert!(s.tenancy.plan(&their_ctx).await.unwrap().is_none());
    let their_view = s.tenancy.entitlements(&their_ctx).await.unwrap();
    assert_eq!(their_view.org, theirs.id);
    assert!(their_view.plan.is_none() && their_view.features.is_empty());
    assert!(
        s.tenancy
            .explain(&their_ctx, tokens_limit())
            .await
            .unwrap()
            .is_default()
    );
}

/// Every operator change to plans is in the audit log with the operator
/// as its actor, one event per change in order: the trial's assignment is
/// `plan.created` (target `pro`, after naming pro, the trial's end and the
/// fallback), the move to free `plan.updated` (before pro, after free), the
/// removal `plan.deleted` (before free, no after). The owner reads the same
/// events in the organization's log.
#[tokio::test]
async fn operator_plan_changes_are_audited() {
    let s = scene().await;
    let (free, pro) = catalog(&s).await;
    let ends = s.clock.now() + chrono::TimeDelta::days(14);
    s.op()
        .start_trial(s.org, pro.plan.clone(), ends, free.plan.clone())
        .await
        .unwrap();
    s.op().assign_plan(s.org, free.plan.clone()).await.unwrap();
    s.op().remove_plan(s.org).await.unwrap();

    let actor = AuditActor::operator(s.operator.name());
    let page = s
        .op()
        .audit_log(AuditQuery::new(100).unwrap().org(s.org))
        .await
        .unwrap();
    // Newest first: oldest first to read in the order of the calls.
    let mut plan_events: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.entity() == "plan" || e.entity() == "plan_version")
        .collect();
    plan_events.reverse();
    let seen: Vec<_> = plan_events
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("plan.created", Some("pro")),
            ("plan.updated", Some("free")),
            ("plan.deleted", Some("free")),
        ]
    );
    assert!(plan_events.iter().all(|e| e.actor == actor));
    let field = |v: &Option<serde_json::Value>, name: &str| v.as_ref().map(|v| v[name].clone());
    let (created, updated, deleted) = (plan_events[0], plan_events[1], plan_events[2]);
    assert_eq!(created.before, None);
    assert_eq!(field(&created.after, "plan_key"), Some(json!("pro")));
    assert_eq!(field(&created.after, "fallback_key"), Some(json!("free")));
    assert!(field(&created.after, "trial_ends_at").is_some_and(|t| !t.is_null()));
    assert_eq!(field(&updated.before, "plan_key"), Some(json!("pro")));
    assert_eq!(field(&updated.after, "plan_key"), Some(json!("free")));
    assert_eq!(field(&deleted.before, "plan_key"), Some(json!("free")));
    assert_eq!(deleted.after, None);
    // The owner sees the same events in the organization's log.
    let owners = s
        .tenancy
        .audit_log(&s.owner_ctx, AuditQuery::new(100).unwrap())
        .await
        .unwrap();
    let mut owners_plan: Vec<_> = owners
        .events
        .iter()
        .filter(|e| e.entity() == "plan" || e.entity() == "plan_version")
        .map(|e| e.id)
        .collect();
    owners_plan.reverse();
    assert_eq!(
        owners_plan,
        plan_events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

/// A member's lists — features, limits, rate limits, the usage summary —
/// are the effective ones: the plan's, with the overrides on top; the
/// operator's lists are the organization's own rows.
#[tokio::test]
async fn members_lists_are_the_effective_ones() {
    let s = scene().await;
    let (_, pro) = catalog(&s).await;
    s.op().assign_plan(s.org, pro.plan.clone()).await.unwrap();
    s.op()
        .set_limit(s.org, crate::scene::daily("tokens", 50))
        .await
        .unwrap();
    let ctx = &s.owner_ctx;

    let features = s.tenancy.features(ctx).await.unwrap();
    assert!(features.iter().any(|f| f.key == exports() && f.enabled));
    let limits = s.tenancy.limits(ctx).await.unwrap();
    let mut values: Vec<_> = limits.iter().map(|l| (l.period, l.value)).collect();
    values.sort();
    assert_eq!(
        values,
        vec![(Period::Daily, dec(50)), (Period::Monthly, dec(100_000))]
    );
    let rates = s.tenancy.rate_limits(ctx).await.unwrap();
    assert_eq!(rates.len(), 1);
    assert_eq!(rates[0].limit.value, dec(60));
    let lines = s.tenancy.usage_summary(ctx).await.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.period == Period::Monthly && l.limit == Some(dec(100_000)))
    );

    // The operator's lists: the org's own rows only.
    assert!(s.op().features(s.org).await.unwrap().is_empty());
    assert_eq!(s.op().limits(s.org).await.unwrap().len(), 1);
    assert!(s.op().rate_limits(s.org).await.unwrap().is_empty());
    let everything = s.op().entitlements(s.org).await.unwrap();
    assert_eq!(everything.limits.len(), 2);
    assert_eq!(everything.valid_until, None);
}

/// `valid_until` is the first instant the view a user is shown changes: a
/// member's per-user override's expiry is in their own view's
/// `valid_until`, and in nobody else's, whatever their role (a viewer's
/// and an admin's views hold no other user's per-user rows, so that
/// expiry changes nothing they see). The operator's view, which holds
/// every scope, carries it. The SQL member path keeps the same rule
/// (`testkit/tests/sql/plans.rs`
/// `valid_until_covers_only_the_rows_a_member_is_shown`).
#[tokio::test]
async fn valid_until_covers_only_the_rows_a_user_is_shown() {
    let s = scene().await;
    let (_, pro) = catalog(&s).await;
    s.op().assign_plan(s.org, pro.plan.clone()).await.unwrap();
    let viewer = s.member(Role::Viewer).await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let hidden = s.clock.now() + chrono::TimeDelta::days(3);
    s.op()
        .set_limit(
            s.org,
            monthly("tokens", 10).for_user(member.user()).until(hidden),
        )
        .await
        .unwrap();

    let own = s.tenancy.entitlements(&member).await.unwrap();
    assert_eq!(own.valid_until, Some(hidden), "its own override");
    assert!(
        own.limits
            .iter()
            .any(|(l, _)| l.scope.user() == Some(member.user()))
    );
    for other in [&viewer, &admin] {
        let seen = s.tenancy.entitlements(other).await.unwrap();
        assert_eq!(seen.valid_until, None, "{:?}", other.role());
        assert!(seen.limits.iter().all(|(l, _)| l.scope.user().is_none()));
    }
    assert_eq!(
        s.op().entitlements(s.org).await.unwrap().valid_until,
        Some(hidden),
        "every scope"
    );
    // The member's limits, through `limits`, are the same rows.
    let limits = s.tenancy.limits(&member).await.unwrap();
    assert!(limits.iter().any(|l| l.expires_at == Some(hidden)));
}
