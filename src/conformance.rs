//! The backend conformance suite: the same behavioural tests, run against
//! every [`Store`](crate::Store) (feature `test-util`).
//!
//! Each test is an async function taking a store. They use fresh random
//! organizations and users, so they can share one database. Run them all
//! with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn store() -> Option<std::sync::Arc<tenancy::DynStore>> {
//!     Some(std::sync::Arc::new(tenancy::MemoryStore::new()))
//! }
//! tenancy::conformance_tests!(store);
//! ```
//!
//! The factory returns `None` to skip (a live backend whose server is not
//! installed); it should print why.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::{
    Action, AlertSink, DynStore, ErrorKind, FakeClock, Feature, FeatureKey, LimitAlert, LimitLevel,
    LimitMode, LimitScope, MemoryAlertSink, MetricKey, NewLimit, NewOrganization, OrgId, Period,
    PlatformOperator, ReserveOutcome, Result, Role, Tenancy, TenantContext, UsageEvent, UserId,
};

/// Generates one `#[tokio::test]` per conformance test, each calling
/// `$factory().await` for its store and returning early when it is `None`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@tests $factory;
            organizations_create_and_look_up,
            organizations_rename_and_delete,
            membership_role_rules,
            last_owner_is_kept,
            context_requires_membership,
            org_selector_and_default_org,
            features_are_per_org_and_typed,
            feature_cache_is_bounded_by_ttl,
            tenant_isolation,
            bad_input_is_invalid_input,
            usage_is_idempotent_by_event_id,
            usage_counts_into_the_event_period,
            tightest_limit_wins,
            limits_are_operator_managed,
            reserve_commit_release,
            commit_above_estimate_is_recorded,
            concurrent_reservations_never_overshoot,
            reservations_expire,
            daily_rollover_in_tokyo,
            monthly_rollover_in_new_york_across_dst,
            alerts_fire_once_per_threshold,
            alert_checks_read_org_wide_limits_once_per_batch,
            failing_alert_sink_never_fails_the_write,
            membership_cache_keeps_a_confirmation_for_its_ttl,
            soft_limits_allow_and_alert,
            usage_summary_lines,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(store) = $factory().await else { return };
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

/// A fresh scene: a tenancy on a fake clock, an org with an owner.
struct Scene {
    tenancy: Tenancy,
    clock: FakeClock,
    alerts: Arc<MemoryAlertSink>,
    operator: PlatformOperator,
    owner: UserId,
    org: OrgId,
    owner_ctx: TenantContext,
}

const START: &str = "2026-03-04T10:00:00Z";

fn tenancy_on(store: &Arc<DynStore>, clock: &FakeClock, alerts: Arc<dyn AlertSink>) -> Tenancy {
    Tenancy::builder()
        .shared_store(Arc::clone(store))
        .clock(clock.clone())
        .shared_alert_sink(alerts)
        .reservation_ttl(Duration::from_secs(60))
        .build()
        .expect("valid configuration")
}

/// A slug no other test (or earlier run against the same database) uses.
fn unique_slug(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

async fn scene_in(store: Arc<DynStore>, timezone: &str, start: &str) -> Scene {
    let clock = FakeClock::at(start);
    let alerts = Arc::new(MemoryAlertSink::new());
    let tenancy = tenancy_on(&store, &clock, alerts.clone());
    let owner = UserId::new_v7();
    let new = NewOrganization::new("Acme", &unique_slug("acme"))
        .and_then(|n| n.timezone(timezone))
        .expect("valid org");
    let org = tenancy
        .create_organization(owner, new)
        .await
        .expect("create org")
        .id;
    let owner_ctx = tenancy.context(owner, org).await.expect("owner context");
    Scene {
        tenancy,
        clock,
        alerts,
        operator: PlatformOperator::new("conformance"),
        owner,
        org,
        owner_ctx,
    }
}

async fn scene(store: Arc<DynStore>) -> Scene {
    scene_in(store, "UTC", START).await
}

impl Scene {
    /// Adds a new user with `role` and returns their context.
    async fn member(&self, role: Role) -> TenantContext {
        let user = UserId::new_v7();
        self.tenancy
            .add_member(&self.owner_ctx, user, role)
            .await
            .expect("add member");
        self.tenancy
            .context(user, self.org)
            .await
            .expect("member context")
    }

    async fn limit(&self, new: NewLimit) {
        self.tenancy
            .set_limit(&self.operator, self.org, new)
            .await
            .expect("set limit");
    }

    /// Org-wide usage of `metric` this month.
    async fn used(&self, ctx: &TenantContext, metric: &str) -> Decimal {
        self.used_in(ctx, metric, Period::Monthly).await
    }

    /// Org-wide usage of `metric` in the current `period`.
    async fn used_in(&self, ctx: &TenantContext, metric: &str, period: Period) -> Decimal {
        let lines = self.tenancy.usage_summary(ctx).await.expect("summary");
        lines
            .iter()
            .find(|l| {
                l.metric.as_str() == metric
                    && l.period == period
                    && l.scope == LimitScope::Organization
            })
            .map_or(Decimal::ZERO, |l| l.used)
    }
}

fn dec(n: i64) -> Decimal {
    Decimal::from(n)
}

fn kind<T: std::fmt::Debug>(result: Result<T>) -> ErrorKind {
    result.expect_err("expected an error").kind()
}

fn monthly(metric: &str, value: i64) -> NewLimit {
    NewLimit::new(
        MetricKey::parse(metric).expect("metric"),
        Period::Monthly,
        dec(value),
    )
    .expect("limit")
}

fn daily(metric: &str, value: i64) -> NewLimit {
    NewLimit::new(
        MetricKey::parse(metric).expect("metric"),
        Period::Daily,
        dec(value),
    )
    .expect("limit")
}

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

// ---- organizations and members -------------------------------------------

/// Creating an organization makes the creator its owner; lookups by id and
/// slug find it; a taken slug is `AlreadyExists`.
pub async fn organizations_create_and_look_up(store: Arc<DynStore>) {
    let s = scene(store).await;
    let org = s
        .tenancy
        .organization(s.org)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(org.owner_user_id, Some(s.owner));
    assert_eq!(org.name, "Acme");
    let by_slug = s
        .tenancy
        .organization_by_slug(org.slug.as_str())
        .await
        .unwrap();
    assert_eq!(by_slug.as_ref().map(|o| o.id), Some(s.org));
    assert_eq!(s.owner_ctx.role(), Role::Owner);

    assert!(
        s.tenancy
            .organization(OrgId::new_v7())
            .await
            .unwrap()
            .is_none()
    );
    let absent = s
        .tenancy
        .organization_by_slug(&unique_slug("nobody"))
        .await
        .unwrap();
    assert!(absent.is_none());

    let again = NewOrganization::new("Other", org.slug.as_str()).unwrap();
    assert_eq!(
        kind(s.tenancy.create_organization(UserId::new_v7(), again).await),
        ErrorKind::AlreadyExists
    );
    let err = s
        .tenancy
        .organization_by_slug("Not Valid")
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("slug"))
    );
}

/// Admins rename, only owners delete, and a deleted org is gone.
pub async fn organizations_rename_and_delete(store: Arc<DynStore>) {
    let s = scene(store).await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    assert_eq!(
        kind(s.tenancy.rename_organization(&member, "Nope").await),
        ErrorKind::PermissionDenied
    );
    let renamed = s
        .tenancy
        .rename_organization(&admin, "  Acme Labs ")
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Labs");
    assert_eq!(
        s.tenancy.organization(s.org).await.unwrap().unwrap().name,
        "Acme Labs"
    );
    assert_eq!(
        kind(s.tenancy.rename_organization(&admin, "").await),
        ErrorKind::InvalidInput
    );

    assert_eq!(
        kind(s.tenancy.delete_organization(&admin).await),
        ErrorKind::PermissionDenied
    );
    s.tenancy.delete_organization(&s.owner_ctx).await.unwrap();
    assert!(s.tenancy.organization(s.org).await.unwrap().is_none());
    assert_eq!(
        kind(s.tenancy.context(member.user(), s.org).await),
        ErrorKind::PermissionDenied
    );
    assert!(
        s.tenancy
            .orgs_for_user(admin.user())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Owners manage everyone, admins manage members and viewers, nobody raises
/// their own role.
pub async fn membership_role_rules(store: Arc<DynStore>) {
    let s = scene(store).await;
    let admin = s.member(Role::Admin).await;
    let member = s.member(Role::Member).await;
    let t = &s.tenancy;

    // Admins manage members and viewers...
    let newcomer = UserId::new_v7();
    t.add_member(&admin, newcomer, Role::Viewer).await.unwrap();
    t.change_role(&admin, newcomer, Role::Member).await.unwrap();
    t.remove_member(&admin, newcomer).await.unwrap();
    // ...but never grant or revoke admin or owner.
    let denied = [
        kind(t.add_member(&admin, UserId::new_v7(), Role::Admin).await),
        kind(t.add_member(&admin, UserId::new_v7(), Role::Owner).await),
        kind(t.change_role(&admin, member.user(), Role::Owner).await),
        kind(t.change_role(&admin, s.owner, Role::Member).await),
        kind(t.remove_member(&admin, s.owner).await),
    ];
    assert!(
        denied.iter().all(|k| *k == ErrorKind::PermissionDenied),
        "{denied:?}"
    );

    // Members manage nobody.
    assert_eq!(
        kind(t.add_member(&member, UserId::new_v7(), Role::Viewer).await),
        ErrorKind::PermissionDenied
    );
    // Nobody raises their own role.
    assert_eq!(
        kind(t.change_role(&member, member.user(), Role::Admin).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(t.change_role(&admin, admin.user(), Role::Owner).await),
        ErrorKind::PermissionDenied
    );
    // Lowering one's own role is fine.
    let lowered = t
        .change_role(&member, member.user(), Role::Viewer)
        .await
        .unwrap();
    assert_eq!(lowered.role, Role::Viewer);

    // Owners grant owner.
    t.change_role(&s.owner_ctx, admin.user(), Role::Owner)
        .await
        .unwrap();
    assert_eq!(
        t.context(admin.user(), s.org).await.unwrap().role(),
        Role::Owner
    );

    // Duplicates and strangers.
    assert_eq!(
        kind(
            t.add_member(&s.owner_ctx, member.user(), Role::Member)
                .await
        ),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(t.remove_member(&s.owner_ctx, UserId::new_v7()).await),
        ErrorKind::NotFound
    );
    let members = t.members(&s.owner_ctx).await.unwrap();
    assert_eq!(members.len(), 3);
}

/// An organization always keeps an owner; the last one can neither leave
/// nor be demoted, and a member may leave.
pub async fn last_owner_is_kept(store: Arc<DynStore>) {
    let s = scene(store).await;
    let t = &s.tenancy;
    assert_eq!(
        kind(t.leave(&s.owner_ctx).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(t.change_role(&s.owner_ctx, s.owner, Role::Admin).await),
        ErrorKind::PermissionDenied
    );

    let member = s.member(Role::Member).await;
    t.leave(&member).await.unwrap();
    assert_eq!(
        kind(t.context(member.user(), s.org).await),
        ErrorKind::PermissionDenied
    );

    // With a second owner, the first may step down or leave.
    let second = UserId::new_v7();
    t.add_member(&s.owner_ctx, second, Role::Owner)
        .await
        .unwrap();
    t.leave(&s.owner_ctx).await.unwrap();
    let second_ctx = t.context(second, s.org).await.unwrap();
    assert_eq!(
        kind(t.leave(&second_ctx).await),
        ErrorKind::PermissionDenied
    );

    // Two owners demoting each other concurrently: one must fail.
    let third = UserId::new_v7();
    t.add_member(&second_ctx, third, Role::Owner).await.unwrap();
    let third_ctx = t.context(third, s.org).await.unwrap();
    let (a, b) = tokio::join!(
        t.change_role(&second_ctx, second, Role::Admin),
        t.change_role(&third_ctx, third, Role::Admin),
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one demotion succeeds: {a:?} {b:?}"
    );
    let owners = t.members(&second_ctx).await.unwrap();
    assert_eq!(owners.iter().filter(|m| m.role == Role::Owner).count(), 1);
}

/// A context exists only for members; removal and switching re-check it.
pub async fn context_requires_membership(store: Arc<DynStore>) {
    let s = scene(store).await;
    let t = &s.tenancy;
    let stranger = UserId::new_v7();
    assert_eq!(
        kind(t.context(stranger, s.org).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(t.context(s.owner, OrgId::new_v7()).await),
        ErrorKind::PermissionDenied
    );
    let err = t
        .context_from_strs("not-a-uuid", &s.org.to_string())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("user_id"));

    let member = s.member(Role::Member).await;
    assert!(member.can(Action::WriteData));
    t.remove_member(&s.owner_ctx, member.user()).await.unwrap();
    assert_eq!(
        kind(t.context(member.user(), s.org).await),
        ErrorKind::PermissionDenied
    );

    // Switching re-checks membership in the target org.
    let other = t
        .create_organization(
            stranger,
            NewOrganization::new("Other", &unique_slug("other")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        kind(t.switch_org(&s.owner_ctx, other.id).await),
        ErrorKind::PermissionDenied
    );
    let as_stranger = t.context(stranger, other.id).await.unwrap();
    t.add_member(&as_stranger, s.owner, Role::Viewer)
        .await
        .unwrap();
    let switched = t.switch_org(&s.owner_ctx, other.id).await.unwrap();
    assert_eq!((switched.org(), switched.role()), (other.id, Role::Viewer));
}

/// The org selector lists every org with its role, default first.
pub async fn org_selector_and_default_org(store: Arc<DynStore>) {
    let s = scene(store).await;
    let t = &s.tenancy;
    assert!(t.default_context(UserId::new_v7()).await.unwrap().is_none());

    s.clock.advance(Duration::from_secs(60));
    let later = t
        .create_organization(
            s.owner,
            NewOrganization::new("Later", &unique_slug("later")).unwrap(),
        )
        .await
        .unwrap();
    let orgs = t.orgs_for_user(s.owner).await.unwrap();
    let listed: Vec<(OrgId, Role)> = orgs.iter().map(|m| (m.organization.id, m.role)).collect();
    assert_eq!(listed, vec![(s.org, Role::Owner), (later.id, Role::Owner)]);
    let default = t.default_context(s.owner).await.unwrap().expect("has orgs");
    assert_eq!(default.org(), s.org, "the first-joined org is the default");
}

#[derive(Debug, Deserialize, PartialEq)]
struct AvatarConfig {
    max_seconds: u32,
    voices: Vec<String>,
}

/// Features are off until enabled, per org, with typed config.
pub async fn features_are_per_org_and_typed(store: Arc<DynStore>) {
    let s = scene(store).await;
    let t = &s.tenancy;
    let ctx = &s.owner_ctx;
    assert!(!t.has_feature(ctx, "veo_avatars").await.unwrap());
    assert_eq!(
        t.feature_config::<AvatarConfig>(ctx, "veo_avatars")
            .await
            .unwrap(),
        None
    );

    t.set_feature_config(
        &s.operator,
        s.org,
        "veo_avatars",
        serde_json::json!({"max_seconds": 30, "voices": ["ava"]}),
    )
    .await
    .unwrap();
    assert!(
        !t.has_feature(ctx, "veo_avatars").await.unwrap(),
        "config alone does not enable"
    );
    t.enable_feature(&s.operator, s.org, "veo_avatars")
        .await
        .unwrap();
    assert!(
        t.has_feature(ctx, "veo_avatars").await.unwrap(),
        "visible at once"
    );
    let config = t
        .feature_config::<AvatarConfig>(ctx, "veo_avatars")
        .await
        .unwrap();
    assert_eq!(
        config,
        Some(AvatarConfig {
            max_seconds: 30,
            voices: vec!["ava".into()]
        })
    );
    let wrong = t
        .feature_config::<Vec<u8>>(ctx, "veo_avatars")
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Config);

    t.disable_feature(&s.operator, s.org, "veo_avatars")
        .await
        .unwrap();
    assert!(!t.has_feature(ctx, "veo_avatars").await.unwrap());
    let rows = t.features(ctx).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].enabled);
    assert!(
        t.remove_feature(&s.operator, s.org, "veo_avatars")
            .await
            .unwrap()
    );

    let err = t.has_feature(ctx, "Bad Key").await.unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("feature_key"))
    );
    assert_eq!(
        kind(
            t.enable_feature(&s.operator, OrgId::new_v7(), "veo_avatars")
                .await
        ),
        ErrorKind::NotFound
    );
}

/// A change made behind the cache's back (another instance) is seen within
/// the TTL, and not before.
pub async fn feature_cache_is_bounded_by_ttl(store: Arc<DynStore>) {
    let s = scene(Arc::clone(&store)).await;
    let ctx = &s.owner_ctx;
    assert!(!s.tenancy.has_feature(ctx, "exports").await.unwrap());
    let feature = Feature {
        key: FeatureKey::parse("exports").unwrap(),
        enabled: true,
        config: serde_json::Value::Null,
        updated_at: crate::Clock::now(&s.clock),
    };
    store.put_feature(s.org, &feature).await.unwrap();
    assert!(
        !s.tenancy.has_feature(ctx, "exports").await.unwrap(),
        "still cached"
    );
    s.clock.advance(Duration::from_secs(31));
    assert!(
        s.tenancy.has_feature(ctx, "exports").await.unwrap(),
        "TTL passed"
    );
}

/// Nothing of one organization is reachable from another's context.
pub async fn tenant_isolation(store: Arc<DynStore>) {
    let a = scene(Arc::clone(&store)).await;
    let b = scene(store).await;
    // Users of B cannot act in A, whatever org id they present.
    assert_eq!(
        kind(a.tenancy.context(b.owner, a.org).await),
        ErrorKind::PermissionDenied
    );

    a.tenancy
        .enable_feature(&a.operator, a.org, "veo_avatars")
        .await
        .unwrap();
    a.limit(monthly("tokens", 100)).await;
    a.tenancy
        .record_usage(UsageEvent::new(a.org).user(a.owner).tokens(50, 0, 0))
        .await
        .unwrap();

    assert!(
        !b.tenancy
            .has_feature(&b.owner_ctx, "veo_avatars")
            .await
            .unwrap()
    );
    assert!(b.tenancy.limits(&b.owner_ctx).await.unwrap().is_empty());
    assert!(
        b.tenancy
            .usage_summary(&b.owner_ctx)
            .await
            .unwrap()
            .is_empty()
    );
    let b_members: Vec<UserId> = b
        .tenancy
        .members(&b.owner_ctx)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(b_members, vec![b.owner], "org B has only its owner");
    let decision = b
        .tenancy
        .check_limit(&b.owner_ctx, "tokens", dec(1_000))
        .await
        .unwrap();
    assert!(decision.allowed && decision.limit.is_none());

    // A reservation of A cannot be released or committed through B's org.
    let ReserveOutcome::Granted(mut hold) = a
        .tenancy
        .reserve(&a.owner_ctx, "tokens", dec(10))
        .await
        .unwrap()
    else {
        panic!("10 of 100 fits");
    };
    assert!(
        !b.tenancy
            .store()
            .release_reservation(b.org, hold.id)
            .await
            .unwrap()
    );
    hold.org = b.org;
    if let Ok(outcome) = b.tenancy.commit(&hold, dec(10)).await {
        assert!(
            !outcome.released_hold,
            "A's hold cannot be released through B"
        );
    }
    let d = a
        .tenancy
        .check_limit(&a.owner_ctx, "tokens", dec(0))
        .await
        .unwrap();
    assert_eq!(d.reserved, dec(10), "A's hold is untouched");
    assert_eq!(a.used(&a.owner_ctx, "tokens").await, dec(50));
}

/// Invalid input is `InvalidInput` naming the field, and never panics.
pub async fn bad_input_is_invalid_input(store: Arc<DynStore>) {
    let s = scene(store).await;
    let t = &s.tenancy;
    let ctx = &s.owner_ctx;
    let field = |r: Result<_>| {
        let e: crate::Error = r.map(|_: ()| ()).expect_err("invalid");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        e.field()
    };
    assert_eq!(
        field(t.check_limit(ctx, "tokens", dec(-1)).await.map(drop)),
        Some("amount")
    );
    assert_eq!(
        field(t.check_limit(ctx, "Tokens!", dec(1)).await.map(drop)),
        Some("metric")
    );
    assert_eq!(
        field(t.reserve(ctx, "tokens", dec(-5)).await.map(drop)),
        Some("estimate")
    );
    let huge = crate::limits::MAX_AMOUNT * dec(10);
    assert_eq!(
        field(t.reserve(ctx, "tokens", huge).await.map(drop)),
        Some("estimate")
    );
    assert_eq!(
        field(NewLimit::new(MetricKey::tokens(), Period::Daily, dec(-1)).map(drop)),
        Some("limit_value")
    );
    assert_eq!(
        field(NewLimit::from_limit_type("weekly_tokens", dec(1)).map(drop)),
        Some("limit_type")
    );
    assert_eq!(field(Period::parse("hourly").map(drop)), Some("period"));
    assert_eq!(field(Role::parse("root").map(drop)), Some("role"));
    assert_eq!(
        field(NewOrganization::new("Acme", "-acme").map(drop)),
        Some("slug")
    );
    assert_eq!(
        field(
            NewOrganization::new("Acme", "acme")
                .and_then(|n| n.timezone("Mars/Base"))
                .map(drop)
        ),
        Some("timezone")
    );
    let negative = UsageEvent::new(s.org).quantity(MetricKey::ads_created(), dec(-1));
    assert_eq!(
        field(t.record_usage(negative).await.map(drop)),
        Some("quantity")
    );
    let overflow = UsageEvent::new(s.org).quantity(MetricKey::ads_created(), huge);
    assert_eq!(
        field(t.record_usage(overflow).await.map(drop)),
        Some("quantity")
    );
    // Nothing was half-written.
    assert!(t.usage_summary(ctx).await.unwrap().is_empty());
}

// ---- usage and limits ---------------------------------------------------

/// The same event id counts once, within a batch and across calls.
pub async fn usage_is_idempotent_by_event_id(store: Arc<DynStore>) {
    let s = scene(store).await;
    let event = UsageEvent::new(s.org)
        .id(crate::EventId::new_v7())
        .user(s.owner)
        .ai_call("openai", "gpt-4o", "ad_copy")
        .tokens(100, 20, 30)
        .cost_usd(Decimal::new(125, 4));
    let first = s.tenancy.record_usage(event.clone()).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (1, 0));
    let again = s
        .tenancy
        .record_usage_batch(vec![event.clone(), event.clone()])
        .await
        .unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    let fresh = UsageEvent::new(s.org).user(s.owner).tokens(1, 0, 0);
    let mixed = s
        .tenancy
        .record_usage_batch(vec![fresh, event])
        .await
        .unwrap();
    assert_eq!((mixed.inserted, mixed.duplicates), (1, 1));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(151));
    assert_eq!(s.used(&s.owner_ctx, "cost_usd").await, Decimal::new(125, 4));
    // Recording for an org that does not exist is NotFound, not a panic.
    assert_eq!(
        kind(
            s.tenancy
                .record_usage(UsageEvent::new(OrgId::new_v7()).tokens(1, 0, 0))
                .await
        ),
        ErrorKind::NotFound
    );
}

/// Usage counts into the period its event time falls in.
pub async fn usage_counts_into_the_event_period(store: Arc<DynStore>) {
    let s = scene(store).await;
    s.limit(monthly("tokens", 1_000)).await;
    let last_month = utc("2026-02-27T12:00:00Z");
    s.tenancy
        .record_usage(
            UsageEvent::new(s.org)
                .user(s.owner)
                .tokens(400, 0, 0)
                .at(last_month),
        )
        .await
        .unwrap();
    s.tenancy
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(10, 0, 0))
        .await
        .unwrap();
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(10));
}

/// Org-wide and per-user limits both apply; the tightest decides.
pub async fn tightest_limit_wins(store: Arc<DynStore>) {
    let s = scene(store).await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(daily("tokens", 100).for_user(member.user())).await;

    let d = s
        .tenancy
        .check_limit(&member, "tokens", dec(150))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.limit, Some(dec(100)));
    assert_eq!(d.decided_by.unwrap().scope, LimitScope::User(member.user()));
    assert_eq!(d.resets_at, Some(utc("2026-03-05T00:00:00Z")));
    assert_eq!(d.level, LimitLevel::Exceeded);

    // The owner has no per-user limit: only the org-wide one applies.
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "tokens", dec(150))
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.limit, Some(dec(1_000)));

    // Org-wide usage from others tightens the member's org-wide headroom.
    s.tenancy
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(950, 0, 0))
        .await
        .unwrap();
    let d = s
        .tenancy
        .check_limit(&member, "tokens", dec(60))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(
        (d.limit, d.used, d.remaining),
        (Some(dec(1_000)), dec(950), Some(dec(50)))
    );
    assert_eq!(d.resets_at, Some(utc("2026-04-01T00:00:00Z")));
    // Other metrics are unlimited.
    assert!(
        s.tenancy
            .check_limit(&member, "ads_created", dec(1_000))
            .await
            .unwrap()
            .allowed
    );
}

/// Limits are set, replaced and removed by the operator; members see them.
pub async fn limits_are_operator_managed(store: Arc<DynStore>) {
    let s = scene(store).await;
    let first = s
        .tenancy
        .set_limit(
            &s.operator,
            s.org,
            NewLimit::from_limit_type("daily_ads", dec(5)).unwrap(),
        )
        .await
        .unwrap();
    let replaced = s
        .tenancy
        .set_limit(
            &s.operator,
            s.org,
            NewLimit::from_limit_type("daily_ads", dec(7))
                .unwrap()
                .soft(),
        )
        .await
        .unwrap();
    assert_eq!(
        replaced.id, first.id,
        "same scope, metric and period: replaced"
    );
    assert_eq!((replaced.value, replaced.mode), (dec(7), LimitMode::Soft));
    let visible = s.tenancy.limits(&s.owner_ctx).await.unwrap();
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].metric, MetricKey::ads_created());

    assert!(
        s.tenancy
            .remove_limit(&s.operator, s.org, first.id)
            .await
            .unwrap()
    );
    assert!(
        !s.tenancy
            .remove_limit(&s.operator, s.org, first.id)
            .await
            .unwrap()
    );
    assert!(
        s.tenancy
            .limits_of(&s.operator, s.org)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        kind(
            s.tenancy
                .set_limit(&s.operator, OrgId::new_v7(), daily("tokens", 1))
                .await
        ),
        ErrorKind::NotFound
    );
}

/// A reservation holds its estimate; commit records the actual amount and
/// drops the hold; release drops it; retries count once.
pub async fn reserve_commit_release(store: Arc<DynStore>) {
    let s = scene(store).await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    s.limit(monthly("tokens", 100)).await;
    let t = &s.tenancy;

    assert_eq!(
        kind(t.reserve(&viewer, "tokens", dec(1)).await),
        ErrorKind::PermissionDenied
    );

    let hold = t
        .reserve(&member, "tokens", dec(60))
        .await
        .unwrap()
        .granted()
        .expect("fits");
    let d = t.check_limit(&member, "tokens", dec(50)).await.unwrap();
    assert!(!d.allowed, "the hold counts");
    assert_eq!((d.used, d.reserved), (dec(0), dec(60)));
    let denied = t.reserve(&member, "tokens", dec(50)).await.unwrap();
    assert!(
        matches!(denied, ReserveOutcome::Denied(ref d) if !d.allowed && d.remaining == Some(dec(40)))
    );

    let outcome = t.commit(&hold, dec(30)).await.unwrap();
    assert!(outcome.released_hold && outcome.recorded);
    let retry = t.commit(&hold, dec(30)).await.unwrap();
    assert!(
        !retry.released_hold && !retry.recorded,
        "a retried commit counts once"
    );
    let d = t.check_limit(&member, "tokens", dec(0)).await.unwrap();
    assert_eq!((d.used, d.reserved), (dec(30), dec(0)));

    let hold = t
        .reserve(&member, "tokens", dec(70))
        .await
        .unwrap()
        .granted()
        .expect("fits");
    assert!(t.release(&hold).await.unwrap());
    assert!(!t.release(&hold).await.unwrap());
    assert_eq!(
        t.check_limit(&member, "tokens", dec(0))
            .await
            .unwrap()
            .reserved,
        dec(0)
    );
    assert_eq!(s.used(&member, "tokens").await, dec(30));
}

/// An actual amount above the estimate is recorded in full, even past the
/// limit.
pub async fn commit_above_estimate_is_recorded(store: Arc<DynStore>) {
    let s = scene(store).await;
    s.limit(monthly("tokens", 100)).await;
    let hold = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", dec(90))
        .await
        .unwrap()
        .granted()
        .unwrap();
    let event = UsageEvent::new(s.org)
        .user(s.owner)
        .ai_call("anthropic", "claude", "script")
        .tokens(100, 0, 20)
        .cost_usd(Decimal::new(3, 2));
    s.tenancy.commit_event(&hold, event).await.unwrap();
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "tokens", dec(1))
        .await
        .unwrap();
    assert_eq!(
        (d.used, d.allowed, d.level),
        (dec(120), false, LimitLevel::Exceeded)
    );
    assert_eq!(s.used(&s.owner_ctx, "cost_usd").await, Decimal::new(3, 2));
}

/// 64 tasks reserving 10 at a time against a limit of 1 000: exactly 100
/// reservations are granted and final usage is at most 1 000.
pub async fn concurrent_reservations_never_overshoot(store: Arc<DynStore>) {
    let s = scene(store).await;
    s.limit(monthly("tokens", 1_000)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let tenancy = s.tenancy.clone();
        let ctx = s.owner_ctx.clone();
        tasks.spawn(async move {
            let mut granted = 0u32;
            // Bounded, so a store that never denies fails instead of hanging.
            for _ in 0..1_000 {
                match tenancy
                    .reserve(&ctx, "tokens", dec(10))
                    .await
                    .expect("reserve")
                {
                    ReserveOutcome::Granted(hold) => {
                        granted += 1;
                        tenancy.commit(&hold, dec(10)).await.expect("commit");
                    }
                    ReserveOutcome::Denied(_) => return granted,
                }
            }
            panic!("a limit of 1000 still granting after 1000 reservations");
        });
    }
    let mut granted = 0;
    while let Some(result) = tasks.join_next().await {
        granted += result.expect("task");
    }
    assert_eq!(granted, 100);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(1_000));
}

/// An expired hold stops counting without any background job.
pub async fn reservations_expire(store: Arc<DynStore>) {
    let s = scene(store).await;
    s.limit(daily("ads_created", 3)).await;
    let _held = s
        .tenancy
        .reserve(&s.owner_ctx, "ads_created", dec(3))
        .await
        .unwrap()
        .granted()
        .unwrap();
    assert!(
        !s.tenancy
            .reserve(&s.owner_ctx, "ads_created", dec(1))
            .await
            .unwrap()
            .decision()
            .allowed
    );
    s.clock.advance(Duration::from_secs(61));
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "ads_created", dec(3))
        .await
        .unwrap();
    assert!(d.allowed && d.reserved.is_zero(), "{d:?}");
    assert!(
        s.tenancy
            .reserve(&s.owner_ctx, "ads_created", dec(3))
            .await
            .unwrap()
            .granted()
            .is_some()
    );
}

/// Day-end rollover in Asia/Tokyo (UTC+9): the day ends at 15:00 UTC.
pub async fn daily_rollover_in_tokyo(store: Arc<DynStore>) {
    let s = scene_in(store, "Asia/Tokyo", "2026-01-31T14:58:00Z").await;
    s.limit(daily("ads_created", 2)).await;
    s.limit(monthly("ads_created", 3)).await;
    let ad = || {
        UsageEvent::new(s.org)
            .user(s.owner)
            .quantity(MetricKey::ads_created(), dec(1))
    };
    s.tenancy.record_usage(ad()).await.unwrap();
    s.tenancy.record_usage(ad()).await.unwrap();
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "ads_created", dec(1))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.resets_at, Some(utc("2026-01-31T15:00:00Z")));

    // One minute later it is 1 February in Tokyo: a new day and a new month.
    s.clock.set(utc("2026-01-31T15:00:00Z"));
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "ads_created", dec(2))
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.used, dec(0));
    assert_eq!(d.resets_at, Some(utc("2026-02-01T15:00:00Z")));
    s.tenancy.record_usage(ad()).await.unwrap();
    s.clock.set(utc("2026-02-01T15:00:00Z"));
    // New day, same month: the monthly limit (3) now leaves 2.
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "ads_created", dec(2))
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, Some(dec(2)));
    assert_eq!(
        d.resets_at,
        Some(utc("2026-02-02T15:00:00Z")),
        "the daily limit is as tight and resets first"
    );
}

/// Month-end rollover in America/New_York, and days across the November
/// daylight-saving change (a 25-hour day).
pub async fn monthly_rollover_in_new_york_across_dst(store: Arc<DynStore>) {
    let s = scene_in(store, "America/New_York", "2026-10-31T12:00:00Z").await;
    s.limit(monthly("tokens", 100)).await;
    s.limit(daily("tokens", 80)).await;
    let tokens = |n| UsageEvent::new(s.org).user(s.owner).tokens(n, 0, 0);
    s.tenancy.record_usage(tokens(70)).await.unwrap();
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "tokens", dec(40))
        .await
        .unwrap();
    assert!(!d.allowed);
    // October ends at midnight EDT (UTC-4).
    assert_eq!(d.resets_at, Some(utc("2026-11-01T04:00:00Z")));

    // 23:59 EDT on 31 October is still October.
    s.clock.set(utc("2026-11-01T03:59:59Z"));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(70));
    s.clock.set(utc("2026-11-01T04:00:00Z"));
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(0));

    // 1 November is 25 hours long: clocks fall back at 02:00 EDT, and the
    // next day starts at midnight EST (UTC-5).
    s.tenancy.record_usage(tokens(50)).await.unwrap();
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "tokens", dec(40))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.resets_at, Some(utc("2026-11-02T05:00:00Z")));
    s.clock.set(utc("2026-11-02T04:30:00Z"));
    assert_eq!(
        s.used_in(&s.owner_ctx, "tokens", Period::Daily).await,
        dec(50),
        "still 1 November in New York"
    );
    s.clock.set(utc("2026-11-02T05:00:00Z"));
    let d = s
        .tenancy
        .check_limit(&s.owner_ctx, "tokens", dec(40))
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(
        d.limit,
        Some(dec(100)),
        "the monthly limit is now the tighter: 50 left"
    );
    assert_eq!(d.remaining, Some(dec(50)));
}

/// Thresholds fire once each per period, even from two instances sharing
/// the store.
pub async fn alerts_fire_once_per_threshold(store: Arc<DynStore>) {
    let s = scene(Arc::clone(&store)).await;
    let other_sink = Arc::new(MemoryAlertSink::new());
    let other = tenancy_on(&store, &s.clock, other_sink.clone());
    s.limit(monthly("tokens", 100)).await;
    let tokens = |n| UsageEvent::new(s.org).user(s.owner).tokens(n, 0, 0);

    s.tenancy.record_usage(tokens(79)).await.unwrap();
    assert!(s.alerts.alerts().is_empty());
    s.tenancy.record_usage(tokens(1)).await.unwrap();
    other.record_usage(tokens(1)).await.unwrap();
    let (a, b) = tokio::join!(
        s.tenancy.record_usage(tokens(10)),
        other.record_usage(tokens(10)),
    );
    a.unwrap();
    b.unwrap();
    let mut fired: Vec<u32> = s
        .alerts
        .alerts()
        .into_iter()
        .chain(other_sink.alerts())
        .map(|a| a.key.threshold_percent)
        .collect();
    fired.sort_unstable();
    assert_eq!(fired, vec![80, 90, 100], "each threshold exactly once");
    let alert = &s.alerts.alerts()[0];
    assert_eq!(
        (alert.key.scope, alert.limit),
        (LimitScope::Organization, dec(100))
    );

    // A new month starts from zero, and alerts can fire again.
    s.clock.set(utc("2026-04-02T00:00:00Z"));
    s.tenancy.record_usage(tokens(85)).await.unwrap();
    let april: Vec<LimitAlert> = s
        .alerts
        .alerts()
        .into_iter()
        .filter(|a| a.key.period.start.to_string() == "2026-04-01")
        .collect();
    assert_eq!(april.len(), 1);
    assert_eq!(april[0].key.threshold_percent, 80);
}

/// The alert check after a batch reads the org-wide limits once, however
/// many users the batch has, plus one read per user with limits of their
/// own; each limit's alerts still fire once.
pub async fn alert_checks_read_org_wide_limits_once_per_batch(store: Arc<DynStore>) {
    let counting = Arc::new(crate::faults::FaultyStore::new(Arc::clone(&store)));
    let s = scene(Arc::clone(&counting) as Arc<DynStore>).await;
    let capped = UserId::new_v7();
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(monthly("tokens", 100).for_user(capped)).await;
    let tokens = |user, n| UsageEvent::new(s.org).user(user).tokens(n, 0, 0);

    // 50 users at 10 tokens, and the capped user at 90 (90 % of their own).
    let mut batch: Vec<UsageEvent> = (0..50).map(|_| tokens(UserId::new_v7(), 10)).collect();
    batch.push(tokens(capped, 90));
    let before = counting.snapshot_calls();
    s.tenancy.record_usage_batch(batch).await.unwrap();
    assert_eq!(
        counting.snapshot_calls() - before,
        2,
        "one read for the org-wide limit, one for the capped user's own"
    );
    let fired = |scope| -> Vec<u32> {
        s.alerts
            .alerts()
            .into_iter()
            .filter(|a| a.key.scope == scope)
            .map(|a| a.key.threshold_percent)
            .collect()
    };
    assert_eq!(fired(LimitScope::User(capped)), vec![80, 90]);
    assert!(fired(LimitScope::Organization).is_empty(), "590 of 1000");

    // 250 more from other users take the org to 84 %: its alert fires once,
    // and the capped user's do not fire again.
    let batch: Vec<UsageEvent> = (0..25).map(|_| tokens(UserId::new_v7(), 10)).collect();
    s.tenancy.record_usage_batch(batch).await.unwrap();
    assert_eq!(fired(LimitScope::Organization), vec![80]);
    assert_eq!(fired(LimitScope::User(capped)), vec![80, 90]);
}

/// With a membership cache, a confirmation is reused for the TTL (and
/// `checked_at` says when it was made); a removal through the same
/// instance takes effect at once, one through another instance within the
/// TTL.
pub async fn membership_cache_keeps_a_confirmation_for_its_ttl(store: Arc<DynStore>) {
    let s = scene(Arc::clone(&store)).await;
    let cached = Tenancy::builder()
        .shared_store(Arc::clone(&store))
        .clock(s.clock.clone())
        .membership_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let confirmed = crate::Clock::now(&s.clock);
    let kept = s.member(Role::Member).await.user();
    let removed_here = s.member(Role::Member).await.user();
    for user in [kept, removed_here] {
        let ctx = cached.context(user, s.org).await.unwrap();
        assert_eq!(ctx.checked_at(), confirmed);
    }

    s.clock.advance(Duration::from_secs(30));
    let ctx = cached.context(kept, s.org).await.unwrap();
    assert_eq!(ctx.checked_at(), confirmed, "reused, not asked again");
    // Removed through another instance: still admitted within the TTL.
    s.tenancy.remove_member(&s.owner_ctx, kept).await.unwrap();
    assert!(cached.context(kept, s.org).await.is_ok());
    // Removed through this one: refused at once.
    let owner = cached.context(s.owner, s.org).await.unwrap();
    cached.remove_member(&owner, removed_here).await.unwrap();
    let err = cached.context(removed_here, s.org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);

    s.clock.advance(Duration::from_secs(31));
    let err = cached.context(kept, s.org).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "past the TTL");
}

#[derive(Debug)]
struct BrokenSink;

#[async_trait::async_trait]
impl AlertSink for BrokenSink {
    async fn deliver(&self, _alert: &LimitAlert) -> Result<()> {
        Err(crate::Error::new(ErrorKind::Unavailable, "webhook down"))
    }
}

/// A sink that always fails does not fail or undo the usage write.
pub async fn failing_alert_sink_never_fails_the_write(store: Arc<DynStore>) {
    let s = scene(Arc::clone(&store)).await;
    let broken = tenancy_on(&store, &s.clock, Arc::new(BrokenSink));
    s.limit(monthly("tokens", 10)).await;
    let outcome = broken
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(20, 0, 0))
        .await
        .expect("the write succeeds");
    assert_eq!(outcome.inserted, 1);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(20));
}

/// Soft limits never deny, report `Exceeded`, and alert.
pub async fn soft_limits_allow_and_alert(store: Arc<DynStore>) {
    let s = scene(store).await;
    let t = &s.tenancy;
    t.set_limit(&s.operator, s.org, monthly("cost_usd", 10).soft())
        .await
        .unwrap();
    t.record_usage(UsageEvent::new(s.org).cost_usd(dec(12)))
        .await
        .unwrap();
    let d = t
        .check_limit(&s.owner_ctx, "cost_usd", dec(5))
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.level, LimitLevel::Exceeded);
    assert!(
        t.reserve(&s.owner_ctx, "cost_usd", dec(5))
            .await
            .unwrap()
            .granted()
            .is_some()
    );
    assert_eq!(s.alerts.alerts().len(), 3);
}

/// The summary lists limited and unlimited metrics with their figures.
pub async fn usage_summary_lines(store: Arc<DynStore>) {
    let s = scene(store).await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(daily("tokens", 100).for_user(member.user())).await;
    s.tenancy
        .record_usage(
            UsageEvent::new(s.org)
                .user(member.user())
                .tokens(40, 0, 0)
                .cost_usd(dec(2)),
        )
        .await
        .unwrap();
    let _hold = s
        .tenancy
        .reserve(&member, "tokens", dec(10))
        .await
        .unwrap()
        .granted()
        .unwrap();
    let lines = s.tenancy.usage_summary(&member).await.unwrap();
    let find = |metric: &str, period, scope| {
        lines
            .iter()
            .find(|l| l.metric.as_str() == metric && l.period == period && l.scope == scope)
            .unwrap_or_else(|| panic!("no line {metric} {period} {scope}: {lines:#?}"))
    };
    let org_month = find("tokens", Period::Monthly, LimitScope::Organization);
    assert_eq!(
        (org_month.used, org_month.reserved, org_month.limit),
        (dec(40), dec(10), Some(dec(1_000)))
    );
    assert_eq!(org_month.remaining, Some(dec(950)));
    assert_eq!(org_month.percent, Some(dec(5)));
    assert_eq!(org_month.resets_at, utc("2026-04-01T00:00:00Z"));
    let user_day = find("tokens", Period::Daily, LimitScope::User(member.user()));
    assert_eq!(
        (user_day.used, user_day.limit, user_day.percent),
        (dec(40), Some(dec(100)), Some(dec(50)))
    );
    let cost = find("cost_usd", Period::Monthly, LimitScope::Organization);
    assert_eq!((cost.used, cost.limit), (dec(2), None));
    // The owner does not see the member's own lines.
    let owner_lines = s.tenancy.usage_summary(&s.owner_ctx).await.unwrap();
    assert!(
        owner_lines.iter().any(|l| l.metric.as_str() == "tokens"
            && l.period == Period::Monthly
            && l.scope == LimitScope::Organization),
        "the owner sees the org-wide lines: {owner_lines:#?}"
    );
    assert!(
        owner_lines
            .iter()
            .all(|l| l.scope == LimitScope::Organization)
    );
    // An operator sees the org-wide lines of any organization.
    let operator_lines = s
        .tenancy
        .usage_summary_of(&s.operator, s.org)
        .await
        .unwrap();
    let org_month_line = |lines: &[crate::UsageLine]| {
        lines
            .iter()
            .find(|l| {
                l.metric.as_str() == "tokens"
                    && l.period == Period::Monthly
                    && l.scope == LimitScope::Organization
            })
            .cloned()
    };
    assert_eq!(
        org_month_line(&operator_lines),
        org_month_line(&owner_lines)
    );
    assert!(
        operator_lines
            .iter()
            .all(|l| l.scope == LimitScope::Organization),
        "{operator_lines:#?}"
    );
}
