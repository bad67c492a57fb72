//! The user-client isolation matrix, through the store traits alone, so
//! that every SQL transport runs the same checks: `SupabaseStore`'s user
//! client (`tests/supabase/isolation.rs`) and `PgStore` in user mode
//! (`tests/postgres.rs`).
//!
//! Both organizations must hold a feature, a limit and usage, so that
//! "nothing of the other's" is a refusal, not an empty table.

use chrono::{NaiveDate, Utc};
use tenancy::limits::lease::{LeaseId, LeaseRequest};
use tenancy::limits::rate::{RateAction, RateRequest};
use tenancy::limits::{AlertKey, CurrentPeriods, LimitScope};
use tenancy::model::domain::{DomainChange, DomainName};
use tenancy::model::invitation::InvitationToken;
use tenancy::model::plan::{AssignPlan, MigratePlan, NewPlanVersion, PlanRef};
use tenancy::model::report::{
    EventQuery, ReportDimension, ReportQuery, RollupReconcileQuery, UsageFilter,
};
use tenancy::store::{CounterScope, DynStore, HistoryQuery, OrgQuery, ReserveRequest, UsageQuery};
use tenancy::{AuditQuery, AutoJoin, Invitation, PlanKey, Role};
use tenancy::{
    ErrorKind, FeatureChange, FeatureKey, MetricKey, OrgId, Organization, Period, UsageEvent,
    UserId,
};

/// `result` is a `PermissionDenied` error; `what` names the call.
pub fn denied<T: std::fmt::Debug>(result: tenancy::Result<T>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{what}: {err}");
}

fn snapshot_of(org: OrgId) -> UsageQuery {
    let now = Utc::now();
    UsageQuery::new(org, CurrentPeriods::at(now, chrono_tz::UTC), now)
}

/// Every daily counter of `org` for `scope` from 2000 to 2100.
pub fn history_of(org: OrgId, scope: CounterScope) -> HistoryQuery {
    let (from, to) = (
        NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2100, 1, 1).unwrap(),
    );
    HistoryQuery::new(org, scope, Period::Daily, from, to)
}

/// `as_user`, a member of `own`, reads its own organization — the
/// organization, its members, feature, limit, usage and history — and
/// nothing of `other` (whose member is `other_user`): reads come back empty
/// and usage reads are refused.
pub async fn reads_own_and_nothing_of_another(
    as_user: &DynStore,
    own: &Organization,
    other: &Organization,
    other_user: UserId,
) {
    assert!(as_user.organization(own.id).await.unwrap().is_some());
    assert!(!as_user.members(own.id).await.unwrap().is_empty());
    assert_eq!(as_user.features(own.id).await.unwrap().len(), 1);
    assert_eq!(as_user.limits(own.id).await.unwrap().len(), 1);
    let snapshot = as_user.usage_snapshot(&snapshot_of(own.id)).await.unwrap();
    assert_eq!(snapshot.limits.len(), 1);
    let history = as_user
        .usage_history(&history_of(own.id, CounterScope::Organization))
        .await
        .unwrap();
    assert!(!history.is_empty(), "its own usage");

    assert_eq!(as_user.organization(other.id).await.unwrap(), None);
    assert_eq!(
        as_user.organization_by_slug(&other.slug).await.unwrap(),
        None
    );
    assert!(as_user.members(other.id).await.unwrap().is_empty());
    assert!(as_user.features(other.id).await.unwrap().is_empty());
    assert!(as_user.limits(other.id).await.unwrap().is_empty());
    assert_eq!(
        as_user.membership(other.id, other_user).await.unwrap(),
        None
    );
    assert!(
        as_user
            .memberships_of_user(other_user)
            .await
            .unwrap()
            .is_empty()
    );
    denied(
        as_user.usage_snapshot(&snapshot_of(other.id)).await,
        "another org's snapshot",
    );
    // Plans: its own effective view (read-only), nothing of the other's.
    let now = Utc::now();
    let view = as_user.entitlements(own.id, now).await.unwrap();
    assert_eq!((view.org, view.features.len()), (own.id, 1), "its own view");
    denied(
        as_user.entitlements(other.id, now).await,
        "another org's entitlements",
    );
    assert_eq!(as_user.plan_assignment(other.id).await.unwrap(), None);
    denied(
        as_user
            .usage_history(&history_of(other.id, CounterScope::Organization))
            .await,
        "another org's history",
    );
    // Usage history: its own report and events, nothing of the other's.
    {
        let reports = as_user
            .reports()
            .expect("a user client of a SQL store has usage history");
        let (from, to) = (now - chrono::TimeDelta::days(2), now);
        let own_report = reports
            .usage_report(&ReportQuery::new(own.id, from, to))
            .await
            .unwrap();
        assert!(!own_report.rows.is_empty(), "its own report");
        let own_events = reports
            .usage_events(&EventQuery::new(own.id, from, to))
            .await
            .unwrap();
        let own_event = own_events.events.first().expect("its own events");
        assert!(
            reports
                .usage_event(own.id, own_event.id)
                .await
                .unwrap()
                .is_some()
        );
        denied(
            reports
                .usage_report(&ReportQuery::new(other.id, from, to))
                .await,
            "another org's report",
        );
        denied(
            reports
                .usage_report(
                    &ReportQuery::new(other.id, from, to).group_by([ReportDimension::User]),
                )
                .await,
            "another org's report by user",
        );
        denied(
            reports
                .usage_costs(&ReportQuery::new(other.id, from, to))
                .await,
            "another org's cost rows",
        );
        denied(
            reports
                .usage_events(&EventQuery::new(other.id, from, to))
                .await,
            "another org's events",
        );
        let mut theirs = EventQuery::new(other.id, from, to);
        theirs.filter = UsageFilter {
            users: vec![other_user],
            ..UsageFilter::default()
        };
        denied(
            reports.usage_events(&theirs).await,
            "another org's user's events",
        );
        // An event id of its own, asked of the other organization.
        let found = reports.usage_event(other.id, own_event.id).await;
        assert!(
            !matches!(found, Ok(Some(_))),
            "an event read through another org: {found:?}"
        );
    }
}

/// `as_user` (user `user`) changes nothing in either organization, not even
/// its own: features, limits, usage, holds and alert claims are the
/// operator's and the workers'; nor lists every organization. `service`
/// sees the other organization's feature and limit unchanged after.
pub async fn changes_nothing(
    as_user: &DynStore,
    service: &DynStore,
    user: UserId,
    orgs: [&Organization; 2],
) {
    let beta = FeatureKey::parse("beta").unwrap();
    let before: Vec<_> = {
        let mut rows = Vec::new();
        for org in orgs {
            rows.push((
                service.features(org.id).await.unwrap(),
                service.limits(org.id).await.unwrap(),
            ));
        }
        rows
    };
    for (org, (_, limits)) in orgs.iter().zip(&before) {
        let org = org.id;
        denied(as_user.delete_feature(org, &beta).await, "delete a feature");
        let off = FeatureChange::enabled(false);
        denied(
            as_user.update_feature(org, &beta, &off, Utc::now()).await,
            "change a feature",
        );
        denied(
            as_user.delete_limit(org, limits[0].id).await,
            "delete a limit",
        );
        denied(as_user.put_limit(&limits[0]).await, "set a limit");
        let event = UsageEvent::new(org)
            .user(user)
            .tokens(1, 0, 0)
            .into_record(Utc::now(), chrono_tz::UTC)
            .unwrap();
        denied(as_user.record_usage(&[event]).await, "record usage");
        let periods = CurrentPeriods::at(Utc::now(), chrono_tz::UTC);
        let hold = ReserveRequest::new(org, user, MetricKey::TOKENS, 1.into(), periods, Utc::now());
        denied(as_user.reserve(&hold).await, "reserve");
        let key = AlertKey {
            org,
            scope: LimitScope::Organization,
            metric: MetricKey::TOKENS,
            period: periods.key(Period::Monthly),
            threshold_percent: 80,
        };
        denied(
            as_user.claim_alert(&key, Utc::now()).await,
            "claim an alert",
        );
    }
    denied(
        as_user.list_organizations(&OrgQuery::new(10, 0)).await,
        "list every organization",
    );
    another_orgs_people_and_trail_are_out_of_reach(as_user, user, orgs).await;
    for (org, (features, limits)) in orgs.iter().zip(&before) {
        assert_eq!(&service.features(org.id).await.unwrap(), features);
        assert_eq!(&service.limits(org.id).await.unwrap(), limits);
    }
}

/// The capabilities added with invitations, verified domains, the audit
/// log, rate limits, leases and plans: `as_user` reads nothing of `other`'s and
/// writes nothing the operator or the service writes.
async fn another_orgs_people_and_trail_are_out_of_reach(
    as_user: &DynStore,
    user: UserId,
    [own, other]: [&Organization; 2],
) {
    let now = Utc::now();
    // Invitations: another organization's are out of reach.
    let invitation = Invitation::new(
        other.id,
        None,
        Role::Member,
        5,
        now + chrono::TimeDelta::days(1),
        now,
        Some(user),
    )
    .unwrap();
    let token = InvitationToken::generate().unwrap();
    denied(
        as_user.create_invitation(&invitation, &token.hash()).await,
        "invite to another org",
    );
    denied(
        as_user.pending_invitations(other.id, now).await,
        "another org's invitations",
    );
    // Verified domains: recording them is the operator's, matching an
    // email the service's; another organization's are out of reach.
    let domain = DomainName::parse("isolation.example").unwrap();
    denied(
        as_user
            .put_domain(own.id, &domain, &DomainChange::default(), now)
            .await,
        "record a domain",
    );
    denied(
        as_user.remove_domain(other.id, &domain).await,
        "remove a domain",
    );
    denied(as_user.domains(other.id).await, "another org's domains");
    denied(
        as_user
            .set_auto_join(other.id, &domain, AutoJoin::Member, now)
            .await,
        "another org's join setting",
    );
    denied(
        as_user
            .joinable_organizations(user, "x@isolation.example")
            .await,
        "joinable for any email",
    );
    denied(
        as_user
            .join_by_domain(other.id, user, "x@isolation.example", now)
            .await,
        "join through a domain the store is told of",
    );
    // The audit log: another organization's trail.
    denied(
        as_user
            .audit_log(&AuditQuery::new(10).unwrap().org(other.id))
            .await,
        "another org's audit log",
    );
    // Plans: the catalog, assignments and the version counter are the
    // operator's and the service's, for its own organization too.
    let plan = PlanRef {
        key: PlanKey::parse("isolation").unwrap(),
        version: 1,
    };
    denied(
        as_user
            .put_plan_version(
                &NewPlanVersion::new(plan.key.clone(), "Isolation").unwrap(),
                now,
            )
            .await,
        "write a plan version",
    );
    denied(
        as_user
            .assign_plan(&AssignPlan::new(own.id, plan.clone(), now))
            .await,
        "assign its own organization a plan",
    );
    denied(as_user.unassign_plan(own.id).await, "remove its own plan");
    denied(
        as_user
            .migrate_plan(&MigratePlan::new(plan.clone(), 2).org(own.id))
            .await,
        "migrate its own organization",
    );
    denied(
        as_user.entitlements(other.id, now).await,
        "another org's entitlements",
    );
    denied(
        as_user.entitlements_version().await,
        "the entitlements version",
    );
    // Usage history: reconciliation, retention and the billing export are
    // the operator's and the service's, for its own organization too.
    {
        let reports = as_user
            .reports()
            .expect("a user client of a SQL store has usage history");
        let hours = RollupReconcileQuery {
            org: own.id,
            from: now - chrono::TimeDelta::days(1),
            to: now,
        };
        denied(reports.reconcile_rollups(&hours).await, "reconcile rollups");
        denied(reports.repair_rollups(&hours).await, "repair rollups");
        denied(
            reports
                .set_billing_customer(own.id, Some("cus_isolation"))
                .await,
            "map its own organization to a Stripe customer",
        );
        denied(
            reports.billing_customer(other.id).await,
            "another org's Stripe customer",
        );
        denied(
            reports
                .drop_usage_events(now - chrono::TimeDelta::days(400))
                .await,
            "drop old events",
        );
    }
    // Rate limits and leases are the service's to decide.
    {
        let rates = as_user
            .rate_limits()
            .expect("a user client of a SQL store has rate limits");
        let request = RateRequest {
            org: own.id,
            user,
            charges: vec![(MetricKey::TOKENS, 1.into())],
            now,
            action: RateAction::Refund,
        };
        denied(rates.acquire_rate(&request).await, "refund a rate charge");
    }
    {
        let leases = as_user
            .leases()
            .expect("a user client of a SQL store has leases");
        let periods = CurrentPeriods::at(now, chrono_tz::UTC);
        let request = LeaseRequest::new(
            LeaseId::new_v7(),
            own.id,
            user,
            MetricKey::TOKENS,
            periods,
            now,
            now + chrono::TimeDelta::seconds(30),
            0.into(),
            1_000.into(),
        );
        denied(leases.lease_budget(&request).await, "lease a budget");
    }
}
