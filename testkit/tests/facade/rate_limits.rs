//! The facade's rate limits, on `MemoryStore`: what `reserve` and
//! `check_limit` charge, the order against budgets (a rate denial holds
//! nothing, a budget denial gives the rate charge back), scopes and roles,
//! several `Tenancy` instances on one store, and one store call per
//! decision.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use rust_decimal::Decimal;
use tenancy::alerts::MemoryAlertSink;
use tenancy::clock::{Clock, FakeClock};
use tenancy::faults::FaultyStore;
use tenancy::limits::rate::{NewRateLimit, REQUESTS, RateWindow};
use tenancy::limits::{LimitLevel, LimitScope};
use tenancy::store::DynStore;
use tenancy::{ErrorKind, MemoryStore, MetricKey, NewLimit, OrgId, ReserveOutcome, Role, Tenancy};

use super::scene::{Scene, dec, kind, scene, scene_on, tenancy_on};

async fn rate(s: &Scene, limit_type: &str, value: i64) {
    let limit = NewRateLimit::from_limit_type(limit_type, dec(value)).expect("a rate limit");
    s.op()
        .set_rate_limit(s.org, limit)
        .await
        .expect("set a rate limit");
}

fn granted(outcome: &ReserveOutcome) -> bool {
    matches!(outcome, ReserveOutcome::Granted(_))
}

/// An RPM limit admits its burst at one instant, then one request per
/// emission interval; the denial says which limit, when the same request
/// will pass, and is exact to the microsecond. `check_limit` decides the
/// same without charging.
#[tokio::test]
async fn an_rpm_limit_admits_its_burst_then_its_rate() {
    let s = scene().await;
    rate(&s, "minute_requests", 3).await;
    let ctx = &s.owner_ctx;
    for _ in 0..5 {
        assert!(
            s.check(ctx, "tokens", 10).await.allowed,
            "checks charge nothing"
        );
    }
    for i in 0..3 {
        let outcome = s.tenancy.reserve(ctx, "tokens", dec(10)).await.unwrap();
        assert!(granted(&outcome), "request {i}");
    }
    let denied = s.tenancy.reserve(ctx, "tokens", dec(10)).await.unwrap();
    let ReserveOutcome::Denied(decision) = denied else {
        panic!("the fourth request in a minute passed")
    };
    assert_eq!(decision.metric, REQUESTS);
    assert_eq!(decision.limit, Some(dec(3)));
    assert_eq!(decision.remaining, Some(dec(0)));
    assert_eq!(decision.used, dec(3));
    assert_eq!(decision.level, LimitLevel::Exceeded);
    assert_eq!(decision.decided_by, None);
    let start = chrono::DateTime::parse_from_rfc3339(super::scene::START)
        .unwrap()
        .to_utc();
    assert_eq!(decision.resets_at, Some(start + TimeDelta::seconds(20)));
    let check = s.check(ctx, "tokens", 10).await;
    assert_eq!(check, decision, "check_limit gives the same denial");

    s.clock.advance(Duration::from_micros(19_999_999));
    assert!(!granted(
        &s.tenancy.reserve(ctx, "tokens", dec(10)).await.unwrap()
    ));
    s.clock.advance(Duration::from_micros(1));
    assert!(granted(
        &s.tenancy.reserve(ctx, "tokens", dec(10)).await.unwrap()
    ));
    assert!(!granted(
        &s.tenancy.reserve(ctx, "tokens", dec(10)).await.unwrap()
    ));
}

/// A TPM limit is charged the estimate; an estimate above its burst never
/// passes (`resets_at` is `None`); a commit of another amount does not
/// change the charge.
#[tokio::test]
async fn a_tpm_limit_is_charged_the_estimate() {
    let s = scene().await;
    rate(&s, "minute_tokens", 1000).await;
    let ctx = &s.owner_ctx;
    let ReserveOutcome::Granted(held) = s.tenancy.reserve(ctx, "tokens", dec(600)).await.unwrap()
    else {
        panic!("600 of 1000 TPM")
    };
    s.tenancy.commit(&held, dec(10)).await.unwrap();
    let ReserveOutcome::Denied(decision) =
        s.tenancy.reserve(ctx, "tokens", dec(600)).await.unwrap()
    else {
        panic!("1200 tokens in a minute")
    };
    assert_eq!(decision.metric, MetricKey::TOKENS);
    assert_eq!(decision.remaining, Some(dec(400)));
    assert!(granted(
        &s.tenancy.reserve(ctx, "tokens", dec(400)).await.unwrap()
    ));
    let ReserveOutcome::Denied(never) = s.tenancy.reserve(ctx, "tokens", dec(1001)).await.unwrap()
    else {
        panic!("more than the burst at once")
    };
    assert_eq!(never.resets_at, None);
    // `requests` itself: the estimate is the charge.
    rate(&s, "second_requests", 2).await;
    assert!(!granted(
        &s.tenancy.reserve(ctx, "requests", dec(3)).await.unwrap()
    ));
    assert!(granted(
        &s.tenancy.reserve(ctx, "requests", dec(2)).await.unwrap()
    ));
}

/// Rate limits decide first: a rate denial reads no budget and holds
/// nothing; a budget denial after the rate limits admitted gives the rate
/// charge back, so a refused request costs no rate.
#[tokio::test]
async fn a_denial_of_either_kind_consumes_nothing() {
    let s = scene().await;
    s.limit(NewLimit::from_limit_type("monthly_tokens", dec(100)).unwrap())
        .await;
    rate(&s, "minute_requests", 2).await;
    let ctx = &s.owner_ctx;
    for _ in 0..5 {
        let outcome = s.tenancy.reserve(ctx, "tokens", dec(150)).await.unwrap();
        let ReserveOutcome::Denied(d) = outcome else {
            panic!("over the budget")
        };
        assert_eq!(
            d.metric,
            MetricKey::TOKENS,
            "the budget denied, not the rate"
        );
    }
    let states = s.tenancy.rate_limits(ctx).await.unwrap();
    assert_eq!(states.len(), 1);
    let now = chrono::DateTime::parse_from_rfc3339(super::scene::START)
        .unwrap()
        .to_utc();
    assert_eq!(
        states[0].used_at(now),
        dec(0),
        "every charge was given back"
    );

    for _ in 0..2 {
        assert!(granted(
            &s.tenancy.reserve(ctx, "tokens", dec(50)).await.unwrap()
        ));
    }
    let over = s.tenancy.reserve(ctx, "tokens", dec(0)).await.unwrap();
    let ReserveOutcome::Denied(d) = over else {
        panic!("a third request")
    };
    assert_eq!(d.metric, REQUESTS);
    let lines = s.tenancy.usage_summary(ctx).await.unwrap();
    let reserved: Decimal = lines.iter().map(|l| l.reserved).sum();
    assert_eq!(reserved, dec(100), "the rate-denied request holds nothing");
}

/// A user's limit is theirs alone, an org-wide one everybody's together;
/// soft limits never deny; users see org-wide limits and their own, the
/// operator all; viewers may check but not reserve.
#[tokio::test]
async fn scopes_modes_and_roles() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    let viewer = s.member(Role::Viewer).await;
    let mine = NewRateLimit::from_limit_type("hour_requests", dec(1))
        .unwrap()
        .for_user(member.user());
    s.op().set_rate_limit(s.org, mine).await.unwrap();
    let soft = NewRateLimit::new(MetricKey::TOKENS, RateWindow::Second, dec(1))
        .unwrap()
        .soft();
    s.op().set_rate_limit(s.org, soft).await.unwrap();

    assert!(granted(
        &s.tenancy.reserve(&member, "tokens", dec(50)).await.unwrap()
    ));
    assert!(!granted(
        &s.tenancy.reserve(&member, "tokens", dec(50)).await.unwrap()
    ));
    for _ in 0..3 {
        let outcome = s
            .tenancy
            .reserve(&s.owner_ctx, "tokens", dec(50))
            .await
            .unwrap();
        assert!(
            granted(&outcome),
            "the member's limit is not the owner's; soft never denies"
        );
    }
    let seen = |states: Vec<tenancy::limits::rate::RateState>| {
        states
            .into_iter()
            .map(|s| s.limit.scope)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen(s.tenancy.rate_limits(&s.owner_ctx).await.unwrap()),
        [LimitScope::Organization]
    );
    assert_eq!(
        seen(s.tenancy.rate_limits(&member).await.unwrap()),
        [LimitScope::User(member.user()), LimitScope::Organization]
    );
    assert_eq!(s.op().rate_limits(s.org).await.unwrap().len(), 2);
    assert!(
        s.tenancy
            .check_rate(&viewer, "tokens", dec(1))
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(
        kind(s.tenancy.reserve(&viewer, "tokens", dec(1)).await),
        ErrorKind::PermissionDenied
    );
    // Removing a limit removes it for everybody; unknown organizations refuse.
    let id = s.op().rate_limits(s.org).await.unwrap()[0].limit.id;
    assert!(s.op().remove_rate_limit(s.org, id).await.unwrap());
    assert!(granted(
        &s.tenancy.reserve(&member, "tokens", dec(50)).await.unwrap()
    ));
    let nowhere = NewRateLimit::from_limit_type("minute_requests", dec(1)).unwrap();
    assert_eq!(
        kind(s.op().set_rate_limit(OrgId::new_v7(), nowhere).await),
        ErrorKind::NotFound
    );
    assert!(NewRateLimit::from_limit_type("daily_requests", dec(1)).is_err());
}

/// Another organization's rate limits neither apply to nor show to this
/// one's users, and removing one through the wrong organization does
/// nothing.
#[tokio::test]
async fn organizations_do_not_share_rate_limits() {
    let a = scene().await;
    let b = scene_on(Arc::clone(&a.store)).await;
    rate(&a, "hour_requests", 1).await;
    assert!(granted(
        &a.tenancy
            .reserve(&a.owner_ctx, "tokens", dec(1))
            .await
            .unwrap()
    ));
    assert!(!granted(
        &a.tenancy
            .reserve(&a.owner_ctx, "tokens", dec(1))
            .await
            .unwrap()
    ));
    assert!(granted(
        &b.tenancy
            .reserve(&b.owner_ctx, "tokens", dec(1))
            .await
            .unwrap()
    ));
    assert!(
        b.tenancy
            .rate_limits(&b.owner_ctx)
            .await
            .unwrap()
            .is_empty()
    );
    let id = a.op().rate_limits(a.org).await.unwrap()[0].limit.id;
    assert!(!b.op().remove_rate_limit(b.org, id).await.unwrap());
    assert_eq!(a.op().rate_limits(a.org).await.unwrap().len(), 1);
    assert_eq!(
        kind(b.tenancy.context(b.owner, a.org).await),
        ErrorKind::PermissionDenied,
        "no context in another organization, so no decision there"
    );
}

/// 2, 4 and 8 `Tenancy` instances on one store, 8 tasks each, at one
/// frozen instant admit exactly the burst together; after `D` more, exactly
/// `D · L / W` more. With clocks `δ` apart, at most `B + (D + 2δ) · L / W`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_on_one_store_admit_the_limit_together() {
    for instances in [2usize, 4, 8] {
        let s = scene().await;
        rate(&s, "minute_requests", 30).await;
        let tenancies: Vec<Tenancy> = (0..instances)
            .map(|_| tenancy_on(&s.store, &s.clock, Arc::new(MemoryAlertSink::new())))
            .collect();
        let round = |tenancies: &[Tenancy]| {
            let tasks: Vec<_> = tenancies
                .iter()
                .flat_map(|t| (0..8).map(move |_| t.clone()))
                .map(|t| {
                    let (user, org) = (s.owner, s.org);
                    tokio::spawn(async move {
                        let ctx = t.context(user, org).await.unwrap();
                        let mut admitted = 0;
                        for _ in 0..8 {
                            let outcome = t.reserve(&ctx, "tokens", dec(1)).await.unwrap();
                            admitted += usize::from(matches!(outcome, ReserveOutcome::Granted(_)));
                        }
                        admitted
                    })
                })
                .collect();
            async move {
                let mut total = 0;
                for task in tasks {
                    total += task.await.unwrap();
                }
                total
            }
        };
        assert_eq!(
            round(&tenancies).await,
            30,
            "{instances} instances at one instant"
        );
        s.clock.advance(Duration::from_secs(20));
        assert_eq!(
            round(&tenancies).await,
            10,
            "{instances} instances 20 s later"
        );
    }

    // Two instances whose clocks are a second apart.
    let s = scene().await;
    rate(&s, "minute_requests", 60).await;
    let ahead = FakeClock::new(s.clock.now() + TimeDelta::seconds(1));
    let other = tenancy_on(&s.store, &ahead, Arc::new(MemoryAlertSink::new()));
    let ctx = other.context(s.owner, s.org).await.unwrap();
    let mut admitted = 0;
    for _ in 0..100 {
        admitted += usize::from(granted(
            &s.tenancy
                .reserve(&s.owner_ctx, "tokens", dec(1))
                .await
                .unwrap(),
        ));
        admitted += usize::from(granted(
            &other.reserve(&ctx, "tokens", dec(1)).await.unwrap(),
        ));
    }
    // D = 0 in real time, δ = 1 s: at most 60 + 2 · 1 s · 1/s.
    assert!((60..=62).contains(&admitted), "{admitted}");
}

/// A rate decision is one store call: `check_rate`, and the rate half of
/// `check_limit` and `reserve`; a rate denial makes no budget call at all.
/// The organization's rate-limit configuration comes with its cached
/// entitlements (a plan-store read, not a rate-limit call): none after it
/// changes but the entitlements' reload, none for an organization without
/// rate limits.
#[tokio::test]
async fn a_rate_decision_is_one_store_call() {
    let memory = Arc::new(MemoryStore::new());
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&memory) as Arc<DynStore>));
    let s = scene_on(Arc::clone(&faulty) as Arc<DynStore>).await;
    let ctx = &s.owner_ctx;
    let calls = || (memory.rate_limit_calls(), faulty.snapshot_calls());

    // No rate limit: after the configuration is read once, none.
    s.check(ctx, "tokens", 1).await;
    let before = calls();
    assert!(s.check(ctx, "tokens", 1).await.allowed);
    assert_eq!(calls(), (before.0, before.1 + 1), "a budget read alone");

    // Setting one drops the cached configuration: read once more.
    rate(&s, "minute_requests", 1).await;
    let before = calls();
    s.tenancy.check_rate(ctx, "tokens", dec(1)).await.unwrap();
    assert_eq!(
        calls(),
        (before.0 + 1, before.1),
        "the decision alone: the configuration comes with the entitlements"
    );

    let before = calls();
    s.tenancy.check_rate(ctx, "tokens", dec(1)).await.unwrap();
    assert_eq!(calls(), (before.0 + 1, before.1));

    let before = calls();
    assert!(s.check(ctx, "tokens", 1).await.allowed);
    assert_eq!(
        calls(),
        (before.0 + 1, before.1 + 1),
        "one rate call, one budget read"
    );

    let before = calls();
    assert!(granted(
        &s.tenancy.reserve(ctx, "tokens", dec(1)).await.unwrap()
    ));
    assert_eq!(calls().0, before.0 + 1);

    let before = calls();
    assert!(!s.check(ctx, "tokens", 1).await.allowed);
    assert_eq!(
        calls(),
        (before.0 + 1, before.1),
        "a rate denial reads no budget"
    );
    let before = calls();
    assert!(!granted(
        &s.tenancy.reserve(ctx, "tokens", dec(1)).await.unwrap()
    ));
    assert_eq!(calls().0, before.0 + 1);
}

/// Setting and removing a rate limit are audit events naming the
/// operator, like budget limits; deciding against one writes none.
#[tokio::test]
async fn rate_limit_changes_are_audited_and_decisions_are_not() {
    use tenancy::model::audit::{AuditActor, AuditQuery};
    let s = scene().await;
    rate(&s, "minute_requests", 10).await;
    assert!(granted(
        &s.tenancy
            .reserve(&s.owner_ctx, "tokens", dec(1))
            .await
            .unwrap()
    ));
    let id = s.op().rate_limits(s.org).await.unwrap()[0].limit.id;
    assert!(s.op().remove_rate_limit(s.org, id).await.unwrap());

    let page = s
        .tenancy
        .audit_log(
            &s.owner_ctx,
            AuditQuery::new(50).unwrap().action("rate_limit").unwrap(),
        )
        .await
        .unwrap();
    let seen: Vec<&str> = page.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(seen, ["rate_limit.deleted", "rate_limit.created"]);
    let operator = s.op().identity().name().to_owned();
    assert!(
        page.events
            .iter()
            .all(|e| e.actor == AuditActor::operator(&operator)),
        "{:?}",
        page.events
    );
    let created = page.events[1].after.as_ref().unwrap();
    assert_eq!(created["rate_window"], "minute");
    assert_eq!(created["metric"], "requests");
}

/// A store without the optional capabilities answers `Unsupported` for
/// setting a rate limit and for leasing, never a per-process stand-in;
/// budget limits work as before.
#[tokio::test]
async fn a_store_without_rate_limits_or_leases_says_unsupported() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    faulty.set_without_optional_capabilities(true);
    let s = scene_on(Arc::clone(&faulty) as Arc<DynStore>).await;
    let rpm = NewRateLimit::from_limit_type("minute_requests", dec(10)).unwrap();
    assert_eq!(
        kind(s.op().set_rate_limit(s.org, rpm).await),
        ErrorKind::Unsupported
    );
    assert!(!s.op().rate_limits_supported());
    let recorder = tenancy::UsageRecorder::builder(s.tenancy.clone())
        .start()
        .unwrap();
    let leased = s.tenancy.leased(recorder, tenancy::LeaseConfig::default());
    assert_eq!(kind(leased), ErrorKind::Unsupported);
    let day = tenancy::limits::PeriodKey::containing(
        tenancy::Period::Daily,
        chrono::Utc::now(),
        chrono_tz::Tz::UTC,
    );
    assert_eq!(
        kind(s.op().reconcile_leases(s.org, day, None).await),
        ErrorKind::Unsupported
    );
    assert_eq!(
        kind(s.op().repair_leases(s.org, day, None).await),
        ErrorKind::Unsupported
    );
    assert!(granted(
        &s.tenancy
            .reserve(&s.owner_ctx, "tokens", dec(1))
            .await
            .unwrap()
    ));
}
