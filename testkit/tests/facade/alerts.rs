//! Alerts: checked and delivered off the write path, once per threshold
//! and period, however many instances share the store; soft limits alert
//! instead of denying.

use std::sync::Arc;

use tenancy::alerts::{AlertSink, MemoryAlertSink};
use tenancy::faults::FaultyStore;
use tenancy::limits::{LimitAlert, LimitLevel, LimitScope};
use tenancy::store::DynStore;
use tenancy::{Error, ErrorKind, MemoryStore, Result, UsageEvent, UserId, async_trait};

use crate::scene::{at_once, dec, monthly, scene, scene_on, tenancy_on, utc};

/// Thresholds fire once each per period, even from two instances sharing
/// the store and writing at once on two threads, round after round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_per_threshold() {
    let mut last = None;
    for round in 0..16 {
        let s = scene().await;
        let other_sink = Arc::new(MemoryAlertSink::new());
        let other = tenancy_on(&s.store, &s.clock, other_sink.clone());
        s.limit(monthly("tokens", 100)).await;
        let tokens = |n| UsageEvent::new(s.org).user(s.owner).tokens(n, 0, 0);

        s.tenancy.service().record_usage(tokens(79)).await.unwrap();
        assert!(s.fired(LimitScope::Organization).await.is_empty());
        s.tenancy.service().record_usage(tokens(1)).await.unwrap();
        assert_eq!(s.fired(LimitScope::Organization).await, vec![80]);
        other.service().record_usage(tokens(1)).await.unwrap();
        let (first, second) = (s.tenancy.clone(), other.clone());
        let (a, b) = (tokens(10), tokens(10));
        let (a, b) = at_once(
            async move { first.service().record_usage(a).await },
            async move { second.service().record_usage(b).await },
        )
        .await;
        a.unwrap();
        b.unwrap();
        other.flush_alerts().await;
        let mut fired = s.fired(LimitScope::Organization).await;
        fired.extend(other_sink.alerts().iter().map(|a| a.key.threshold_percent));
        fired.sort_unstable();
        assert_eq!(
            fired,
            vec![80, 90, 100],
            "round {round}: each threshold exactly once"
        );
        let alert = &s.alerts.alerts()[0];
        assert_eq!(
            (alert.key.scope, alert.limit),
            (LimitScope::Organization, dec(100))
        );
        last = Some(s);
    }
    let s = last.expect("a round");
    let tokens = |n| UsageEvent::new(s.org).user(s.owner).tokens(n, 0, 0);

    // A new month starts from zero, and alerts can fire again.
    s.clock.set(utc("2026-04-02T00:00:00Z"));
    s.tenancy.service().record_usage(tokens(85)).await.unwrap();
    s.tenancy.flush_alerts().await;
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
#[tokio::test]
async fn alert_checks_read_org_wide_limits_once_per_batch() {
    let counting = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = scene_on(Arc::clone(&counting) as Arc<DynStore>).await;
    let capped = UserId::new_v7();
    s.limit(monthly("tokens", 1_000)).await;
    s.limit(monthly("tokens", 100).for_user(capped)).await;
    let tokens = |user, n| UsageEvent::new(s.org).user(user).tokens(n, 0, 0);

    // 50 users at 10 tokens, and the capped user at 90 (90 % of their own).
    let mut batch: Vec<UsageEvent> = (0..50).map(|_| tokens(UserId::new_v7(), 10)).collect();
    batch.push(tokens(capped, 90));
    let before = counting.snapshot_calls();
    s.tenancy.service().record_usage_batch(batch).await.unwrap();
    s.tenancy.flush_alerts().await;
    assert_eq!(
        counting.snapshot_calls() - before,
        2,
        "one read for the org-wide limit, one for the capped user's own"
    );
    assert_eq!(s.fired(LimitScope::User(capped)).await, vec![80, 90]);
    assert!(
        s.fired(LimitScope::Organization).await.is_empty(),
        "590 of 1000"
    );

    // 250 more from other users take the org to 84 %: its alert fires once,
    // and the capped user's do not fire again.
    let batch: Vec<UsageEvent> = (0..25).map(|_| tokens(UserId::new_v7(), 10)).collect();
    s.tenancy.service().record_usage_batch(batch).await.unwrap();
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80]);
    assert_eq!(s.fired(LimitScope::User(capped)).await, vec![80, 90]);
}

/// When one alert claim fails, the alerts already claimed in the same check
/// are still delivered (they are claimed, so no later check fires them), and
/// the one whose claim failed fires on the next check.
#[tokio::test]
async fn a_failed_claim_keeps_the_alerts_claimed_before_it() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = scene_on(Arc::clone(&faulty) as Arc<DynStore>).await;
    s.limit(monthly("tokens", 100)).await;
    let tokens = |n| UsageEvent::new(s.org).user(s.owner).tokens(n, 0, 0);

    // 95 of 100 crosses 80 and 90: the 80 claim lands, the 90 claim fails.
    faulty.fail_alert_claims_after(1, 1);
    s.tenancy.service().record_usage(tokens(95)).await.unwrap();
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80]);

    s.tenancy.service().record_usage(tokens(1)).await.unwrap();
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80, 90]);
}

/// A commit whose limits cannot be read records nothing and fails
/// retryably; its retry records the usage once and runs the alert check.
#[tokio::test]
async fn a_commit_that_cannot_read_limits_records_nothing_and_its_retry_alerts() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = scene_on(Arc::clone(&faulty) as Arc<DynStore>).await;
    s.limit(monthly("tokens", 100)).await;
    let hold = s
        .tenancy
        .reserve(&s.owner_ctx, "tokens", dec(90))
        .await
        .unwrap()
        .granted()
        .expect("90 of 100 fits");

    // Past the entitlement cache's TTL (30 s; the reserve loaded it), within
    // the hold's (60 s): the commit reads the limits.
    s.clock.advance(std::time::Duration::from_secs(31));
    faulty.fail_limit_reads(1);
    let err = s.tenancy.commit(&hold, dec(90)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(0));

    let outcome = s.tenancy.commit(&hold, dec(90)).await.unwrap();
    assert!(outcome.recorded);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(90));
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80, 90]);
}

#[derive(Debug)]
struct BrokenSink;

#[async_trait]
impl AlertSink for BrokenSink {
    async fn deliver(&self, _alert: &LimitAlert) -> Result<()> {
        Err(Error::new(ErrorKind::Unavailable, "webhook down"))
    }
}

/// A sink that always fails does not fail or undo the usage write.
#[tokio::test]
async fn failing_alert_sink_never_fails_the_write() {
    let s = scene().await;
    let broken = tenancy_on(&s.store, &s.clock, Arc::new(BrokenSink));
    s.limit(monthly("tokens", 10)).await;
    let outcome = broken
        .service()
        .record_usage(UsageEvent::new(s.org).user(s.owner).tokens(20, 0, 0))
        .await
        .expect("the write succeeds");
    assert_eq!(outcome.inserted, 1);
    broken.flush_alerts().await;
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(20));
}

/// Soft limits never deny, report `Exceeded`, and alert.
#[tokio::test]
async fn soft_limits_allow_and_alert() {
    let s = scene().await;
    let t = &s.tenancy;
    s.limit(monthly("cost_usd", 10).soft()).await;
    t.service()
        .record_usage(UsageEvent::new(s.org).cost_usd(dec(12)))
        .await
        .unwrap();
    let d = s.check(&s.owner_ctx, "cost_usd", 5).await;
    assert!(d.allowed);
    assert_eq!(d.level, LimitLevel::Exceeded);
    assert!(
        t.reserve(&s.owner_ctx, "cost_usd", dec(5))
            .await
            .unwrap()
            .granted()
            .is_some()
    );
    assert_eq!(s.fired(LimitScope::Organization).await, vec![80, 90, 100]);
}
