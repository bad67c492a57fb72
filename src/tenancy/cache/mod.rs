//! [`CachingStore`]: the facade's caches as a store wrapper that
//! invalidates in its own write methods, so no write path can forget.
//!
//! Reads through the capability traits pass straight through (they are
//! fresh: the facade's compare-and-set reads need that). The facade's
//! cached reads are the inherent methods: an organization, its effective
//! entitlements (features, limits and rate limits, from one
//! [`PlanStore::entitlements`] load), and a confirmed membership, each kept
//! for the configured TTL — entitlements no later than their own
//! `valid_until` either (an override lapsing, a trial ending), so a warm
//! cache never serves them past it. Every write that changes one of them
//! drops the entry — whether or not the write reports success, since a
//! failed call may have landed — and a load that began before a drop is
//! not cached after it (see [`TtlCache`]). Changes made elsewhere reach
//! [`CachingStore::forget_entitlements`] through the propagation task.
//!
//! Below the caches, every call to the store goes through [`Instrumented`]:
//! a `tracing` span per call, named by its operation, and (feature
//! `metrics`) its duration and errors.

mod instrumented;
pub(super) mod propagation;
mod ttl;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::features::OrgFeatures;
use super::metering::OrgLimits;
use crate::clock::Clock;
use crate::error::Result;
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::rate::RateLimit;
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::plan::{EntitlementChange, Entitlements};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::store::{
    AlertStore, AuditStore, Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue,
    DomainStore, DynStore, FeatureStore, HistoryQuery, InvitationStore, LeaseStore, LimitStore,
    MemberStore, MeteringStore, OrgQuery, OrgStore, PlanStore, Principal, RateLimitStore,
    ReconcileQuery, RecordOutcome, ReleaseRequest, ReportStore, ReserveRequest, ReserveResult,
    UsageQuery, alert_store_methods, audit_store_methods, domain_store_methods,
    feature_store_methods, invitation_store_methods, limit_store_methods, member_store_methods,
    metering_store_methods, org_not_found, org_store_methods, pass_through_impl,
    plan_store_methods, rate_limit_store_methods,
};
use instrumented::Instrumented;
use ttl::TtlCache;

/// How far [`Clock::coarse_unix_micros`] may lag [`Clock::now`]: Linux's
/// coarse clock ticks every 1–4 ms. An entry with a deadline of its own (an
/// override's expiry, a trial's end) goes stale this much before it.
const COARSE_CLOCK_LAG_MICROS: i64 = 10_000;

/// A membership the store confirmed, as the membership cache keeps it. The
/// organization itself is cached by organization, so renaming one touches
/// one entry, not every membership.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConfirmedRole {
    pub(super) role: Role,
    pub(super) confirmed_at: DateTime<Utc>,
}

/// The sizes and lifetimes of the caches.
#[derive(Debug, Clone, Copy)]
pub(super) struct CacheConfig {
    pub(super) org_capacity: usize,
    pub(super) org_ttl: std::time::Duration,
    pub(super) membership_capacity: usize,
    pub(super) membership_ttl: std::time::Duration,
}

/// An organization's effective entitlements as the cache keeps them: one
/// [`PlanStore::entitlements`] load, shaped for the readers.
#[derive(Debug)]
pub(super) struct CachedEntitlements {
    /// Its effective features, by key (the hot path of `has_feature`).
    pub(super) features: OrgFeatures,
    /// Its effective usage limits, for picking alert checks.
    pub(super) limits: Arc<OrgLimits>,
    /// Its effective rate limits (configuration, not state): an
    /// organization without any skips the rate decision's store call.
    pub(super) rate_limits: Arc<Vec<RateLimit>>,
}

/// The store the facade runs on: `inner` behind its caches.
#[derive(Debug)]
pub(super) struct CachingStore {
    inner: Instrumented,
    clock: Arc<dyn Clock>,
    orgs: TtlCache<OrgId, Arc<Organization>>,
    memberships: TtlCache<(OrgId, UserId), ConfirmedRole>,
    /// Each organization's effective entitlements, kept for the TTL and no
    /// later than their `valid_until`.
    entitlements: TtlCache<OrgId, Arc<CachedEntitlements>>,
}

impl CachingStore {
    pub(super) fn new(inner: Arc<DynStore>, clock: Arc<dyn Clock>, config: CacheConfig) -> Self {
        CachingStore {
            inner: Instrumented::new(inner),
            clock,
            orgs: TtlCache::new(config.org_capacity, config.org_ttl),
            memberships: TtlCache::new(config.membership_capacity, config.membership_ttl),
            entitlements: TtlCache::new(config.org_capacity, config.org_ttl),
        }
    }

    /// The limit-decision counters, per metric (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(super) fn limit_decisions(&self) -> &crate::metrics::LimitDecisions {
        self.inner.decisions()
    }

    /// The cache clock: cheap, possibly a few milliseconds coarse.
    fn cache_now(&self) -> i64 {
        self.clock.coarse_unix_micros()
    }

    /// The organization, from the cache when fresh. `NotFound` if it does
    /// not exist.
    pub(super) async fn cached_org(&self, org: OrgId) -> Result<Arc<Organization>> {
        let load = async {
            let found = self.inner.organization(org).await?;
            found.map(Arc::new).ok_or_else(|| org_not_found(org))
        };
        self.orgs.get_or_load(org, self.cache_now(), load).await
    }

    /// `read` applied to the organization's cached effective features, when
    /// fresh: the hot path of `has_feature`, synchronous and without a
    /// clone (one integer deadline compared, nothing allocated).
    pub(super) fn with_cached_features<R>(
        &self,
        org: OrgId,
        read: impl FnOnce(&OrgFeatures) -> R,
    ) -> Option<R> {
        self.entitlements
            .with(&org, self.cache_now(), |cached| read(&cached.features))
    }

    /// The organization's effective entitlements, from the cache when fresh
    /// (within the TTL and before their `valid_until`), else from one
    /// [`PlanStore::entitlements`] load at the clock's `now`.
    pub(super) async fn cached_entitlements(&self, org: OrgId) -> Result<Arc<CachedEntitlements>> {
        let load = async {
            let entitlements = self.fresh_entitlements(org).await?;
            // Stale a coarse tick early, so a read at or after the deadline
            // by the exact clock never gets the view from before it.
            let until = entitlements.valid_until.map(|at| {
                at.timestamp_micros()
                    .saturating_sub(COARSE_CLOCK_LAG_MICROS)
            });
            Ok((Arc::new(Self::shape(entitlements)), until))
        };
        self.entitlements
            .get_or_load_until(org, self.cache_now(), load)
            .await
    }

    /// The organization's effective usage limits, from the cache when fresh.
    pub(super) async fn cached_limits(&self, org: OrgId) -> Result<Arc<OrgLimits>> {
        Ok(Arc::clone(&self.cached_entitlements(org).await?.limits))
    }

    /// The organization's effective rate limits (configuration only), from
    /// the cache when fresh; empty, without a read, on a store without rate
    /// limits.
    pub(super) async fn cached_rate_limits(&self, org: OrgId) -> Result<Arc<Vec<RateLimit>>> {
        if self.inner.rate_limits().is_none() {
            return Ok(Arc::default());
        }
        Ok(Arc::clone(
            &self.cached_entitlements(org).await?.rate_limits,
        ))
    }

    /// Drops the cached entitlements of one organization, or of all of
    /// them: the next read loads them again. A load in flight when this
    /// runs is not cached.
    pub(super) fn forget_entitlements(&self, change: EntitlementChange) {
        match change {
            EntitlementChange::Org(org) => self.entitlements.invalidate(&org),
            EntitlementChange::All => self.entitlements.invalidate_all(),
        }
    }

    /// The organization's effective view at the clock's `now`, read from
    /// the store (not the cache). `NotFound` for an unknown organization.
    pub(super) async fn fresh_entitlements(&self, org: OrgId) -> Result<Entitlements> {
        self.inner.entitlements(org, self.clock.now()).await
    }

    /// `entitlements` shaped for the cache's readers.
    fn shape(entitlements: Entitlements) -> CachedEntitlements {
        let rate_limits = entitlements
            .rate_limits
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        CachedEntitlements {
            features: OrgFeatures::new(entitlements.features.into_iter().map(|(f, _)| f).collect()),
            limits: Arc::new(OrgLimits::new(
                entitlements.limits.into_iter().map(|(l, _)| l).collect(),
            )),
            rate_limits: Arc::new(rate_limits),
        }
    }

    /// `user`'s role in `org` with the organization, from the membership
    /// cache when it confirmed the membership within its TTL, else from the
    /// store (confirmed at `now`). `None` for a non-member, or an
    /// organization that no longer exists.
    pub(super) async fn confirmed_membership(
        &self,
        org: OrgId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Arc<Organization>, ConfirmedRole)>> {
        let cache_now = self.cache_now();
        let key = (org, user);
        if let Some(confirmed) = self.memberships.get(&key, cache_now) {
            return match self.cached_org(org).await {
                Ok(organization) => Ok(Some((organization, confirmed))),
                Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {
                    self.memberships.invalidate(&key);
                    Ok(None)
                }
                Err(e) => Err(e),
            };
        }
        let generations = (self.orgs.generation(), self.memberships.generation());
        let Some(membership) = self.inner.membership(org, user).await? else {
            return Ok(None);
        };
        let confirmed = ConfirmedRole {
            role: membership.role,
            confirmed_at: now,
        };
        let organization = Arc::new(membership.organization);
        self.orgs
            .insert(org, Arc::clone(&organization), cache_now, generations.0);
        self.memberships
            .insert(key, confirmed, cache_now, generations.1);
        Ok(Some((organization, confirmed)))
    }
}

impl Backend for CachingStore {
    fn principal(&self) -> Principal {
        self.inner.principal()
    }

    /// Itself, when the store behind has rate limits: its rate-limit
    /// writes drop the cached configuration.
    fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        self.inner
            .rate_limits()
            .map(|_| self as &dyn RateLimitStore)
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        self.inner.leases()
    }

    fn reports(&self) -> Option<&dyn ReportStore> {
        self.inner.reports()
    }
}

org_store_methods!(pass_through_impl! { $ OrgStore for CachingStore
    [rename_organization, delete_organization] {
    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization> {
        let renamed = self.inner.rename_organization(id, name).await;
        self.orgs.invalidate(&id);
        renamed
    }

    async fn delete_organization(&self, id: OrgId) -> Result<bool> {
        let deleted = self.inner.delete_organization(id).await;
        // Memberships of a deleted organization are dropped when next read:
        // their organization is gone.
        self.orgs.invalidate(&id);
        self.forget_entitlements(EntitlementChange::Org(id));
        deleted
    }
} });

member_store_methods!(pass_through_impl! { $ MemberStore for CachingStore
    [set_member_role, remove_member] {
    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        let changed = self.inner.set_member_role(org, user, expected, role).await;
        self.memberships.invalidate(&(org, user));
        changed
    }

    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()> {
        let removed = self.inner.remove_member(org, user, expected).await;
        self.memberships.invalidate(&(org, user));
        removed
    }
} });

feature_store_methods!(pass_through_impl! { $ FeatureStore for CachingStore
    [update_feature, delete_feature] {
    async fn update_feature(
        &self,
        org: OrgId,
        key: &FeatureKey,
        change: &FeatureChange,
        now: DateTime<Utc>,
    ) -> Result<Feature> {
        let stored = self.inner.update_feature(org, key, change, now).await;
        self.forget_entitlements(EntitlementChange::Org(org));
        stored
    }

    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool> {
        let deleted = self.inner.delete_feature(org, key).await;
        self.forget_entitlements(EntitlementChange::Org(org));
        deleted
    }
} });

limit_store_methods!(pass_through_impl! { $ LimitStore for CachingStore
    [put_limit, delete_limit] {
    async fn put_limit(&self, limit: &Limit) -> Result<Limit> {
        let stored = self.inner.put_limit(limit).await;
        self.forget_entitlements(EntitlementChange::Org(limit.org));
        stored
    }

    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let deleted = self.inner.delete_limit(org, id).await;
        self.forget_entitlements(EntitlementChange::Org(org));
        deleted
    }
} });

metering_store_methods!(pass_through_impl! { $ MeteringStore for CachingStore [] {} });
alert_store_methods!(pass_through_impl! { $ AlertStore for CachingStore [] {} });
invitation_store_methods!(pass_through_impl! { $ InvitationStore for CachingStore [] {} });
domain_store_methods!(pass_through_impl! { $ DomainStore for CachingStore [] {} });
audit_store_methods!(pass_through_impl! { $ AuditStore for CachingStore [] {} });
// A new catalog version passes through: it changes no organization's view
// (each names its version, and versions never change), so nothing is
// forgotten.
plan_store_methods!(pass_through_impl! { $ PlanStore for CachingStore
    [assign_plan, unassign_plan, migrate_plan] {
    async fn assign_plan(
        &self,
        request: &crate::model::plan::AssignPlan,
    ) -> Result<crate::model::plan::PlanAssignment> {
        let assigned = self.inner.assign_plan(request).await;
        self.forget_entitlements(EntitlementChange::Org(request.org));
        assigned
    }

    async fn unassign_plan(&self, org: OrgId) -> Result<bool> {
        let removed = self.inner.unassign_plan(org).await;
        self.forget_entitlements(EntitlementChange::Org(org));
        removed
    }

    async fn migrate_plan(&self, request: &crate::model::plan::MigratePlan) -> Result<u64> {
        let moved = self.inner.migrate_plan(request).await;
        self.forget_entitlements(request.org.map_or(EntitlementChange::All, EntitlementChange::Org));
        moved
    }
} });

rate_limit_store_methods!(pass_through_impl! { $ RateLimitStore for CachingStore
    [put_rate_limit, delete_rate_limit] {
    async fn put_rate_limit(&self, limit: &RateLimit) -> Result<RateLimit> {
        let stored = self.inner.put_rate_limit(limit).await;
        self.forget_entitlements(EntitlementChange::Org(limit.org));
        stored
    }

    async fn delete_rate_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let deleted = self.inner.delete_rate_limit(org, id).await;
        self.forget_entitlements(EntitlementChange::Org(org));
        deleted
    }
} });

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::FakeClock;
    use crate::memory::MemoryStore;
    use crate::model::FeatureChange;

    fn cached(inner: Arc<MemoryStore>) -> CachingStore {
        let config = CacheConfig {
            org_capacity: 100,
            org_ttl: Duration::from_secs(3600),
            membership_capacity: 100,
            membership_ttl: Duration::from_secs(3600),
        };
        CachingStore::new(inner, Arc::new(FakeClock::default()), config)
    }

    /// Every write through the wrapper drops what it changed, so the next
    /// cached read sees it; a write behind the wrapper's back stays hidden
    /// for the TTL (what the wrapper is for).
    #[tokio::test]
    async fn its_own_writes_invalidate_what_they_change() {
        let inner = Arc::new(MemoryStore::new());
        let store = cached(Arc::clone(&inner));
        let (owner, member) = (UserId::new_v7(), UserId::new_v7());
        let org = Organization {
            id: OrgId::new_v7(),
            name: "Acme".into(),
            slug: Slug::parse("acme").unwrap(),
            owner_user_id: Some(owner),
            timezone: chrono_tz::Tz::UTC,
            created_at: chrono::Utc::now(),
        };
        store.create_organization(&org).await.unwrap();
        let now = org.created_at;
        let key = FeatureKey::from_static("exports");
        let on = FeatureChange::enabled(true);

        // Cache everything once.
        assert_eq!(store.cached_org(org.id).await.unwrap().name, "Acme");
        assert!(
            store
                .cached_entitlements(org.id)
                .await
                .unwrap()
                .features
                .get("exports")
                .is_none()
        );
        assert!(store.cached_limits(org.id).await.unwrap().is_empty());
        inner
            .add_member(&Membership {
                user_id: member,
                organization_id: org.id,
                role: Role::Member,
                created_at: now,
            })
            .await
            .unwrap();
        let (_, confirmed) = store
            .confirmed_membership(org.id, member, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(confirmed.role, Role::Member);

        // Behind the wrapper's back: hidden for the TTL.
        inner.update_feature(org.id, &key, &on, now).await.unwrap();
        assert!(
            store
                .with_cached_features(org.id, |f| f.get("exports").is_none())
                .unwrap()
        );

        // Through the wrapper: seen at once.
        store.update_feature(org.id, &key, &on, now).await.unwrap();
        assert_eq!(
            store.with_cached_features(org.id, |f| f.get("exports").is_some()),
            None
        );
        assert!(
            store
                .cached_entitlements(org.id)
                .await
                .unwrap()
                .features
                .get("exports")
                .is_some()
        );
        store.delete_feature(org.id, &key).await.unwrap();
        assert!(
            store
                .cached_entitlements(org.id)
                .await
                .unwrap()
                .features
                .get("exports")
                .is_none()
        );

        let limit = crate::limits::Limit {
            id: LimitId::new_v7(),
            org: org.id,
            scope: crate::limits::LimitScope::Organization,
            metric: crate::ids::MetricKey::TOKENS,
            period: crate::limits::Period::Monthly,
            value: 10.into(),
            mode: crate::limits::LimitMode::Hard,
            created_at: now,
            expires_at: None,
        };
        store.put_limit(&limit).await.unwrap();
        assert!(!store.cached_limits(org.id).await.unwrap().is_empty());
        store.delete_limit(org.id, limit.id).await.unwrap();
        assert!(store.cached_limits(org.id).await.unwrap().is_empty());

        store
            .rename_organization(org.id, "Acme Labs")
            .await
            .unwrap();
        assert_eq!(store.cached_org(org.id).await.unwrap().name, "Acme Labs");

        store
            .set_member_role(org.id, member, Role::Member, Role::Admin)
            .await
            .unwrap();
        let (_, confirmed) = store
            .confirmed_membership(org.id, member, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(confirmed.role, Role::Admin);
        store
            .remove_member(org.id, member, Role::Admin)
            .await
            .unwrap();
        assert!(
            store
                .confirmed_membership(org.id, member, now)
                .await
                .unwrap()
                .is_none()
        );

        store.delete_organization(org.id).await.unwrap();
        assert_eq!(
            store.cached_org(org.id).await.unwrap_err().kind(),
            crate::error::ErrorKind::NotFound
        );
    }
}

#[cfg(test)]
mod entitlement_tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::FakeClock;
    use crate::ids::PlanKey;
    use crate::memory::MemoryStore;
    use crate::model::plan::{AssignPlan, MigratePlan, NewPlanVersion};

    const SECOND: Duration = Duration::from_secs(1);

    fn cached_on(inner: Arc<MemoryStore>, clock: FakeClock) -> CachingStore {
        let config = CacheConfig {
            org_capacity: 100,
            org_ttl: Duration::from_secs(3600),
            membership_capacity: 100,
            membership_ttl: Duration::from_secs(3600),
        };
        CachingStore::new(inner, Arc::new(clock), config)
    }

    async fn org(store: &CachingStore, slug: &str, now: DateTime<Utc>) -> OrgId {
        let org = Organization {
            id: OrgId::new_v7(),
            name: slug.into(),
            slug: Slug::parse(slug).unwrap(),
            owner_user_id: Some(UserId::new_v7()),
            timezone: chrono_tz::Tz::UTC,
            created_at: now,
        };
        store.create_organization(&org).await.unwrap();
        org.id
    }

    fn cached(store: &CachingStore, org: OrgId) -> bool {
        store.with_cached_features(org, |_| ()).is_some()
    }

    /// An entry is used no later than its view's `valid_until` (here an
    /// override lapsing), even with an hour of TTL left: the next read
    /// loads the view again.
    #[tokio::test]
    async fn entitlements_are_kept_no_later_than_valid_until() {
        let clock = FakeClock::at("2026-03-04T10:00:00Z");
        let inner = Arc::new(MemoryStore::new());
        let store = cached_on(Arc::clone(&inner), clock.clone());
        let now = clock.now();
        let acme = org(&store, "acme", now).await;
        let (exports, beta) = (
            FeatureKey::from_static("exports"),
            FeatureKey::from_static("beta"),
        );
        let lapsing = FeatureChange::enabled(true).until(Some(now + chrono::TimeDelta::minutes(1)));
        store
            .update_feature(acme, &exports, &lapsing, now)
            .await
            .unwrap();
        let view = store.cached_entitlements(acme).await.unwrap();
        assert!(view.features.get("exports").is_some_and(|f| f.enabled));

        // Behind the wrapper's back: hidden while the entry is valid.
        let on = FeatureChange::enabled(true);
        inner.update_feature(acme, &beta, &on, now).await.unwrap();
        clock.advance(59 * SECOND);
        assert_eq!(
            store.with_cached_features(acme, |f| f.get("beta").is_none()),
            Some(true)
        );

        // At the override's expiry the entry is stale; the reload has
        // neither the lapsed override nor the hidden change hidden.
        clock.advance(SECOND);
        assert!(!cached(&store, acme));
        let view = store.cached_entitlements(acme).await.unwrap();
        assert!(view.features.get("exports").is_none());
        assert!(view.features.get("beta").is_some());
        // Nothing lapses any more: cached for the TTL.
        clock.advance(3599 * SECOND);
        assert!(cached(&store, acme));
        clock.advance(SECOND);
        assert!(!cached(&store, acme));
    }

    /// Plan writes through the wrapper drop what they change: a migration
    /// of a whole version drops every organization's entry; an assignment,
    /// an unassignment and a migration of one organization drop that
    /// one's; a new version, which changes no organization's view, drops
    /// none.
    #[tokio::test]
    async fn plan_writes_drop_what_they_change() {
        let clock = FakeClock::at("2026-03-04T10:00:00Z");
        let store = cached_on(Arc::new(MemoryStore::new()), clock.clone());
        let now = clock.now();
        let (a, b) = (org(&store, "a", now).await, org(&store, "b", now).await);
        let warm = async || {
            store.cached_entitlements(a).await.unwrap();
            store.cached_entitlements(b).await.unwrap();
            assert!(cached(&store, a) && cached(&store, b));
        };
        let free = || NewPlanVersion::new(PlanKey::parse("free").unwrap(), "Free").unwrap();
        let exports = FeatureKey::from_static("exports");

        let v1 = store.put_plan_version(&free(), now).await.unwrap();
        warm().await;
        store
            .assign_plan(&AssignPlan::new(a, v1.plan.clone(), now))
            .await
            .unwrap();
        assert!(!cached(&store, a) && cached(&store, b));
        store
            .assign_plan(&AssignPlan::new(b, v1.plan.clone(), now))
            .await
            .unwrap();

        warm().await;
        let v2 = free().feature(exports.clone(), true).unwrap();
        let v2 = store.put_plan_version(&v2, now).await.unwrap();
        assert!(cached(&store, a) && cached(&store, b));

        warm().await;
        let one = MigratePlan::new(v1.plan.clone(), v2.plan.version).org(a);
        assert_eq!(store.migrate_plan(&one).await.unwrap(), 1);
        assert!(!cached(&store, a) && cached(&store, b));
        let on_a = store.cached_entitlements(a).await.unwrap();
        assert!(on_a.features.get("exports").is_some_and(|f| f.enabled));

        warm().await;
        let all = MigratePlan::new(v1.plan.clone(), v2.plan.version);
        assert_eq!(store.migrate_plan(&all).await.unwrap(), 1);
        assert!(!cached(&store, a) && !cached(&store, b));
        assert!(
            store
                .cached_entitlements(b)
                .await
                .unwrap()
                .features
                .get("exports")
                .is_some()
        );

        warm().await;
        assert!(store.unassign_plan(a).await.unwrap());
        assert!(!cached(&store, a) && cached(&store, b));
        assert!(
            store
                .cached_entitlements(a)
                .await
                .unwrap()
                .features
                .get("exports")
                .is_none()
        );

        // What the propagation task calls.
        warm().await;
        store.forget_entitlements(EntitlementChange::Org(b));
        assert!(cached(&store, a) && !cached(&store, b));
        warm().await;
        store.forget_entitlements(EntitlementChange::All);
        assert!(!cached(&store, a) && !cached(&store, b));
    }
}
