//! The storage seam: one capability trait per aggregate, the [`Store`]
//! bundle the facade runs on, and their contract.
//!
//! A backend implements the capabilities — [`OrgStore`], [`MemberStore`],
//! [`FeatureStore`], [`LimitStore`], [`MeteringStore`], [`AlertStore`],
//! [`InvitationStore`], [`DomainStore`], [`AuditStore`], [`PlanStore`] — and
//! [`Backend`], which says whom its calls run as. [`Store`] is the bundle of
//! all of them, implemented for every type that has each one: nobody
//! implements it by hand.
//!
//! A capability holds the minimum: reads and writes of its tables, and the
//! atomic primitives that cannot be built from reads and writes without
//! races — creating an organization with its owner, changing a membership
//! by compare-and-set without losing the last owner, changing one feature
//! field, recording usage idempotently from the amounts the core computed,
//! check-and-reserve against every applicable limit, committing a hold that
//! exists, and claiming an alert once. Policy — roles, periods, thresholds,
//! caching, what an event counts — lives in [`Tenancy`](crate::Tenancy), not
//! here. Stores never read the clock; the core passes `now` in.
//!
//! Optional capabilities are traits of their own, outside the bundle, handed
//! to the builder: [`UserDirectory`] (who users are, for pages); or reached
//! through [`Backend`], which answers `None` for one a backend lacks:
//! [`RateLimitStore`], [`LeaseStore`] and [`ReportStore`].
//!
//! Every backend must pass the store-contract suite (`store::contract`,
//! feature `test-util`), which calls these methods directly, one part per
//! capability.
//!
//! Conveniences do not belong on the traits: there are no default methods
//! for a backend to get wrong, and the `Arc`/`Box` forwarding impls are
//! generated from one list of each trait's methods (and deny
//! `clippy::missing_trait_methods`), so they cannot drift from it.

mod errors;
#[macro_use]
mod forward;
mod alerts;
mod audit;
mod directory;
mod domains;
mod features;
mod invitations;
mod leases;
mod limits;
mod members;
mod metering;
mod orgs;
mod plans;
mod rate_limits;
mod reports;
mod types;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod contract;

use std::fmt::Debug;
use std::sync::Arc;

pub use crate::limits::{CounterUsage, UsageSnapshot};

pub use alerts::AlertStore;
pub use audit::AuditStore;
pub(crate) use audit::audit_store_methods;
pub use directory::{MAX_PROFILE_IDS, UserDirectory};
pub use domains::DomainStore;
pub(crate) use domains::domain_store_methods;
pub(crate) use errors::{not_a_member, org_not_found};
pub use features::FeatureStore;
pub(crate) use forward::{
    alert_store_methods, feature_store_methods, limit_store_methods, member_store_methods,
    metering_store_methods, org_store_methods, pass_through_impl,
};
pub use invitations::InvitationStore;
pub(crate) use invitations::invitation_store_methods;
pub use leases::LeaseStore;
pub(crate) use leases::capability as lease_capability;
// Expanded by the wrappers that forward it: the fault injector and the SQL
// store (the facade reaches leases through `Backend::leases`).
#[cfg(any(feature = "test-util", feature = "supabase", feature = "postgres"))]
pub(crate) use leases::lease_store_methods;
pub use limits::LimitStore;
pub use members::MemberStore;
pub use metering::MeteringStore;
pub use orgs::OrgStore;
pub(crate) use plans::plan_store_methods;
pub use plans::{EntitlementWatch, PlanStore};
pub use rate_limits::RateLimitStore;
pub(crate) use rate_limits::rate_limit_store_methods;
pub use reports::ReportStore;
pub(crate) use reports::unsupported as reports_unsupported;
// Expanded by the wrappers that forward it: the fault injector and the SQL
// store (the facade reaches reports through `Backend::reports`).
#[cfg(any(feature = "test-util", feature = "supabase", feature = "postgres"))]
pub(crate) use reports::report_store_methods;
pub use types::{
    CommitOutcome, CommitRequest, CounterDrift, CounterScope, CounterValue, HistoryQuery, OrgQuery,
    Principal, ReconcileQuery, RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult,
    UsageQuery,
};

/// What every capability trait builds on: a backend that can be shared
/// across tasks and says whom its calls run as.
pub trait Backend: Debug + Send + Sync + 'static {
    /// Whom this store's calls run as. A [`UsageRecorder`](crate::UsageRecorder)
    /// refuses to start on a store that is not [`Principal::Service`].
    fn principal(&self) -> Principal;

    /// This store's short-window rate limits, if it has them (`None`: the
    /// facade answers `Unsupported` wherever a rate limit applies, never a
    /// per-process limit of its own).
    fn rate_limits(&self) -> Option<&dyn RateLimitStore>;

    /// This store's budget leases, if it has them (`None`: leasing answers
    /// `Unsupported`).
    fn leases(&self) -> Option<&dyn LeaseStore>;

    /// This store's usage history, if it has it (`None`: reports, event
    /// reads and exports answer `Unsupported`).
    fn reports(&self) -> Option<&dyn ReportStore>;
}

macro_rules! forward_backend {
    ($ptr:ident) => {
        impl<T: Backend + ?Sized> Backend for $ptr<T> {
            fn principal(&self) -> Principal {
                (**self).principal()
            }

            fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
                (**self).rate_limits()
            }

            fn leases(&self) -> Option<&dyn LeaseStore> {
                (**self).leases()
            }

            fn reports(&self) -> Option<&dyn ReportStore> {
                (**self).reports()
            }
        }
    };
}

forward_backend!(Arc);
forward_backend!(Box);

/// The storage a [`Tenancy`](crate::Tenancy) runs on: every capability it
/// needs.
///
/// Implemented for every type that implements each capability trait; never
/// implement it by hand. Each method of each capability is atomic on its
/// own, and keeps organizations apart: no method reads or writes rows of an
/// organization other than the one it names.
pub trait Store:
    Backend
    + OrgStore
    + MemberStore
    + FeatureStore
    + LimitStore
    + MeteringStore
    + AlertStore
    + InvitationStore
    + DomainStore
    + AuditStore
    + PlanStore
{
}

impl<T> Store for T where
    T: Backend
        + OrgStore
        + MemberStore
        + FeatureStore
        + LimitStore
        + MeteringStore
        + AlertStore
        + InvitationStore
        + DomainStore
        + AuditStore
        + PlanStore
        + ?Sized
{
}

/// A store behind a pointer: what [`Tenancy`](crate::Tenancy) holds.
pub type DynStore = dyn Store;
