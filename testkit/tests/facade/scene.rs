//! A fresh scene per test: a tenancy on a fake clock over `MemoryStore`,
//! an organization with its owner, and the helpers the scenarios share.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tenancy::alerts::{AlertSink, MemoryAlertSink};
use tenancy::clock::FakeClock;
use tenancy::limits::LimitScope;
use tenancy::store::DynStore;
use tenancy::{
    ErrorKind, LimitDecision, MemoryStore, MetricKey, NewLimit, NewOrganization, Operator, OrgId,
    Period, PlatformOperator, Result, Role, Tenancy, TenantContext, UserId,
};
use tenancy_testkit::unique_slug;

/// When every scene starts, unless it says otherwise.
pub(crate) const START: &str = "2026-03-04T10:00:00Z";

/// How long a reservation holds in every scene.
pub(crate) const RESERVATION_TTL: Duration = Duration::from_secs(60);

pub(crate) struct Scene {
    pub(crate) tenancy: Tenancy,
    pub(crate) store: Arc<DynStore>,
    pub(crate) clock: FakeClock,
    pub(crate) alerts: Arc<MemoryAlertSink>,
    pub(crate) operator: PlatformOperator,
    pub(crate) owner: UserId,
    pub(crate) org: OrgId,
    pub(crate) owner_ctx: TenantContext,
}

/// A tenancy on `store` and `clock`, delivering alerts to `alerts`.
pub(crate) fn tenancy_on(
    store: &Arc<DynStore>,
    clock: &FakeClock,
    alerts: Arc<dyn AlertSink>,
) -> Tenancy {
    Tenancy::builder()
        .shared_store(Arc::clone(store))
        .clock(clock.clone())
        .shared_alert_sink(alerts)
        .reservation_ttl(RESERVATION_TTL)
        .build()
        .expect("valid configuration")
}

/// A scene on a fresh `MemoryStore`, in UTC, at [`START`].
pub(crate) async fn scene() -> Scene {
    scene_on(Arc::new(MemoryStore::new())).await
}

/// A scene on `store` (shared with other scenes), in UTC, at [`START`].
pub(crate) async fn scene_on(store: Arc<DynStore>) -> Scene {
    scene_in(store, "UTC", START).await
}

/// A scene on a fresh `MemoryStore` whose organization is in `timezone`,
/// starting at `start`.
pub(crate) async fn scene_at(timezone: &str, start: &str) -> Scene {
    scene_in(Arc::new(MemoryStore::new()), timezone, start).await
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
        store,
        clock,
        alerts,
        operator: PlatformOperator::new("facade-tests"),
        owner,
        org,
        owner_ctx,
    }
}

impl Scene {
    /// The operator's handle.
    pub(crate) fn op(&self) -> Operator<'_> {
        self.tenancy.operator(&self.operator)
    }

    /// Adds a new user with `role` and returns their context.
    pub(crate) async fn member(&self, role: Role) -> TenantContext {
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

    /// Sets a limit on the scene's organization.
    pub(crate) async fn limit(&self, new: NewLimit) {
        self.op().set_limit(self.org, new).await.expect("set limit");
    }

    /// `ctx`'s decision on using `amount` more of `metric`.
    pub(crate) async fn check(
        &self,
        ctx: &TenantContext,
        metric: &str,
        amount: i64,
    ) -> LimitDecision {
        self.tenancy
            .check_limit(ctx, metric, dec(amount))
            .await
            .expect("check limit")
    }

    /// Org-wide usage of `metric` this month, as `ctx` sees it.
    pub(crate) async fn used(&self, ctx: &TenantContext, metric: &str) -> Decimal {
        self.used_in(ctx, metric, Period::Monthly).await
    }

    /// Org-wide usage of `metric` in the current `period`.
    pub(crate) async fn used_in(
        &self,
        ctx: &TenantContext,
        metric: &str,
        period: Period,
    ) -> Decimal {
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

    /// The thresholds delivered so far for `scope`, in order, once every
    /// queued alert check has run (alerts are delivered concurrently, in
    /// no particular order).
    pub(crate) async fn fired(&self, scope: LimitScope) -> Vec<u32> {
        self.tenancy.flush_alerts().await;
        let mut fired: Vec<u32> = self
            .alerts
            .alerts()
            .into_iter()
            .filter(|a| a.key.scope == scope)
            .map(|a| a.key.threshold_percent)
            .collect();
        fired.sort_unstable();
        fired
    }
}

/// Runs `a` and `b` as two spawned tasks released together by a barrier:
/// on a multi-threaded runtime they run at the same time, on two threads.
pub(crate) async fn at_once<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: Future + Send + 'static,
    A::Output: Send + 'static,
    B: Future + Send + 'static,
    B::Output: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let released = Arc::clone(&barrier);
    let a = tokio::spawn(async move {
        released.wait().await;
        a.await
    });
    let b = tokio::spawn(async move {
        barrier.wait().await;
        b.await
    });
    let (a, b) = tokio::join!(a, b);
    (a.expect("first task"), b.expect("second task"))
}

pub(crate) fn dec(n: i64) -> Decimal {
    Decimal::from(n)
}

/// The kind of the error `result` must be.
pub(crate) fn kind<T: std::fmt::Debug>(result: Result<T>) -> ErrorKind {
    result.expect_err("expected an error").kind()
}

pub(crate) fn monthly(metric: &str, value: i64) -> NewLimit {
    NewLimit::new(metric_key(metric), Period::Monthly, dec(value)).expect("limit")
}

pub(crate) fn daily(metric: &str, value: i64) -> NewLimit {
    NewLimit::new(metric_key(metric), Period::Daily, dec(value)).expect("limit")
}

fn metric_key(metric: &str) -> MetricKey {
    MetricKey::parse(metric).expect("metric")
}

pub(crate) fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("rfc3339")
        .with_timezone(&Utc)
}
