//! [`LeaseStore`]: budget leases: slices of an organization's remaining budget an instance decides on locally.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::limits::lease::{LeaseDrift, LeaseGrant, LeaseRequest};

use super::{Backend, ReconcileQuery};

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ lease_store_methods {
    fn lease_budget(request: &crate::limits::lease::LeaseRequest) -> crate::error::Result<crate::limits::lease::LeaseGrant>;
    fn reconcile_leases(query: &crate::store::ReconcileQuery) -> crate::error::Result<Vec<crate::limits::lease::LeaseDrift>>;
    fn repair_leases(query: &crate::store::ReconcileQuery) -> crate::error::Result<Vec<crate::limits::lease::LeaseDrift>>;
});

/// Budget leases: slices of an organization's remaining budget an instance decides on locally.
///
/// An optional capability, outside the [`Store`](super::Store) bundle: a
/// backend that has it returns itself from [`Backend::leases`].
///
/// # The invariant
///
/// A live lease (one whose `expires_at` is after the `now` of the call that
/// reads it) counts its outstanding amount, `granted − consumed`, as held
/// against every hard limit that applies to its user and metric in its
/// periods — in [`reserve`](super::MeteringStore::reserve),
/// [`usage_snapshot`](super::MeteringStore::usage_snapshot) (in each
/// limit's and counter's `reserved`) and here — so `used + held + leased ≤
/// limit` holds for every hard limit whoever decides, as long as every
/// decision on a lease stays within it. An expired lease counts nothing,
/// whether or not it was deleted.
///
/// Usage decided on a lease reaches the store as ordinary usage events
/// (through [`record_usage`](super::MeteringStore::record_usage), e.g. a
/// [`UsageRecorder`](crate::UsageRecorder)) whose metadata names the lease
/// under [`LEASE_METADATA_KEY`](crate::limits::lease::LEASE_METADATA_KEY):
/// recording such an event the first time (by its id) adds its amount of the
/// lease's metric to the lease's `consumed`, in the same atomic step that
/// adds it to the counters, when the event's organization and user are the
/// lease's. A duplicate event changes neither.
#[async_trait]
pub trait LeaseStore: Backend {
    /// Takes, renews, grows, shrinks or returns the lease `request.id`, in
    /// one atomic step, serialized with [`reserve`](super::MeteringStore::reserve)
    /// for the same organization and metric:
    ///
    /// 1. `base = max(request.spoken_for, consumed)` (`consumed` 0 for a new
    ///    lease) stays covered; whatever the lease covered beyond it is
    ///    returned;
    /// 2. the headroom is the least, over the hard limits that apply
    ///    (org-wide and `request.user`'s, for the metric, in the lease's
    ///    periods), of `limit − used − held − leased`, where `leased`
    ///    counts every other live lease and `base − consumed` for this one;
    /// 3. `free = lease_grant(want, min, share, headroom)`
    ///    ([`lease_grant`](crate::limits::lease::lease_grant)), and the lease
    ///    now covers `granted = base + free` until `request.expires_at`.
    ///
    /// May delete the organization's leases that expired at or before
    /// `request.purge_before`. `NotFound` if the organization does not
    /// exist; `Conflict` if a lease with this id exists for another user,
    /// metric or periods; `InvalidInput` for a bad amount or share.
    async fn lease_budget(&self, request: &LeaseRequest) -> Result<LeaseGrant>;

    /// The leases of `query.org` in `query.period` whose `consumed`
    /// disagrees with the event log, ordered by lease id. Reads only; empty
    /// when all agree or when the organization does not exist.
    ///
    /// **Scope**: every lease the store keeps for the organization (live or
    /// expired, until purged) whose period of `query.period`'s kind starts
    /// at `query.period.start` (its daily period for a daily query, its
    /// monthly period for a monthly one), of `query.metric` when it is set.
    /// A lease's expiry does not matter: an expired lease counts nothing,
    /// but it keeps its `consumed` into a renewal until it is purged.
    ///
    /// **Recomputation**: a lease's `recomputed` is the sum, over the
    /// organization's recorded events whose metadata names the lease under
    /// [`LEASE_METADATA_KEY`](crate::limits::lease::LEASE_METADATA_KEY) and
    /// whose user is the lease's, of their amount of the lease's metric:
    /// the rule recording applies, summed over the whole log instead of
    /// added event by event (whichever periods the events counted in). The
    /// SQL stores sum their event log, so an event they no longer keep
    /// (retention dropped its month) is missed, and an event recorded
    /// naming the lease before the lease was taken, which recording did not
    /// count, is counted; `MemoryStore` sums the events it recorded under
    /// each lease, which agree with its `consumed` unless that was changed
    /// behind its back. Neither case arises for the leases a
    /// [`LeasedMeter`](crate::LeasedMeter) takes: fresh ids, live minutes.
    async fn reconcile_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>>;

    /// Sets the `consumed` of every lease that
    /// [`reconcile_leases`](Self::reconcile_leases) finds drifting to its
    /// `recomputed`, and returns the drift it corrected, in one atomic
    /// step; `granted` and `expires_at` stay, so a live lease holds
    /// `granted − recomputed` from then on. It excludes recording in the
    /// organization as [`repair_usage`](super::MeteringStore::repair_usage)
    /// does: a record in progress is waited for and its events counted; a
    /// record that starts meanwhile waits and then adds to the repaired
    /// value; so no consumption is lost or counted twice. A retry of a
    /// repair that landed finds nothing left and returns an empty list.
    /// `NotFound` if the organization does not exist.
    async fn repair_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>>;
}

forward_capability!(LeaseStore, lease_store_methods);

/// `store`'s leases, or `Unsupported` (never a per-process lease).
pub(crate) fn capability<B: Backend + ?Sized>(store: &B) -> Result<&dyn LeaseStore> {
    store.leases().ok_or_else(crate::limits::lease::unsupported)
}

/// Any [`Store`](super::Store) answers lease calls through its
/// [`Backend::leases`]: the capability when it has one, `Unsupported`
/// otherwise (never a per-process lease). Wrappers that hold a
/// [`DynStore`](super::DynStore) (fault injection) pass calls on this way.
#[async_trait]
impl LeaseStore for super::DynStore {
    async fn lease_budget(&self, request: &LeaseRequest) -> Result<LeaseGrant> {
        capability(self)?.lease_budget(request).await
    }

    async fn reconcile_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>> {
        capability(self)?.reconcile_leases(query).await
    }

    async fn repair_leases(&self, query: &ReconcileQuery) -> Result<Vec<LeaseDrift>> {
        capability(self)?.repair_leases(query).await
    }
}

#[cfg(any(feature = "test-util", feature = "supabase", feature = "postgres"))]
pub(crate) use lease_store_methods;
