//! Tenant isolation: nothing of one organization is reachable from
//! another's context.

use std::sync::Arc;

use tenancy::store::DynStore;
use tenancy::{ErrorKind, MemoryStore, Period, Role, Tenancy, TenantContext, UsageEvent, UserId};

use crate::scene::{Scene, dec, kind, monthly, scene_on};

/// Two scenes on one store: A with a feature, a limit and usage, B with
/// nothing.
async fn two_orgs() -> (Scene, Scene) {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let a = scene_on(Arc::clone(&store)).await;
    let b = scene_on(store).await;
    a.op().enable_feature(a.org, "veo_avatars").await.unwrap();
    a.limit(monthly("tokens", 100)).await;
    a.tenancy
        .service()
        .record_usage(UsageEvent::new(a.org).user(a.owner).tokens(50, 0, 0))
        .await
        .unwrap();
    (a, b)
}

/// Users of B cannot act in A, and B sees none of A's features, limits,
/// usage or members.
#[tokio::test]
async fn nothing_of_one_org_is_seen_from_another() {
    let (a, b) = two_orgs().await;
    assert_eq!(
        kind(a.tenancy.context(b.owner, a.org).await),
        ErrorKind::PermissionDenied
    );
    let ctx = &b.owner_ctx;
    assert!(!b.tenancy.has_feature(ctx, "veo_avatars").await.unwrap());
    assert!(b.tenancy.features(ctx).await.unwrap().is_empty());
    assert!(b.tenancy.limits(ctx).await.unwrap().is_empty());
    assert!(b.tenancy.usage_summary(ctx).await.unwrap().is_empty());
    let b_members: Vec<UserId> = b
        .tenancy
        .members(ctx)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(b_members, vec![b.owner], "org B has only its owner");
    let decision = b.check(ctx, "tokens", 1_000).await;
    assert!(decision.allowed && decision.limit.is_none());
    // A is untouched by B's reads.
    assert_eq!(a.used(&a.owner_ctx, "tokens").await, dec(50));
}

/// B's owner reads nothing of A's usage history: a report or event page
/// naming A is refused, and A's event by id is not found through B.
#[tokio::test]
async fn usage_history_of_one_org_is_out_of_anothers_reach() {
    use tenancy::clock::Clock as _;
    use tenancy::model::report::{EventQuery, ReportQuery};
    let (a, b) = two_orgs().await;
    let now = a.clock.now();
    let (from, to) = (
        now - chrono::TimeDelta::days(1),
        now + chrono::TimeDelta::hours(1),
    );
    let a_events = a
        .tenancy
        .usage_events(&a.owner_ctx, &EventQuery::new(a.org, from, to))
        .await
        .unwrap();
    let event = a_events.events.first().expect("A's event").id;
    let ctx = &b.owner_ctx;
    assert_eq!(
        kind(
            b.tenancy
                .usage_report(ctx, &ReportQuery::new(a.org, from, to))
                .await
        ),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(
            b.tenancy
                .usage_events(ctx, &EventQuery::new(a.org, from, to))
                .await
        ),
        ErrorKind::PermissionDenied
    );
    assert_eq!(b.tenancy.usage_event(ctx, event).await.unwrap(), None);
    let own = b
        .tenancy
        .usage_report(ctx, &ReportQuery::new(b.org, from, to))
        .await
        .unwrap();
    assert!(own.rows.is_empty(), "B recorded nothing: {own:?}");
}

/// A's usage history and top members hold only A's usage; B's are empty,
/// though B's owner asks for the same metric and periods.
#[tokio::test]
async fn history_and_top_members_are_of_the_callers_org() {
    let (a, b) = two_orgs().await;
    let ty = a.member(Role::Member).await;
    a.tenancy
        .service()
        .record_usage(UsageEvent::new(a.org).user(ty.user()).tokens(20, 0, 0))
        .await
        .unwrap();
    let march = |t: &Tenancy, ctx: &TenantContext| {
        let (t, ctx) = (t.clone(), ctx.clone());
        async move {
            t.usage_history(&ctx, Some("tokens"), Period::Monthly, month(), month())
                .await
                .unwrap()
                .iter()
                .map(|v| v.used)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(march(&a.tenancy, &a.owner_ctx).await, [dec(70)]);
    assert_eq!(march(&b.tenancy, &b.owner_ctx).await, []);

    let top = |t: &Tenancy, ctx: &TenantContext| {
        let (t, ctx) = (t.clone(), ctx.clone());
        async move {
            t.top_users(&ctx, "tokens", Period::Monthly, 10)
                .await
                .unwrap()
                .iter()
                .map(|m| (m.user, m.used))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        top(&a.tenancy, &a.owner_ctx).await,
        [(a.owner, dec(50)), (ty.user(), dec(20))]
    );
    assert_eq!(top(&b.tenancy, &b.owner_ctx).await, []);
}

/// Other members' usage is for admins and owners: a member or a viewer
/// asking for the top members is refused, and still reads the org-wide
/// history.
#[tokio::test]
async fn top_members_are_refused_below_admin() {
    let (a, _b) = two_orgs().await;
    let admin = a.member(Role::Admin).await;
    let tops = a
        .tenancy
        .top_users(&admin, "tokens", Period::Monthly, 10)
        .await;
    assert_eq!(
        tops.unwrap().len(),
        1,
        "positive control: an admin sees them"
    );
    for role in [Role::Member, Role::Viewer] {
        let ctx = a.member(role).await;
        assert_eq!(
            kind(
                a.tenancy
                    .top_users(&ctx, "tokens", Period::Monthly, 10)
                    .await
            ),
            ErrorKind::PermissionDenied,
            "{role:?}"
        );
        let history = a
            .tenancy
            .usage_history(&ctx, Some("tokens"), Period::Monthly, month(), month())
            .await
            .unwrap();
        assert_eq!(history.len(), 1, "{role:?} reads the org-wide history");
    }
}

/// The first of the scenes' month.
fn month() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
}
