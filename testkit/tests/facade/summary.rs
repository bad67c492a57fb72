//! Usage against limits, as a page shows it: the user's lines, and the
//! operator's view of any organization.

use tenancy::limits::LimitScope;
use tenancy::{ErrorKind, OrgId, Period, Reservation, Role, TenantContext, UsageEvent, UsageLine};

use crate::scene::{Scene, daily, dec, kind, monthly, scene, utc};

/// A member with a daily limit of their own under a monthly org-wide one,
/// 40 tokens and $2 used, and 10 tokens held.
async fn used_and_held() -> (Scene, TenantContext, Reservation) {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(daily("tokens", 100).for_user(member.user())).await;
    s.tenancy
        .service()
        .record_usage(
            UsageEvent::new(s.org)
                .user(member.user())
                .tokens(40, 0, 0)
                .cost_usd(dec(2)),
        )
        .await
        .unwrap();
    let hold = s
        .tenancy
        .reserve(&member, "tokens", dec(10))
        .await
        .unwrap()
        .granted()
        .unwrap();
    (s, member, hold)
}

fn find(lines: &[UsageLine], metric: &str, period: Period, scope: LimitScope) -> UsageLine {
    lines
        .iter()
        .find(|l| l.metric.as_str() == metric && l.period == period && l.scope == scope)
        .cloned()
        .unwrap_or_else(|| panic!("no line {metric} {period} {scope}: {lines:#?}"))
}

/// The summary lists limited and unlimited metrics with their figures.
#[tokio::test]
async fn usage_summary_lines() {
    let (s, member, _hold) = used_and_held().await;
    let lines = s.tenancy.usage_summary(&member).await.unwrap();
    let org_month = find(&lines, "tokens", Period::Monthly, LimitScope::Organization);
    assert_eq!(
        (org_month.used, org_month.reserved, org_month.limit),
        (dec(40), dec(10), Some(dec(1_000)))
    );
    assert_eq!(org_month.remaining, Some(dec(950)));
    assert_eq!(org_month.percent, Some(dec(5)));
    assert_eq!(org_month.resets_at, utc("2026-04-01T00:00:00Z"));
    let user_day = find(
        &lines,
        "tokens",
        Period::Daily,
        LimitScope::User(member.user()),
    );
    assert_eq!(
        (user_day.used, user_day.limit, user_day.percent),
        (dec(40), Some(dec(100)), Some(dec(50)))
    );
    let cost = find(
        &lines,
        "cost_usd",
        Period::Monthly,
        LimitScope::Organization,
    );
    assert_eq!((cost.used, cost.limit), (dec(2), None));
}

/// The owner sees the org-wide lines, not the member's own; an operator
/// sees the same org-wide lines of any organization.
#[tokio::test]
async fn owners_and_operators_see_the_org_wide_lines() {
    let (s, member, _hold) = used_and_held().await;
    let owner_lines = s.tenancy.usage_summary(&s.owner_ctx).await.unwrap();
    let org_month = find(
        &owner_lines,
        "tokens",
        Period::Monthly,
        LimitScope::Organization,
    );
    assert_eq!((org_month.used, org_month.reserved), (dec(40), dec(10)));
    assert!(
        owner_lines
            .iter()
            .all(|l| l.scope == LimitScope::Organization),
        "{owner_lines:#?}"
    );
    let member_lines = s.tenancy.usage_summary(&member).await.unwrap();
    assert!(
        member_lines.len() > owner_lines.len(),
        "the member's own lines"
    );

    let operator_lines = s.op().usage_summary(s.org).await.unwrap();
    assert_eq!(
        find(
            &operator_lines,
            "tokens",
            Period::Monthly,
            LimitScope::Organization
        ),
        org_month
    );
    assert_eq!(operator_lines, owner_lines);
    assert_eq!(
        kind(s.op().usage_summary(OrgId::new_v7()).await),
        ErrorKind::NotFound
    );
}
