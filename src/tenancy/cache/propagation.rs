//! Propagation: entitlement changes made anywhere (another instance, the
//! console, SQL) reach this facade's caches within a stated bound.
//!
//! One task per [`Tenancy`](crate::Tenancy). When the store pushes changes
//! ([`PlanStore::watch_entitlements`] gives a stream: `MemoryStore`, and
//! `PgStore` with a listen URL), it forwards each to
//! [`CachingStore::forget_entitlements`]; otherwise (`SupabaseStore`,
//! `PgStore` without one) it reads [`PlanStore::entitlements_version`]
//! every poll interval and forgets every organization's entitlements when
//! the counter moved. A stream that ends falls back to polling.
//!
//! The task holds the caches only weakly: it ends within
//! [`LIVENESS`] of the last `Tenancy` clone being dropped. Store errors
//! are logged (`tracing`) and the read retried on the next tick, never
//! fatal; a store that answers `Unsupported` (plans not implemented) ends
//! the task, leaving the TTL as the bound.
//!
//! It starts when the `Tenancy` is built inside a tokio runtime, else on
//! the first store call made inside one (see [`Propagating`]), and never
//! panics without one.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::CachingStore;
use crate::error::{ErrorKind, Result};
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::plan::EntitlementChange;
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::store::{
    AlertStore, AuditStore, Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue,
    DomainStore, DynStore, EntitlementWatch, FeatureStore, HistoryQuery, InvitationStore,
    LeaseStore, LimitStore, MemberStore, MeteringStore, OrgQuery, OrgStore, PlanStore, Principal,
    RateLimitStore, ReconcileQuery, RecordOutcome, ReleaseRequest, ReportStore, ReserveRequest,
    ReserveResult, UsageQuery, alert_store_methods, audit_store_methods, domain_store_methods,
    feature_store_methods, invitation_store_methods, limit_store_methods, member_store_methods,
    metering_store_methods, org_store_methods, plan_store_methods,
};

/// How often the task checks, while idle, whether its `Tenancy` is gone.
const LIVENESS: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to open the change stream.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Not started yet (no tokio runtime so far).
const IDLE: u8 = 0;
/// Running, or given up for good (a store without plans).
const STARTED: u8 = 1;

/// One facade's propagation: what the task needs and whether it runs.
#[derive(Debug)]
pub(in crate::tenancy) struct Propagation {
    /// The caches, set once they exist.
    cache: OnceLock<Weak<CachingStore>>,
    /// How often to read the version counter when nothing is pushed.
    poll: Duration,
    state: AtomicU8,
}

impl Propagation {
    /// Propagation polling every `poll` when the store pushes nothing.
    pub(in crate::tenancy) fn new(poll: Duration) -> Arc<Self> {
        Arc::new(Propagation {
            cache: OnceLock::new(),
            poll,
            state: AtomicU8::new(IDLE),
        })
    }

    /// Attaches the caches and starts the task if a tokio runtime is
    /// current (else the first call through [`Propagating`] will).
    pub(in crate::tenancy) fn attach(self: &Arc<Self>, cache: &Arc<CachingStore>) {
        let _ = self.cache.set(Arc::downgrade(cache));
        self.ensure_started();
    }

    /// Starts the task once, on the current tokio runtime; nothing outside
    /// one or before the caches are attached. One atomic load once started.
    pub(in crate::tenancy) fn ensure_started(self: &Arc<Self>) {
        if self.state.load(Ordering::Acquire) != IDLE || self.cache.get().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .state
            .compare_exchange(IDLE, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            runtime.spawn(Arc::clone(self).run());
        }
    }

    /// The caches, while the facade lives.
    fn cache(&self) -> Option<Arc<CachingStore>> {
        self.cache.get().and_then(Weak::upgrade)
    }

    /// The task: the store's change stream if it has one, else polling.
    async fn run(self: Arc<Self>) {
        let mut retry = Duration::from_millis(100);
        let watch = loop {
            let Some(cache) = self.cache() else { return };
            match cache.watch_entitlements().await {
                Ok(watch) => break watch,
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    tracing::debug!(error = %e, "the store has no plans: entitlement changes made elsewhere show after the cache TTL");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?retry, "cannot watch entitlement changes; retrying");
                }
            }
            drop(cache);
            if !self.sleep(retry).await {
                return;
            }
            retry = (retry * 2).min(MAX_RETRY);
        };
        if let Some(watch) = watch {
            // Whatever changed before the stream was open went unheard.
            if let Some(cache) = self.cache() {
                cache.forget_entitlements(EntitlementChange::All);
            }
            self.forward(watch).await;
        }
        self.poll().await;
    }

    /// Forwards pushed changes until the stream or the facade ends; whether
    /// the stream ended (then poll).
    async fn forward(&self, mut watch: EntitlementWatch) {
        loop {
            match tokio::time::timeout(LIVENESS, watch.next()).await {
                Err(_) => {
                    if self.cache().is_none() {
                        return;
                    }
                }
                Ok(Some(change)) => {
                    let Some(cache) = self.cache() else { return };
                    cache.forget_entitlements(change);
                }
                Ok(None) => {
                    tracing::warn!(
                        "the store stopped pushing entitlement changes; polling instead"
                    );
                    return;
                }
            }
        }
    }

    /// Reads the version counter every poll interval (a tick that a slow
    /// read overran is skipped, not bunched) and forgets everything when it
    /// moved, or when it answers again after failing.
    async fn poll(&self) {
        let mut ticks = tokio::time::interval(self.poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<i64> = None;
        let mut failing = false;
        loop {
            {
                let Some(cache) = self.cache() else { return };
                match cache.entitlements_version().await {
                    Ok(version) => {
                        // The first read, or the first after failures:
                        // whatever changed before it went unseen.
                        if failing || last.is_none_or(|seen| seen != version) {
                            cache.forget_entitlements(EntitlementChange::All);
                        }
                        if failing {
                            tracing::info!("reading the entitlements version again");
                        }
                        failing = false;
                        last = Some(version);
                    }
                    Err(e) if e.kind() == ErrorKind::Unsupported => {
                        tracing::debug!(error = %e, "the store has no entitlements version: changes made elsewhere show after the cache TTL");
                        return;
                    }
                    Err(e) => {
                        if failing {
                            tracing::debug!(error = %e, "reading the entitlements version failed again");
                        } else {
                            tracing::warn!(error = %e, "cannot read the entitlements version; retrying every poll interval");
                        }
                        failing = true;
                    }
                }
            }
            loop {
                match tokio::time::timeout(LIVENESS, ticks.tick()).await {
                    Ok(_) => break,
                    Err(_) if self.cache().is_none() => return,
                    Err(_) => {}
                }
            }
        }
    }

    /// Sleeps `delay`, waking every [`LIVENESS`]; whether the facade still
    /// lives.
    async fn sleep(&self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                return self.cache().is_some();
            }
            tokio::time::sleep((until - now).min(LIVENESS)).await;
            if self.cache().is_none() {
                return false;
            }
        }
    }
}

/// The store below the caches when the facade was built outside a tokio
/// runtime: every call first starts propagation if a runtime is now
/// current (one atomic load once it runs), then passes through.
#[derive(Debug)]
pub(in crate::tenancy) struct Propagating {
    inner: Arc<DynStore>,
    propagation: Arc<Propagation>,
}

impl Propagating {
    pub(in crate::tenancy) fn new(inner: Arc<DynStore>, propagation: Arc<Propagation>) -> Self {
        Propagating { inner, propagation }
    }
}

impl Backend for Propagating {
    fn principal(&self) -> Principal {
        self.inner.principal()
    }

    fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        self.inner.rate_limits()
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        self.inner.leases()
    }

    fn reports(&self) -> Option<&dyn ReportStore> {
        self.inner.reports()
    }
}

/// `impl $trait for Propagating` from its method list: start, then pass
/// through.
macro_rules! starting_impl {
    ($trait:ident ; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $trait for Propagating {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    self.propagation.ensure_started();
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

org_store_methods!(starting_impl! { OrgStore });
member_store_methods!(starting_impl! { MemberStore });
feature_store_methods!(starting_impl! { FeatureStore });
limit_store_methods!(starting_impl! { LimitStore });
metering_store_methods!(starting_impl! { MeteringStore });
alert_store_methods!(starting_impl! { AlertStore });
invitation_store_methods!(starting_impl! { InvitationStore });
domain_store_methods!(starting_impl! { DomainStore });
audit_store_methods!(starting_impl! { AuditStore });
plan_store_methods!(starting_impl! { PlanStore });

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use super::*;
    use crate::error::Error;
    use crate::ids::{FeatureKey, PlanKey, UserId};
    use crate::memory::MemoryStore;
    use crate::model::PlatformOperator;
    use crate::model::plan::{MigratePlan, NewPlanVersion};
    use crate::model::{FeatureChange, NewOrganization, TenantContext};
    use crate::store::pass_through_impl;
    use crate::tenancy::Tenancy;

    /// `MemoryStore` with its push stream hidden (so the facade polls), a
    /// count of version reads, and version reads that fail on demand.
    #[derive(Debug)]
    struct Polled {
        inner: Arc<MemoryStore>,
        push: bool,
        unsupported: bool,
        version_reads: AtomicUsize,
        failures_left: AtomicUsize,
    }

    impl Polled {
        fn new(inner: &Arc<MemoryStore>) -> Self {
            Polled {
                inner: Arc::clone(inner),
                push: false,
                unsupported: false,
                version_reads: AtomicUsize::new(0),
                failures_left: AtomicUsize::new(0),
            }
        }
    }

    impl Backend for Polled {
        fn principal(&self) -> Principal {
            self.inner.principal()
        }
        fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
            self.inner.rate_limits()
        }
        fn leases(&self) -> Option<&dyn LeaseStore> {
            self.inner.leases()
        }
        fn reports(&self) -> Option<&dyn ReportStore> {
            self.inner.reports()
        }
    }

    org_store_methods!(pass_through_impl! { $ OrgStore for Polled [] {} });
    member_store_methods!(pass_through_impl! { $ MemberStore for Polled [] {} });
    feature_store_methods!(pass_through_impl! { $ FeatureStore for Polled [] {} });
    limit_store_methods!(pass_through_impl! { $ LimitStore for Polled [] {} });
    metering_store_methods!(pass_through_impl! { $ MeteringStore for Polled [] {} });
    alert_store_methods!(pass_through_impl! { $ AlertStore for Polled [] {} });
    invitation_store_methods!(pass_through_impl! { $ InvitationStore for Polled [] {} });
    domain_store_methods!(pass_through_impl! { $ DomainStore for Polled [] {} });
    audit_store_methods!(pass_through_impl! { $ AuditStore for Polled [] {} });
    plan_store_methods!(pass_through_impl! { $ PlanStore for Polled
        [entitlements_version, watch_entitlements] {
        async fn entitlements_version(&self) -> Result<i64> {
            self.version_reads.fetch_add(1, Ordering::SeqCst);
            if self.unsupported {
                return Err(Error::new(ErrorKind::Unsupported, "no plans here"));
            }
            let fail = self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return Err(Error::new(ErrorKind::Unavailable, "the database is down"));
            }
            self.inner.entitlements_version().await
        }

        async fn watch_entitlements(&self) -> Result<Option<EntitlementWatch>> {
            if self.unsupported {
                return Ok(None);
            }
            if self.push {
                return self.inner.watch_entitlements().await;
            }
            Ok(None)
        }
    } });

    const LONG_TTL: Duration = Duration::from_secs(3600);

    fn on(store: Arc<DynStore>, poll: Duration) -> Tenancy {
        Tenancy::builder()
            .shared_store(store)
            .feature_cache_ttl(LONG_TTL)
            .entitlement_poll(poll)
            .build()
            .unwrap()
    }

    /// An organization made through `writer`, its owner's context on
    /// `reader`.
    async fn org(writer: &Tenancy, reader: &Tenancy) -> TenantContext {
        let owner = UserId::new_v7();
        let org = writer
            .create_organization(owner, NewOrganization::new("Acme", "acme").unwrap())
            .await
            .unwrap();
        reader.context(owner, org.id).await.unwrap()
    }

    /// How long until `reader` sees `exports` as `on`; panics after 5 s.
    async fn seen(reader: &Tenancy, ctx: &TenantContext, key: &str, on: bool) -> Duration {
        let start = Instant::now();
        while reader.has_feature(ctx, key).await.unwrap() != on {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{key} never turned {on}: {reader:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        start.elapsed()
    }

    /// Two instances on one `MemoryStore` (which pushes): every override
    /// toggle, plan assignment and migration made through one is honoured
    /// by the other's caches, well within 250 ms, although their TTL is an
    /// hour.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_through_one_instance_reach_the_other() {
        let store: Arc<DynStore> = Arc::new(MemoryStore::new());
        let (writer, reader) = (
            on(Arc::clone(&store), MAX_RETRY),
            on(Arc::clone(&store), MAX_RETRY),
        );
        let ctx = org(&writer, &reader).await;
        let operator = PlatformOperator::new("ops");
        let ops = writer.operator(&operator);
        let mut took = Vec::new();
        for round in 0..50 {
            let on = round % 2 == 0;
            assert_eq!(reader.has_feature(&ctx, "exports").await.unwrap(), !on);
            if on {
                ops.enable_feature(ctx.org(), "exports").await.unwrap();
            } else {
                ops.disable_feature(ctx.org(), "exports").await.unwrap();
            }
            took.push(seen(&reader, &ctx, "exports", on).await);
        }
        took.sort();
        assert!(took[47] <= Duration::from_millis(250), "{took:?}");

        let pro = PlanKey::parse("pro").unwrap();
        let v1 = ops
            .create_plan_version(
                NewPlanVersion::new(pro.clone(), "Pro")
                    .unwrap()
                    .feature(FeatureKey::from_static("sso"), true)
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(!reader.has_feature(&ctx, "sso").await.unwrap());
        ops.assign_plan(ctx.org(), v1.plan.clone()).await.unwrap();
        assert!(seen(&reader, &ctx, "sso", true).await <= Duration::from_millis(250));

        let v2 = ops
            .create_plan_version(NewPlanVersion::new(pro, "Pro").unwrap())
            .await
            .unwrap();
        ops.migrate_plan(MigratePlan::new(v1.plan, v2.plan.version))
            .await
            .unwrap();
        assert!(seen(&reader, &ctx, "sso", false).await <= Duration::from_millis(250));
    }

    /// A store that pushes nothing is polled: a change shows within the
    /// poll interval (plus the read), although the TTL is an hour.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_stream_the_version_is_polled() {
        let memory = Arc::new(MemoryStore::new());
        let poll = Duration::from_millis(50);
        let (writer, reader) = (
            on(Arc::new(Polled::new(&memory)), poll),
            on(Arc::new(Polled::new(&memory)), poll),
        );
        let ctx = org(&writer, &reader).await;
        let operator = PlatformOperator::new("ops");
        for on in [true, false, true] {
            assert_eq!(reader.has_feature(&ctx, "exports").await.unwrap(), !on);
            writer
                .operator(&operator)
                .update_feature(ctx.org(), "exports", FeatureChange::enabled(on))
                .await
                .unwrap();
            let took = seen(&reader, &ctx, "exports", on).await;
            assert!(took <= poll + Duration::from_millis(200), "{took:?}");
        }
    }

    /// Failed reads are retried every interval, never fatal; once the
    /// counter answers again everything is forgotten (a change may have
    /// been missed meanwhile).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_polls_are_retried_and_forget_everything_on_recovery() {
        let memory = Arc::new(MemoryStore::new());
        let poll = Duration::from_millis(20);
        let polled = Arc::new(Polled::new(&memory));
        let writer = on(Arc::new(Polled::new(&memory)), poll);
        let reader = on(Arc::clone(&polled) as Arc<DynStore>, poll);
        let ctx = org(&writer, &reader).await;
        assert!(!reader.has_feature(&ctx, "exports").await.unwrap());
        polled.failures_left.store(10, Ordering::SeqCst);
        let before = polled.version_reads.load(Ordering::SeqCst);
        writer
            .operator(&PlatformOperator::new("ops"))
            .enable_feature(ctx.org(), "exports")
            .await
            .unwrap();
        seen(&reader, &ctx, "exports", true).await;
        assert_eq!(polled.failures_left.load(Ordering::SeqCst), 0);
        assert!(polled.version_reads.load(Ordering::SeqCst) >= before + 11);
    }

    /// The task ends once the last clone of its `Tenancy` is dropped: the
    /// store is read no more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_ends_with_the_tenancy() {
        let memory = Arc::new(MemoryStore::new());
        let polled = Arc::new(Polled::new(&memory));
        let tenancy = on(
            Arc::clone(&polled) as Arc<DynStore>,
            Duration::from_millis(10),
        );
        let clone = tenancy.clone();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(tenancy);
        let reads = polled.version_reads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            polled.version_reads.load(Ordering::SeqCst) > reads,
            "a clone keeps it"
        );
        drop(clone);
        tokio::time::sleep(LIVENESS + Duration::from_millis(200)).await;
        let reads = polled.version_reads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(polled.version_reads.load(Ordering::SeqCst), reads);
        // Only the test holds the store now.
        assert_eq!(Arc::strong_count(&polled), 1);
    }

    /// A store without plans ends the task quietly: no panic, no retries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_without_plans_ends_the_task() {
        let memory = Arc::new(MemoryStore::new());
        let polled = Arc::new(Polled {
            unsupported: true,
            ..Polled::new(&memory)
        });
        let tenancy = on(
            Arc::clone(&polled) as Arc<DynStore>,
            Duration::from_millis(10),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(polled.version_reads.load(Ordering::SeqCst), 1);
        drop(tenancy);
    }

    /// Built outside any runtime: nothing is spawned (no panic), and the
    /// first call made inside one starts propagation.
    #[test]
    fn built_outside_a_runtime_it_starts_on_first_use() {
        let store: Arc<DynStore> = Arc::new(MemoryStore::new());
        let reader = on(Arc::clone(&store), MAX_RETRY);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let writer = on(Arc::clone(&store), MAX_RETRY);
            let ctx = org(&writer, &reader).await;
            assert!(!reader.has_feature(&ctx, "exports").await.unwrap());
            writer
                .operator(&PlatformOperator::new("ops"))
                .enable_feature(ctx.org(), "exports")
                .await
                .unwrap();
            assert!(seen(&reader, &ctx, "exports", true).await <= Duration::from_millis(250));
        });
    }

    /// The poll interval is checked at build.
    #[test]
    fn the_poll_interval_is_checked() {
        for poll in [
            Duration::ZERO,
            Duration::from_millis(9),
            Duration::from_secs(3601),
        ] {
            let err = Tenancy::builder()
                .store(MemoryStore::new())
                .entitlement_poll(poll)
                .build()
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.message().contains("entitlement_poll"), "{err}");
        }
    }
}
