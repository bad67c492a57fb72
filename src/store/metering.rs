//! [`MeteringStore`]: recording usage, reading it, and holds.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::limits::UsageSnapshot;
use crate::model::UsageRecord;

use super::{
    Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue, HistoryQuery,
    ReconcileQuery, RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, UsageQuery,
};

/// Usage: the atomic primitives — record idempotently, read counters, and check-and-reserve, commit and release holds.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names.
#[async_trait]
pub trait MeteringStore: Backend {
    /// Records a batch of usage, idempotently by (organization, event id):
    /// an event already stored is skipped and its amounts are not counted
    /// again. For each new event, every one of its `amounts` (as given: a
    /// store never derives amounts itself) is added to the org-wide
    /// counters and, when the event has a user, to that user's, for the
    /// daily and monthly periods in the record. All of a batch is applied
    /// or none. `NotFound` if an organization does not exist;
    /// `InvalidInput` naming `occurred_at` for a new event that occurred
    /// before what [`ReportStore::drop_usage_events`] dropped (it would
    /// bring a dropped period back; an event already stored is still a
    /// duplicate).
    ///
    /// [`ReportStore::drop_usage_events`]: super::ReportStore::drop_usage_events
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome>;

    /// The applicable limits with their usage, and the counters in scope;
    /// `reserved` counts unexpired holds and live leases.
    async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot>;

    /// Recorded usage per counter and period between two period starts
    /// (both included), ordered by period start, metric, then scope.
    async fn usage_history(&self, query: &HistoryQuery) -> Result<Vec<CounterValue>>;

    /// Check-and-reserve in one atomic step: reads every applicable limit
    /// (org-wide and the user's, for the metric, in the request's periods)
    /// with its usage and unexpired holds (and, on a backend with
    /// [`LeaseStore`](super::LeaseStore), live leases' outstanding amounts,
    /// as held), and writes the hold only if the
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

    /// Compares the counters of `query.org` in `query.period` (one metric
    /// or all) with the event log: for each scope (org-wide, and each user)
    /// and metric, the counter's `used` against the sum of the `amounts` of
    /// the recorded events counted in that period (org-wide: every event of
    /// the organization; a user's: that user's events). Returns the
    /// counters that differ, ordered by scope (org-wide first, then users
    /// by id), then metric; a missing counter counts 0 and a counter
    /// without events recomputes to 0. Reads only; empty when all agree or
    /// when the organization does not exist. Holds are not counters and
    /// never drift.
    async fn reconcile_usage(&self, query: &ReconcileQuery) -> Result<Vec<CounterDrift>>;

    /// Sets every counter that [`reconcile_usage`](Self::reconcile_usage)
    /// finds drifting to what the event log sums to (creating a missing
    /// one, zeroing an orphan; deleting nothing) and returns the drift it
    /// corrected, in one atomic step. It excludes recording in the
    /// organization while it runs: a concurrent `record_usage` or
    /// `commit_reservation` for the organization waits until the repair is
    /// done and then adds its amounts to the repaired counters, and a
    /// repair that starts while a record is in progress waits for it and
    /// then sees its events; so no recorded amount is lost or counted
    /// twice. A retry of a repair that landed finds nothing left to
    /// correct and returns an empty list. `NotFound` if the organization
    /// does not exist.
    async fn repair_usage(&self, query: &ReconcileQuery) -> Result<Vec<CounterDrift>>;
}

forward_capability!(MeteringStore, metering_store_methods);
