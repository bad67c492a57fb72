//! The facade: [`Tenancy`], by topic and audience.
//!
//! - for people acting in an organization, through a [`TenantContext`]:
//!   [`orgs`](self) (create, rename, delete), [`members`](self) (contexts,
//!   the org selector, membership changes), [`people`](self) (members'
//!   names and emails), [`invitations`](self) (invite by email or link,
//!   accept, resend, revoke), [`features`](self) (feature
//!   access), [`metering`](self) (limits, reservations, recording);
//!   [`summary`](self) (usage against limits);
//! - for the platform operator: [`Operator`], from [`Tenancy::operator`];
//! - for back-end services: [`Service`], from [`Tenancy::service`]: usage
//!   recording for any organization, organization lookups, and the
//!   [`UsageRecorder`](crate::UsageRecorder) built on them.
//!
//! [`TenantContext`]: crate::TenantContext

mod alerts;
mod audit;
mod builder;
mod cache;
mod domains;
mod features;
#[cfg(feature = "hold-tokens")]
mod hold_token;
mod invitations;
mod leases;
mod members;
mod metering;
mod operator;
mod orgs;
mod people;
mod plans;
mod rate_limits;
mod recording;
mod reports;
mod service;
mod summary;
#[cfg(feature = "webhook")]
pub mod webhook;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;
use crate::error::Result;
use crate::ids::OrgId;
use crate::model::{Organization, PlatformOperator};
use crate::store::UserDirectory;

pub use alerts::{AlertSink, LogAlertSink, MemoryAlertSink};
pub use builder::TenancyBuilder;
#[cfg(feature = "hold-tokens")]
pub use hold_token::HoldToken;
pub use leases::{LeaseShutdown, LeasedMeter, LeasedOutcome, LeasedReservation};
pub use metering::EXPIRED_HOLD_RETENTION;
pub use operator::{MAX_ORG_PAGE, Operator};
pub use service::Service;
pub use summary::{MAX_HISTORY_PERIODS, MemberUsage};

use alerts::AlertQueue;
use cache::CachingStore;

/// The multi-tenant layer: organizations, members, contexts, features,
/// usage and limits over one [`Store`](crate::store::Store).
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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The store behind the facade's caches; every write through it drops
    /// what it changed.
    store: Arc<CachingStore>,
    clock: Arc<dyn Clock>,
    reservation_ttl: TimeDelta,
    alerts: AlertQueue,
    /// Where names and emails come from, if anywhere.
    directory: Option<Arc<dyn UserDirectory>>,
    /// Invitation expiry, accept URL and delivery.
    invitations: invitations::InvitationConfig,
    /// The keys hold tokens are sealed and opened with (`Debug` shows key
    /// ids only).
    #[cfg(feature = "hold-tokens")]
    hold_keys: hold_token::HoldKeys,
}

impl Tenancy {
    /// A builder with default settings.
    pub fn builder() -> TenancyBuilder {
        TenancyBuilder::default()
    }

    /// The store this facade runs on (behind its caches).
    fn store(&self) -> &CachingStore {
        &self.inner.store
    }

    /// The back-end service's handle: usage recording for any
    /// organization, organization lookups by id or slug, and recorders.
    pub fn service(&self) -> Service<'_> {
        Service::new(self)
    }

    /// The platform operator's handle: feature and limit administration for
    /// any organization, and operator views. Every change it makes is
    /// logged (`tracing`, level info) with the operator's name.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// # let org = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
    /// let operator = PlatformOperator::new("admin-cli");
    /// tenancy.operator(&operator).enable_feature(org.id, "veo_avatars").await?;
    /// # Ok(()) }
    /// ```
    pub fn operator<'a>(&'a self, operator: &'a PlatformOperator) -> Operator<'a> {
        Operator::new(self, operator)
    }

    /// Waits until every alert check queued by earlier writes has run and
    /// its alerts have been delivered (or given up on). Writes never wait
    /// for alerts; tests, and workers shutting down, can.
    pub async fn flush_alerts(&self) {
        self.inner.alerts.flush().await;
    }

    /// The time, read once per operation.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The organization, from the cache when fresh. `NotFound` if it does
    /// not exist.
    async fn cached_org(&self, org: OrgId) -> Result<Arc<Organization>> {
        self.inner.store.cached_org(org).await
    }
}
