//! Limits: operator-managed, org-wide and per user, the tightest deciding;
//! who may check them.

use tenancy::limits::{LimitLevel, LimitMode, LimitScope};
use tenancy::{ErrorKind, MetricKey, NewLimit, OrgId, Role, UsageEvent};

use crate::scene::{daily, dec, kind, monthly, scene, utc};

/// Org-wide and per-user limits both apply; the tightest decides, and says
/// who decided and when it resets.
#[tokio::test]
async fn tightest_limit_wins() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(daily("tokens", 100).for_user(member.user())).await;

    let d = s.check(&member, "tokens", 150).await;
    assert!(!d.allowed);
    assert_eq!(d.limit, Some(dec(100)));
    assert_eq!(d.decided_by.unwrap().scope, LimitScope::User(member.user()));
    assert_eq!(d.resets_at, Some(utc("2026-03-05T00:00:00Z")));
    assert_eq!(d.level, LimitLevel::Exceeded);

    // The owner has no per-user limit: only the org-wide one applies.
    let d = s.check(&s.owner_ctx, "tokens", 150).await;
    assert!(d.allowed);
    assert_eq!(d.limit, Some(dec(1_000)));

    // Org-wide usage from others tightens the member's org-wide headroom.
    s.tenancy
        .service()
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(950, 0, 0))
        .await
        .unwrap();
    let d = s.check(&member, "tokens", 60).await;
    assert!(!d.allowed);
    assert_eq!(
        (d.limit, d.used, d.remaining),
        (Some(dec(1_000)), dec(950), Some(dec(50)))
    );
    assert_eq!(d.resets_at, Some(utc("2026-04-01T00:00:00Z")));
    // Other metrics are unlimited.
    assert!(s.check(&member, "ads_created", 1_000).await.allowed);
}

/// Limits are set, replaced and removed by the operator; members see them.
#[tokio::test]
async fn limits_are_operator_managed() {
    let s = scene().await;
    let first = s
        .op()
        .set_limit(
            s.org,
            NewLimit::from_limit_type("daily_ads", dec(5)).unwrap(),
        )
        .await
        .unwrap();
    let soft = NewLimit::from_limit_type("daily_ads", dec(7))
        .unwrap()
        .soft();
    let replaced = s.op().set_limit(s.org, soft).await.unwrap();
    assert_eq!(
        replaced.id, first.id,
        "same scope, metric and period: replaced"
    );
    assert_eq!((replaced.value, replaced.mode), (dec(7), LimitMode::Soft));
    let visible = s.tenancy.limits(&s.owner_ctx).await.unwrap();
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].metric, MetricKey::ADS_CREATED);
    assert_eq!(s.op().limits(s.org).await.unwrap(), visible);

    assert!(s.op().remove_limit(s.org, first.id).await.unwrap());
    assert!(!s.op().remove_limit(s.org, first.id).await.unwrap());
    assert!(s.op().limits(s.org).await.unwrap().is_empty());
    assert_eq!(
        kind(s.op().set_limit(OrgId::new_v7(), daily("tokens", 1)).await),
        ErrorKind::NotFound
    );
}

/// A user sees the org-wide limits and their own, not another member's.
#[tokio::test]
async fn users_see_org_wide_limits_and_their_own() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(daily("tokens", 100).for_user(member.user())).await;
    let scopes = |limits: Vec<tenancy::Limit>| -> Vec<LimitScope> {
        limits.into_iter().map(|l| l.scope).collect()
    };
    assert_eq!(
        scopes(s.tenancy.limits(&member).await.unwrap()),
        vec![LimitScope::Organization, LimitScope::User(member.user())]
    );
    assert_eq!(
        scopes(s.tenancy.limits(&s.owner_ctx).await.unwrap()),
        vec![LimitScope::Organization]
    );
    assert_eq!(s.op().limits(s.org).await.unwrap().len(), 2);
}

/// Every role may check a limit and read usage (`ViewUsage`); a viewer may
/// not consume (`ConsumeUsage`).
#[tokio::test]
async fn viewers_check_limits_but_do_not_reserve() {
    let s = scene().await;
    let viewer = s.member(Role::Viewer).await;
    s.limit(monthly("tokens", 100)).await;
    let d = s.check(&viewer, "tokens", 10).await;
    assert!(d.allowed);
    assert_eq!(d.limit, Some(dec(100)));
    assert_eq!(s.tenancy.limits(&viewer).await.unwrap().len(), 1);
    assert_eq!(s.tenancy.usage_summary(&viewer).await.unwrap().len(), 1);
    assert_eq!(
        kind(s.tenancy.reserve(&viewer, "tokens", dec(1)).await),
        ErrorKind::PermissionDenied
    );
}
