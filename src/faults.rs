//! Fault injection for tests (feature `test-util`): a [`Store`](crate::store::Store) wrapper
//! whose usage writes fail, hang, land twice or panic on demand.
//!
//! For proving that usage recording loses nothing and doubles nothing
//! whatever the backend does. The usage writes (`record_usage`,
//! `commit_reservation`) can fail in every way below; alert claims and
//! limit reads can fail with `Unavailable`; usage snapshots are counted
//! (for tests of how many reads a write costs). Every other method passes
//! straight through, generated from its capability's one list of methods.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{EventId, FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::store::{
    AlertStore, AuditStore, Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue,
    DomainStore, DynStore, FeatureStore, HistoryQuery, InvitationStore, LeaseStore, LimitStore,
    MemberStore, MeteringStore, OrgQuery, OrgStore, PlanStore, Principal, RateLimitStore,
    ReconcileQuery, RecordOutcome, ReleaseRequest, ReportStore, ReserveRequest, ReserveResult,
    UsageQuery, alert_store_methods, audit_store_methods, domain_store_methods,
    feature_store_methods, invitation_store_methods, lease_store_methods, limit_store_methods,
    member_store_methods, metering_store_methods, org_store_methods, pass_through_impl,
    plan_store_methods, rate_limit_store_methods, report_store_methods,
};
use crate::sync::lock;

/// How a demotion armed with [`FaultyStore::fault_next_demotion`] goes
/// wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemotionFault {
    /// Fails with `Unavailable`, changing nothing.
    Fail,
    /// Lands, then reports `Unavailable`, as a lost response.
    LandThenFail,
    /// Someone else changes the owner's role to this one first.
    ChangedMeanwhile(Role),
}

/// A store whose usage writes (`record_usage`, `commit_reservation`)
/// misbehave on demand.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<DynStore>,
    down: AtomicBool,
    fail_next: AtomicUsize,
    garble_next: AtomicUsize,
    land_then_fail_next: AtomicUsize,
    panic_next: AtomicUsize,
    poison: Mutex<HashSet<EventId>>,
    deliver_twice: AtomicBool,
    delay_micros: AtomicU64,
    pass_alert_claims: AtomicUsize,
    fail_alert_claims: AtomicUsize,
    fail_limit_reads: AtomicUsize,
    next_demotion: Mutex<Option<(UserId, DemotionFault)>>,
    without_optional: AtomicBool,
    calls: AtomicU64,
    snapshot_calls: AtomicU64,
}

impl FaultyStore {
    /// Wraps `inner`, healthy until told otherwise.
    pub fn new(inner: Arc<DynStore>) -> Self {
        FaultyStore {
            inner,
            down: AtomicBool::new(false),
            fail_next: AtomicUsize::new(0),
            garble_next: AtomicUsize::new(0),
            land_then_fail_next: AtomicUsize::new(0),
            panic_next: AtomicUsize::new(0),
            poison: Mutex::default(),
            deliver_twice: AtomicBool::new(false),
            delay_micros: AtomicU64::new(0),
            pass_alert_claims: AtomicUsize::new(0),
            fail_alert_claims: AtomicUsize::new(0),
            fail_limit_reads: AtomicUsize::new(0),
            next_demotion: Mutex::default(),
            without_optional: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            snapshot_calls: AtomicU64::new(0),
        }
    }

    /// An outage: every usage write fails with `Unavailable` until set back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// A burst: the next `n` usage writes fail with `Unavailable` (a 5xx).
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Nonsense: the next `n` usage writes fail with `Unexpected`, as for a
    /// response the store does not understand. Not retryable.
    pub fn garble_next(&self, n: usize) {
        self.garble_next.store(n, Ordering::SeqCst);
    }

    /// Timeouts: the next `n` usage writes land, then report `Unavailable`
    /// as if the response was lost, so the caller retries a write that
    /// already happened.
    pub fn land_then_fail_next(&self, n: usize) {
        self.land_then_fail_next.store(n, Ordering::SeqCst);
    }

    /// A bug: the next `n` usage writes panic before touching the store.
    pub fn panic_next(&self, n: usize) {
        self.panic_next.store(n, Ordering::SeqCst);
    }

    /// A poison event: every usage write that carries `id` panics before
    /// touching the store, however often it is retried.
    pub fn panic_on_event(&self, id: EventId) {
        lock(&self.poison).insert(id);
    }

    /// Every usage write is applied twice, as by a proxy that re-sends.
    pub fn set_deliver_twice(&self, twice: bool) {
        self.deliver_twice.store(twice, Ordering::SeqCst);
    }

    /// Every usage write waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_micros.store(micros, Ordering::SeqCst);
    }

    /// After the next `pass` alert claims, which go through, the `n`
    /// following ones fail with `Unavailable`, claiming nothing.
    pub fn fail_alert_claims_after(&self, pass: usize, n: usize) {
        self.pass_alert_claims.store(pass, Ordering::SeqCst);
        self.fail_alert_claims.store(n, Ordering::SeqCst);
    }

    /// The next `n` reads of an organization's limits (`limits`, or its
    /// effective `entitlements`, which carry them) fail with `Unavailable`.
    pub fn fail_limit_reads(&self, n: usize) {
        self.fail_limit_reads.store(n, Ordering::SeqCst);
    }

    /// A backend without the optional capabilities: `rate_limits()` and
    /// `leases()` answer `None` while set, as a store that has neither.
    pub fn set_without_optional_capabilities(&self, without: bool) {
        self.without_optional.store(without, Ordering::SeqCst);
    }

    /// The next demotion of owner `user` (a role change from `owner` to
    /// another role) goes wrong as `fault` says; later ones pass through.
    pub fn fault_next_demotion(&self, user: UserId, fault: DemotionFault) {
        *lock(&self.next_demotion) = Some((user, fault));
    }

    fn take_demotion(&self, user: UserId, expected: Role, role: Role) -> Option<DemotionFault> {
        if expected != Role::Owner || role == Role::Owner {
            return None;
        }
        let mut next = lock(&self.next_demotion);
        match *next {
            Some((target, _)) if target == user => next.take().map(|(_, fault)| fault),
            _ => None,
        }
    }

    /// How many usage writes were attempted.
    pub fn usage_calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many usage snapshots were read (limit checks, alert checks).
    pub fn snapshot_calls(&self) -> u64 {
        self.snapshot_calls.load(Ordering::SeqCst)
    }

    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn unavailable(what: &str) -> Error {
        Error::new(ErrorKind::Unavailable, format!("injected fault: {what}"))
    }

    /// The faults every usage write goes through, around `write`.
    async fn usage_fault<T, F>(&self, events: &[EventId], write: F) -> Result<T>
    where
        F: AsyncFnOnce() -> Result<T>,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        let poisoned = {
            let poison = lock(&self.poison);
            events.iter().any(|id| poison.contains(id))
        };
        if poisoned || Self::take(&self.panic_next) {
            panic!("injected fault: a bug in the store");
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Self::unavailable("backend down"));
        }
        if Self::take(&self.fail_next) {
            return Err(Self::unavailable("503"));
        }
        if Self::take(&self.garble_next) {
            return Err(Error::unexpected(
                "injected fault: a response the store does not understand",
            ));
        }
        let outcome = write().await?;
        if Self::take(&self.land_then_fail_next) {
            return Err(Self::unavailable("timed out after the write landed"));
        }
        Ok(outcome)
    }
}

impl Backend for FaultyStore {
    fn principal(&self) -> Principal {
        self.inner.principal()
    }

    fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        if self.without_optional.load(Ordering::SeqCst) {
            return None;
        }
        // Itself, so its pass-through (and any fault added to it) is reached.
        self.inner
            .rate_limits()
            .map(|_| self as &dyn RateLimitStore)
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        if self.without_optional.load(Ordering::SeqCst) {
            return None;
        }
        self.inner.leases().map(|_| self as &dyn LeaseStore)
    }

    fn reports(&self) -> Option<&dyn ReportStore> {
        if self.without_optional.load(Ordering::SeqCst) {
            return None;
        }
        self.inner.reports().map(|_| self as &dyn ReportStore)
    }
}

org_store_methods!(pass_through_impl! { $ OrgStore for FaultyStore [] {} });
member_store_methods!(
    pass_through_impl! { $ MemberStore for FaultyStore [set_member_role] {
        async fn set_member_role(
            &self,
            org: OrgId,
            user: UserId,
            expected: Role,
            role: Role,
        ) -> Result<Membership> {
            match self.take_demotion(user, expected, role) {
                None => self.inner.set_member_role(org, user, expected, role).await,
                Some(DemotionFault::Fail) => Err(Self::unavailable("the store went away")),
                Some(DemotionFault::LandThenFail) => {
                    self.inner.set_member_role(org, user, expected, role).await?;
                    Err(Self::unavailable("the store went away"))
                }
                Some(DemotionFault::ChangedMeanwhile(other)) => {
                    self.inner.set_member_role(org, user, expected, other).await?;
                    self.inner.set_member_role(org, user, expected, role).await
                }
            }
        }
    } }
);
feature_store_methods!(pass_through_impl! { $ FeatureStore for FaultyStore [] {} });

limit_store_methods!(pass_through_impl! { $ LimitStore for FaultyStore [limits] {
    async fn limits(&self, org: OrgId) -> Result<Vec<Limit>> {
        if Self::take(&self.fail_limit_reads) {
            return Err(Self::unavailable("reading limits"));
        }
        self.inner.limits(org).await
    }
} });

metering_store_methods!(
    pass_through_impl! { $ MeteringStore for FaultyStore [record_usage, commit_reservation, usage_snapshot] {
        async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome> {
            let ids: Vec<EventId> = batch.iter().map(|r| r.id).collect();
            self.usage_fault(&ids, async || {
                let first = self.inner.record_usage(batch).await?;
                if self.deliver_twice.load(Ordering::SeqCst) {
                    self.inner.record_usage(batch).await?;
                }
                Ok(first)
            })
            .await
        }

        async fn commit_reservation(&self, request: &CommitRequest) -> Result<CommitOutcome> {
            self.usage_fault(&[request.usage.id], async || {
                self.inner.commit_reservation(request).await
            })
            .await
        }

        async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot> {
            self.snapshot_calls.fetch_add(1, Ordering::SeqCst);
            self.inner.usage_snapshot(query).await
        }
    } }
);

invitation_store_methods!(pass_through_impl! { $ InvitationStore for FaultyStore [] {} });
domain_store_methods!(pass_through_impl! { $ DomainStore for FaultyStore [] {} });
audit_store_methods!(pass_through_impl! { $ AuditStore for FaultyStore [] {} });
plan_store_methods!(
    pass_through_impl! { $ PlanStore for FaultyStore [entitlements] {
        // The facade reads an organization's limits through its effective
        // entitlements: a limit read fault fails them too.
        async fn entitlements(
            &self,
            org: OrgId,
            now: DateTime<Utc>,
        ) -> Result<crate::model::plan::Entitlements> {
            if Self::take(&self.fail_limit_reads) {
                return Err(Self::unavailable("reading entitlements"));
            }
            self.inner.entitlements(org, now).await
        }
    } }
);
rate_limit_store_methods!(pass_through_impl! { $ RateLimitStore for FaultyStore [] {} });
lease_store_methods!(pass_through_impl! { $ LeaseStore for FaultyStore [] {} });
report_store_methods!(pass_through_impl! { $ ReportStore for FaultyStore [] {} });

alert_store_methods!(
    pass_through_impl! { $ AlertStore for FaultyStore [claim_alert] {
        async fn claim_alert(&self, key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool> {
            if !Self::take(&self.pass_alert_claims) && Self::take(&self.fail_alert_claims) {
                return Err(Self::unavailable("claiming an alert"));
            }
            self.inner.claim_alert(key, fired_at).await
        }
    } }
);
