//! Fault injection for tests (feature `test-util`): a [`Store`] wrapper
//! whose usage writes fail, hang, or land twice on demand.
//!
//! For proving that usage recording loses nothing and doubles nothing
//! whatever the backend does. Only the usage writes are faulty; every other
//! method passes straight through (usage snapshot reads are counted, for
//! tests of how many a write costs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::context::Role;
use crate::error::{Error, ErrorKind, Result};
use crate::features::Feature;
use crate::ids::{FeatureKey, LimitId, OrgId, ReservationId, Slug, UserId};
use crate::limits::{AlertKey, Limit};
use crate::org::{Membership, OrgMembership, Organization};
use crate::store::{
    CommitOutcome, DynStore, RecordOutcome, ReserveRequest, ReserveResult, Store, UsageQuery,
    UsageSnapshot,
};
use crate::usage::UsageRecord;

/// A store whose usage writes (`record_usage`, `commit_reservation`)
/// misbehave on demand.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<DynStore>,
    down: AtomicBool,
    fail_next: AtomicUsize,
    garble_next: AtomicUsize,
    land_then_fail_next: AtomicUsize,
    deliver_twice: AtomicBool,
    delay_micros: AtomicU64,
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
            deliver_twice: AtomicBool::new(false),
            delay_micros: AtomicU64::new(0),
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

    /// Every usage write is applied twice, as by a proxy that re-sends.
    pub fn set_deliver_twice(&self, twice: bool) {
        self.deliver_twice.store(twice, Ordering::SeqCst);
    }

    /// Every usage write waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_micros
            .store(delay.as_micros() as u64, Ordering::SeqCst);
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

    async fn usage_fault<T, F>(&self, write: F) -> Result<T>
    where
        F: AsyncFnOnce() -> Result<T>,
        T: Copy,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Self::unavailable("backend down"));
        }
        if Self::take(&self.fail_next) {
            return Err(Self::unavailable("503"));
        }
        if Self::take(&self.garble_next) {
            return Err(Error::new(
                ErrorKind::Unexpected,
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

#[async_trait]
impl Store for FaultyStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome> {
        self.usage_fault(async || {
            let first = self.inner.record_usage(batch).await?;
            if self.deliver_twice.load(Ordering::SeqCst) {
                self.inner.record_usage(batch).await?;
            }
            Ok(first)
        })
        .await
    }

    async fn commit_reservation(
        &self,
        org: OrgId,
        id: ReservationId,
        usage: &UsageRecord,
    ) -> Result<CommitOutcome> {
        self.usage_fault(async || self.inner.commit_reservation(org, id, usage).await)
            .await
    }

    // Everything else passes through.

    async fn create_organization(&self, org: &Organization) -> Result<Organization> {
        self.inner.create_organization(org).await
    }
    async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        self.inner.organization(id).await
    }
    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>> {
        self.inner.organization_by_slug(slug).await
    }
    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        self.inner.rename_organization(id, name).await
    }
    async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        self.inner.delete_organization(id).await
    }
    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>> {
        self.inner.membership(org, user).await
    }
    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        self.inner.memberships_of_user(user).await
    }
    async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        self.inner.members(org).await
    }
    async fn add_member(&self, membership: &Membership) -> Result<()> {
        self.inner.add_member(membership).await
    }
    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        self.inner.set_member_role(org, user, expected, role).await
    }
    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()> {
        self.inner.remove_member(org, user, expected).await
    }
    async fn features(&self, org: OrgId) -> Result<Vec<Feature>> {
        self.inner.features(org).await
    }
    async fn put_feature(&self, org: OrgId, feature: &Feature) -> Result<()> {
        self.inner.put_feature(org, feature).await
    }
    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool> {
        self.inner.delete_feature(org, key).await
    }
    async fn limits(&self, org: OrgId) -> Result<Vec<Limit>> {
        self.inner.limits(org).await
    }
    async fn put_limit(&self, limit: &Limit) -> Result<Limit> {
        self.inner.put_limit(limit).await
    }
    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        self.inner.delete_limit(org, id).await
    }
    async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot> {
        self.snapshot_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.usage_snapshot(query).await
    }
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveResult> {
        self.inner.reserve(request).await
    }
    async fn release_reservation(&self, org: OrgId, id: ReservationId) -> Result<bool> {
        self.inner.release_reservation(org, id).await
    }
    async fn claim_alert(&self, key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool> {
        self.inner.claim_alert(key, fired_at).await
    }
}
