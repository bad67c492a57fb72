//! The service's handle: what a back end does without a user.

use super::Tenancy;
use crate::error::Result;
use crate::ids::OrgId;
use crate::model::{Organization, UsageEvent};
use crate::recorder::{RecorderBuilder, UsageRecorder};
use crate::store::RecordOutcome;

/// What a back-end service does on its own authority, without a user's
/// [`TenantContext`](crate::TenantContext): record usage for any
/// organization, look organizations up by id or slug, and build a
/// [`UsageRecorder`]. From [`Tenancy::service`].
///
/// Recording needs a store acting as the service role
/// ([`Principal::Service`](crate::store::Principal::Service)); with a
/// user's store it is `PermissionDenied`.
///
/// ```
/// use rust_decimal_macros::dec;
/// use tenancy::{MemoryStore, NewOrganization, Tenancy, UsageEvent, UserId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// let acme = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
///
/// let service = tenancy.service();
/// let outcome = service.record_usage(UsageEvent::new(acme.id).tokens(1_200, 0, 300)).await?;
/// assert_eq!(outcome.inserted, 1);
/// assert_eq!(service.organization_by_slug("acme").await?.map(|o| o.id), Some(acme.id));
/// # let _ = dec!(0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    tenancy: &'a Tenancy,
}

impl<'a> Service<'a> {
    pub(super) fn new(tenancy: &'a Tenancy) -> Self {
        Service { tenancy }
    }

    /// Records one usage event: validates it (its time included: see
    /// [`UsageEvent`]), fills in its id and time, and adds its amounts to
    /// every applicable counter atomically. The same event id twice counts
    /// once.
    pub async fn record_usage(&self, event: UsageEvent) -> Result<RecordOutcome> {
        self.tenancy.record_usage_batch(vec![event]).await
    }

    /// Records a batch of usage events in one store call, all or nothing.
    /// Every event is validated before anything is written.
    pub async fn record_usage_batch(&self, events: Vec<UsageEvent>) -> Result<RecordOutcome> {
        self.tenancy.record_usage_batch(events).await
    }

    /// The organization with this id, if any.
    pub async fn organization(&self, id: OrgId) -> Result<Option<Organization>> {
        self.tenancy.organization(id).await
    }

    /// The organization with this slug, if any. An invalid slug is
    /// `InvalidInput`.
    pub async fn organization_by_slug(&self, slug: &str) -> Result<Option<Organization>> {
        self.tenancy.organization_by_slug(slug).await
    }

    /// A builder of a [`UsageRecorder`] recording through this `Tenancy`
    /// (its store, time zones, limits and alerts); [`start`](RecorderBuilder::start) it.
    pub fn recorder(&self) -> RecorderBuilder {
        UsageRecorder::builder(self.tenancy.clone())
    }
}
