//! The facade: [`Tenancy`], its builder, organizations, members and
//! contexts. Feature access lives in [`features`](crate::features), usage and
//! limits in [`metering`](crate::metering); both add methods to [`Tenancy`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cache::TtlCache;
use crate::clock::{Clock, SystemClock};
use crate::context::{Action, MembershipChange, Role, TenantContext, authorize_membership_change};
use crate::error::{Error, ErrorKind, Result};
use crate::features::OrgFeatures;
use crate::ids::{OrgId, Slug, UserId};
use crate::limits::{AlertSink, AlertThresholds, LogAlertSink};
use crate::metering::OrgMetering;
use crate::org::{
    Membership, NewOrganization, OrgMembership, Organization, default_membership, validate_org_name,
};
use crate::store::{DynStore, Store};

/// The multi-tenant layer: organizations, members, contexts, features,
/// usage and limits over one [`Store`].
///
/// Cheap to clone; clones share caches and the store.
///
/// ```
/// use tenancy::{MemoryStore, NewOrganization, Role, Tenancy, UserId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
///
/// let acme = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
/// let as_alice = tenancy.context(alice, acme.id).await?;
/// tenancy.add_member(&as_alice, bob, Role::Member).await?;
///
/// let as_bob = tenancy.context(bob, acme.id).await?;
/// assert_eq!(as_bob.role(), Role::Member);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Tenancy {
    pub(crate) inner: Arc<Inner>,
}

/// A membership the store confirmed, as the membership cache keeps it: a
/// cache hit is one `Arc` clone, and the time is when the store said so.
#[derive(Debug, Clone)]
pub(crate) struct ConfirmedMembership {
    organization: Arc<Organization>,
    role: Role,
    confirmed_at: DateTime<Utc>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<DynStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) features: TtlCache<OrgId, Arc<OrgFeatures>>,
    pub(crate) metering: TtlCache<OrgId, Arc<OrgMetering>>,
    pub(crate) memberships: TtlCache<(OrgId, UserId), ConfirmedMembership>,
    pub(crate) reservation_ttl: Duration,
    pub(crate) alert_thresholds: AlertThresholds,
    pub(crate) alert_sink: Arc<dyn AlertSink>,
    pub(crate) alert_delivery_attempts: u32,
}

/// Configures and builds a [`Tenancy`]. Every setting has a default except
/// the store.
#[derive(Debug)]
pub struct TenancyBuilder {
    store: Option<Arc<DynStore>>,
    clock: Arc<dyn Clock>,
    feature_cache_ttl: Duration,
    feature_cache_capacity: usize,
    membership_cache_ttl: Duration,
    membership_cache_capacity: usize,
    reservation_ttl: Duration,
    alert_thresholds: AlertThresholds,
    alert_sink: Arc<dyn AlertSink>,
    alert_delivery_attempts: u32,
}

impl Default for TenancyBuilder {
    fn default() -> Self {
        TenancyBuilder {
            store: None,
            clock: Arc::new(SystemClock),
            feature_cache_ttl: Duration::from_secs(30),
            feature_cache_capacity: 10_000,
            membership_cache_ttl: Duration::ZERO,
            membership_cache_capacity: 100_000,
            reservation_ttl: Duration::from_secs(600),
            alert_thresholds: AlertThresholds::default(),
            alert_sink: Arc::new(LogAlertSink),
            alert_delivery_attempts: 3,
        }
    }
}

impl TenancyBuilder {
    /// The store to run on. Required.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store already behind an `Arc`, to share it with other code.
    pub fn shared_store(mut self, store: Arc<DynStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock; [`SystemClock`] by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long an organization's features, limits and time zone stay
    /// cached.
    /// Default 30 s; zero disables the cache. Changes made through this
    /// `Tenancy` are visible at once; changes made elsewhere within this
    /// bound.
    pub fn feature_cache_ttl(mut self, ttl: Duration) -> Self {
        self.feature_cache_ttl = ttl;
        self
    }

    /// How many organizations' features (and limits) to cache. Default
    /// 10 000.
    pub fn feature_cache_capacity(mut self, capacity: usize) -> Self {
        self.feature_cache_capacity = capacity;
        self
    }

    /// How long a confirmed membership may be reused by
    /// [`Tenancy::context`] before asking the store again. Default zero:
    /// every call asks the store, so a removed member's next call fails.
    /// With a TTL, a member removed through another instance keeps access
    /// for at most this long; one removed through this instance loses it
    /// at once.
    pub fn membership_cache_ttl(mut self, ttl: Duration) -> Self {
        self.membership_cache_ttl = ttl;
        self
    }

    /// How many memberships to cache. Default 100 000.
    pub fn membership_cache_capacity(mut self, capacity: usize) -> Self {
        self.membership_cache_capacity = capacity;
        self
    }

    /// How long a reservation holds its estimate if neither committed nor
    /// released. Default 10 minutes.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// The alert thresholds; 80 %, 90 %, 100 % by default.
    pub fn alert_thresholds(mut self, thresholds: AlertThresholds) -> Self {
        self.alert_thresholds = thresholds;
        self
    }

    /// Where alerts go; [`LogAlertSink`] by default.
    pub fn alert_sink(mut self, sink: impl AlertSink) -> Self {
        self.alert_sink = Arc::new(sink);
        self
    }

    /// A sink already behind an `Arc`, to keep a handle on it.
    pub fn shared_alert_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.alert_sink = sink;
        self
    }

    /// How many times to try delivering one alert before logging the
    /// failure. Default 3.
    pub fn alert_delivery_attempts(mut self, attempts: u32) -> Self {
        self.alert_delivery_attempts = attempts;
        self
    }

    /// Validates the configuration and builds the facade. A missing store
    /// or a zero reservation TTL is a `Config` error.
    pub fn build(self) -> Result<Tenancy> {
        let store = self.store.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "Tenancy::builder() needs a store: call .store(MemoryStore::new()) or another backend",
            )
        })?;
        if self.reservation_ttl.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "reservation_ttl must be longer than zero",
            ));
        }
        Ok(Tenancy {
            inner: Arc::new(Inner {
                store,
                clock: self.clock,
                features: TtlCache::new(self.feature_cache_capacity, self.feature_cache_ttl),
                metering: TtlCache::new(self.feature_cache_capacity, self.feature_cache_ttl),
                memberships: TtlCache::new(
                    self.membership_cache_capacity,
                    self.membership_cache_ttl,
                ),
                reservation_ttl: self.reservation_ttl,
                alert_thresholds: self.alert_thresholds,
                alert_sink: self.alert_sink,
                alert_delivery_attempts: self.alert_delivery_attempts.max(1),
            }),
        })
    }
}

impl Tenancy {
    /// A builder with default settings.
    pub fn builder() -> TenancyBuilder {
        TenancyBuilder::default()
    }

    /// The store this facade runs on.
    pub fn store(&self) -> &Arc<DynStore> {
        &self.inner.store
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The cache clock: cheap, possibly a few milliseconds coarse.
    pub(crate) fn cache_now(&self) -> i64 {
        self.inner.clock.coarse_unix_micros()
    }

    // ---- organizations -------------------------------------------------

    /// Creates an organization; `owner` becomes its owner and
    /// `owner_user_id`. A taken slug is `AlreadyExists`.
    pub async fn create_organization(
        &self,
        owner: UserId,
        new: NewOrganization,
    ) -> Result<Organization> {
        let org = Organization {
            id: OrgId::new_v7(),
            name: new.name,
            slug: new.slug,
            owner_user_id: Some(owner),
            timezone: new.timezone,
            created_at: self.now(),
        };
        self.inner.store.create_organization(&org).await
    }

    /// The organization with this id, if any.
    pub async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        self.inner.store.organization(id).await
    }

    /// The organization with this slug, if any. An invalid slug is
    /// `InvalidInput`.
    pub async fn organization_by_slug(&self, slug: &str) -> Result<Option<Organization>> {
        let slug = Slug::parse(slug)?;
        self.inner.store.organization_by_slug(&slug).await
    }

    /// Renames the active organization (admin or owner).
    pub async fn rename_organization(
        &self,
        ctx: &TenantContext,
        name: &str,
    ) -> Result<Organization> {
        ctx.require(Action::RenameOrganization)?;
        let name = validate_org_name(name)?;
        let org = self
            .inner
            .store
            .rename_organization(ctx.org(), &name)
            .await?;
        self.inner.memberships.clear();
        Ok(org)
    }

    /// Deletes the active organization and everything in it (owner only).
    pub async fn delete_organization(&self, ctx: &TenantContext) -> Result<()> {
        ctx.require(Action::DeleteOrganization)?;
        if !self.inner.store.delete_organization(ctx.org()).await? {
            return Err(Error::not_found(format!(
                "organization {} no longer exists",
                ctx.org()
            )));
        }
        self.inner.memberships.clear();
        self.inner.features.invalidate(&ctx.org());
        self.inner.metering.invalidate(&ctx.org());
        Ok(())
    }

    // ---- contexts ------------------------------------------------------

    /// The context of `user` acting in `org`, after the store confirms the
    /// membership (or, with a membership cache, confirmed it within the
    /// configured TTL). A user who is not a member — or an org that does not
    /// exist, indistinguishably — is `PermissionDenied`.
    pub async fn context(&self, user: UserId, org: OrgId) -> Result<TenantContext> {
        let load = async {
            let membership = self
                .inner
                .store
                .membership(org, user)
                .await?
                .ok_or_else(|| {
                    Error::permission_denied(format!(
                        "user {user} is not a member of organization {org}"
                    ))
                })?;
            Ok(ConfirmedMembership {
                organization: Arc::new(membership.organization),
                role: membership.role,
                confirmed_at: self.now(),
            })
        };
        let confirmed = self
            .inner
            .memberships
            .get_or_load((org, user), self.cache_now(), load)
            .await?;
        Ok(TenantContext::new(
            user,
            confirmed.organization,
            confirmed.role,
            confirmed.confirmed_at,
        ))
    }

    /// Like [`context`](Self::context) with ids as strings, as they arrive
    /// from a request. Invalid UUIDs are `InvalidInput` naming `user_id` or
    /// `org_id`.
    pub async fn context_from_strs(&self, user: &str, org: &str) -> Result<TenantContext> {
        self.context(UserId::parse(user)?, OrgId::parse(org)?).await
    }

    /// Switches `ctx`'s user to another organization, re-checking the
    /// membership.
    pub async fn switch_org(&self, ctx: &TenantContext, org: OrgId) -> Result<TenantContext> {
        self.context(ctx.user(), org).await
    }

    /// The user's organizations with their roles, for an org selector:
    /// the [default](Self::default_context) first, then by join time.
    pub async fn orgs_for_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        let mut orgs = self.inner.store.memberships_of_user(user).await?;
        let default = default_membership(&orgs).map(|m| m.organization.id);
        orgs.sort_by_key(|m| {
            (
                Some(m.organization.id) != default,
                m.joined_at,
                m.organization.id,
            )
        });
        Ok(orgs)
    }

    /// The context of `user` in their default organization — the one they
    /// joined first (see [`default_membership`]) — or `None` if they belong
    /// to none.
    pub async fn default_context(&self, user: UserId) -> Result<Option<TenantContext>> {
        let orgs = self.inner.store.memberships_of_user(user).await?;
        let Some(default) = default_membership(&orgs) else {
            return Ok(None);
        };
        Ok(Some(TenantContext::new(
            user,
            Arc::new(default.organization.clone()),
            default.role,
            self.now(),
        )))
    }

    // ---- members -------------------------------------------------------

    /// The active organization's members.
    pub async fn members(&self, ctx: &TenantContext) -> Result<Vec<Membership>> {
        ctx.require(Action::ViewMembers)?;
        self.inner.store.members(ctx.org()).await
    }

    /// Adds `user` to the active organization with `role`. Owners add
    /// anyone; admins add members and viewers. `AlreadyExists` if `user` is a
    /// member.
    pub async fn add_member(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
    ) -> Result<Membership> {
        authorize_membership_change(
            ctx,
            user,
            MembershipChange {
                before: None,
                after: Some(role),
            },
        )?;
        let membership = Membership {
            user_id: user,
            organization_id: ctx.org(),
            role,
            created_at: self.now(),
        };
        self.inner.store.add_member(&membership).await?;
        Ok(membership)
    }

    /// Changes `user`'s role in the active organization, following the role
    /// rules in [`context`](crate::context). Breaking a rule is
    /// `PermissionDenied`; a concurrent change to the same member is
    /// `Conflict`.
    pub async fn change_role(
        &self,
        ctx: &TenantContext,
        user: UserId,
        role: Role,
    ) -> Result<Membership> {
        let current = self.current_role(ctx, user).await?;
        authorize_membership_change(
            ctx,
            user,
            MembershipChange {
                before: Some(current),
                after: Some(role),
            },
        )?;
        let result = self
            .inner
            .store
            .set_member_role(ctx.org(), user, current, role)
            .await;
        self.inner.memberships.invalidate(&(ctx.org(), user));
        result
    }

    /// Removes `user` from the active organization. Their next
    /// [`context`](Self::context) call fails.
    pub async fn remove_member(&self, ctx: &TenantContext, user: UserId) -> Result<()> {
        let current = self.current_role(ctx, user).await?;
        authorize_membership_change(
            ctx,
            user,
            MembershipChange {
                before: Some(current),
                after: None,
            },
        )?;
        let result = self
            .inner
            .store
            .remove_member(ctx.org(), user, current)
            .await;
        self.inner.memberships.invalidate(&(ctx.org(), user));
        result
    }

    /// Leaves the active organization. The last owner cannot leave.
    pub async fn leave(&self, ctx: &TenantContext) -> Result<()> {
        self.remove_member(ctx, ctx.user()).await
    }

    async fn current_role(&self, ctx: &TenantContext, user: UserId) -> Result<Role> {
        let membership = self.inner.store.membership(ctx.org(), user).await?;
        membership
            .map(|m| m.role)
            .ok_or_else(|| crate::store::not_a_member(ctx.org(), user))
    }
}
