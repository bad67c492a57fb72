//! The storage trait every backend implements, and its contract.
//!
//! A [`Store`] holds the minimum: reads and writes of the tables, and the
//! atomic primitives that cannot be built from reads and writes without
//! races — creating an organization with its owner, changing a membership
//! by compare-and-set without losing the last owner, changing one feature
//! field, recording usage idempotently from the amounts the core computed,
//! check-and-reserve against every applicable limit, committing a hold that
//! exists, and claiming an alert once. Policy — roles, periods, thresholds,
//! caching, what an event counts — lives in [`Tenancy`](crate::Tenancy), not
//! here. Stores never read the clock; the core passes `now` in.
//!
//! Every backend must pass the store-contract suite (`store::contract`,
//! feature `test-util`), which calls these methods directly.
//!
//! Conveniences do not belong on the trait: there are no default methods
//! for a backend to get wrong, and the `Arc`/`Box` forwarding impls are
//! generated from one list of the methods (and deny
//! `clippy::missing_trait_methods`), so they cannot drift from it.

mod errors;
#[macro_use]
mod forward;
mod types;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod contract;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit};
pub use crate::limits::{CounterUsage, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};

pub(crate) use errors::{not_a_member, org_not_found};
#[cfg(feature = "test-util")]
pub(crate) use forward::with_store_methods;
pub use types::{
    CommitOutcome, CommitRequest, CounterScope, CounterValue, HistoryQuery, OrgQuery, Principal,
    RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, UsageQuery,
};

/// A store behind a pointer: what [`Tenancy`](crate::Tenancy) holds.
pub type DynStore = dyn Store;

/// The storage a [`Tenancy`](crate::Tenancy) runs on.
///
/// Implementations must make each method atomic on its own, as documented,
/// and must keep organizations apart: no method reads or writes rows of an
/// organization other than the one it names.
#[async_trait]
pub trait Store: Debug + Send + Sync + 'static {
    /// Whom this store's calls run as. A [`UsageRecorder`](crate::UsageRecorder)
    /// refuses to start on a store that is not [`Principal::Service`].
    fn principal(&self) -> Principal;

    // ---- organizations -------------------------------------------------

    /// Inserts `org` and, when `org.owner_user_id` is set, makes that user
    /// its owner, atomically, and returns the organization as stored: a
    /// backend may assign the id and creation time itself (Supabase does
    /// for a user's JWT). `AlreadyExists` if the slug (or id) is taken.
    async fn create_organization(&self, org: &Organization) -> Result<Organization>;

    /// The organization with this id.
    async fn organization(&self, id: OrgId) -> Result<Option<Organization>>;

    /// The organization with this slug.
    async fn organization_by_slug(&self, slug: &Slug) -> Result<Option<Organization>>;

    /// A page of organizations, by name then id, optionally only those whose
    /// name or slug contains `query.search` (ignoring the case of ASCII
    /// letters only, as PostgreSQL's `lower` in the "C" collation does).
    async fn list_organizations(&self, query: &OrgQuery) -> Result<Vec<Organization>>;

    /// Renames an organization. `NotFound` if it does not exist.
    async fn rename_organization(&self, id: OrgId, name: &str) -> Result<Organization>;

    /// Deletes an organization and everything that belongs to it. Whether it
    /// existed.
    async fn delete_organization(&self, id: OrgId) -> Result<bool>;

    // ---- memberships ---------------------------------------------------

    /// A user's membership in an organization, with the organization.
    async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<OrgMembership>>;

    /// Every organization the user belongs to, with their role.
    async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>>;

    /// The members of an organization, by user id.
    async fn members(&self, org: OrgId) -> Result<Vec<Membership>>;

    /// Adds a member. `NotFound` if the organization does not exist,
    /// `AlreadyExists` if the user is already a member.
    async fn add_member(&self, membership: &Membership) -> Result<()>;

    /// Changes a member's role from `expected` to `role`, atomically.
    /// `NotFound` if not a member; `Conflict` if their role is no longer
    /// `expected`; `PermissionDenied` if it would leave no owner.
    async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership>;

    /// Removes a member whose role is `expected`, atomically. `NotFound` if
    /// not a member; `Conflict` if their role is no longer `expected`;
    /// `PermissionDenied` if they are the last owner.
    async fn remove_member(&self, org: OrgId, user: UserId, expected: Role) -> Result<()>;

    // ---- features ------------------------------------------------------

    /// Every feature row of an organization, by key.
    async fn features(&self, org: OrgId) -> Result<Vec<Feature>>;

    /// Applies `change` to one feature row in one atomic step (creating the
    /// row, disabled with a `null` config, if there is none), stamps it
    /// `now`, and returns the row as stored. Only the fields the change
    /// names are written, so concurrent changes of different fields both
    /// land. `NotFound` if the organization does not exist.
    async fn update_feature(
        &self,
        org: OrgId,
        key: &FeatureKey,
        change: &FeatureChange,
        now: DateTime<Utc>,
    ) -> Result<Feature>;

    /// Deletes one feature row; whether it existed.
    async fn delete_feature(&self, org: OrgId, key: &FeatureKey) -> Result<bool>;

    // ---- limits --------------------------------------------------------

    /// The organization's limits, by creation time then id.
    async fn limits(&self, org: OrgId) -> Result<Vec<Limit>>;

    /// Sets a limit: replaces the value and mode of the existing limit with
    /// the same (org, scope, metric, period), keeping its id and creation
    /// time, or inserts `limit`. Returns the stored limit. `NotFound` if the
    /// organization does not exist.
    async fn put_limit(&self, limit: &Limit) -> Result<Limit>;

    /// Deletes a limit; whether it existed.
    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool>;

    // ---- usage: the atomic primitives ----------------------------------

    /// Records a batch of usage, idempotently by (organization, event id):
    /// an event already stored is skipped and its amounts are not counted
    /// again. For each new event, every one of its `amounts` (as given: a
    /// store never derives amounts itself) is added to the org-wide
    /// counters and, when the event has a user, to that user's, for the
    /// daily and monthly periods in the record. All of a batch is applied
    /// or none. `NotFound` if an organization does not exist.
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome>;

    /// The applicable limits with their usage, and the counters in scope.
    async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot>;

    /// Recorded usage per counter and period between two period starts
    /// (both included), ordered by period start, metric, then scope.
    async fn usage_history(&self, query: &HistoryQuery) -> Result<Vec<CounterValue>>;

    /// Check-and-reserve in one atomic step: reads every applicable limit
    /// (org-wide and the user's, for the metric, in the request's periods)
    /// with its usage and unexpired holds, and writes the hold only if the
    /// amount fits under every hard limit. Concurrent calls never overshoot
    /// a hard limit. May delete holds that expired before
    /// `request.purge_before`. `NotFound` if the organization does not exist.
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveResult>;

    /// Commits a hold in one atomic step. If a hold with `request.id` exists
    /// in `request.org` for `request.user` — live or expired, but not yet
    /// committed, released or purged — the usage is recorded (once, by its
    /// id, which is the hold's) in the hold's periods, the hold is dropped,
    /// and `released_hold` says whether it was still live at `request.now`.
    /// If no such hold exists but the event is already recorded (a retried
    /// commit), nothing changes and both flags are false. Otherwise nothing
    /// is recorded: `NotFound` for an unknown hold, `PermissionDenied` for a
    /// hold of another user. `InvalidInput` if the usage's organization or
    /// id is not the request's.
    async fn commit_reservation(&self, request: &CommitRequest) -> Result<CommitOutcome>;

    /// Drops the hold `request.id` of `request.user` in `request.org`;
    /// whether it was live (there and unexpired at `request.now`). A hold
    /// of another user is left alone: `PermissionDenied`.
    async fn release_reservation(&self, request: &ReleaseRequest) -> Result<bool>;

    /// Records that the alert `key` fired. True the first time for a key,
    /// false ever after: exactly one caller wins, however many race.
    async fn claim_alert(&self, key: &AlertKey, fired_at: DateTime<Utc>) -> Result<bool>;
}

forward_store_through!(Arc);
forward_store_through!(Box);
