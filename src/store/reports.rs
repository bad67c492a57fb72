//! [`ReportStore`]: usage history for billing: reports from rollups, the
//! event log's reads, exports and retention.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, the SQL store, the routing below) import none.
method_list!($ report_store_methods {
    fn usage_report(query: &crate::model::report::ReportQuery) -> crate::error::Result<crate::model::report::ReportPage>;
    fn usage_costs(query: &crate::model::report::CostQuery) -> crate::error::Result<crate::model::report::CostPage>;
    fn usage_events(query: &crate::model::report::EventQuery) -> crate::error::Result<crate::model::report::EventPage>;
    fn usage_event(org: crate::ids::OrgId, id: crate::ids::EventId) -> crate::error::Result<Option<crate::model::report::RecordedEvent>>;
    fn reconcile_rollups(query: &crate::model::report::RollupReconcileQuery) -> crate::error::Result<Vec<crate::model::report::RollupDrift>>;
    fn repair_rollups(query: &crate::model::report::RollupReconcileQuery) -> crate::error::Result<Vec<crate::model::report::RollupDrift>>;
    fn set_billing_customer(org: crate::ids::OrgId, stripe_customer_id: Option<&str>) -> crate::error::Result<()>;
    fn billing_customer(org: crate::ids::OrgId) -> crate::error::Result<Option<String>>;
    fn claim_export(claim: &crate::model::report::ExportClaim) -> crate::error::Result<Option<crate::model::report::ExportBatch>>;
    fn ack_export(ack: &crate::model::report::ExportAck) -> crate::error::Result<bool>;
    fn drop_usage_events(before: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::model::report::RetentionOutcome>;
});

/// Usage history: reports from rollups kept with every record, the event
/// log's reads, exports and retention.
///
/// An optional capability, outside the [`Store`](super::Store) bundle: a
/// backend that has it returns itself from [`Backend::reports`].
///
/// # Rollups
///
/// Every new event (never a duplicate: rollups are kept by the record
/// primitive, in its transaction, for the events it inserts) adds to the
/// rollups of its hour in the organization's time zone: per (hour, user,
/// provider, model, operation, metric) the amount and the number of
/// events; per (hour, user, provider, model, operation, cost provenance)
/// the token classes, the cost and the number of events. Reports and cost
/// rows read rollups only, so their speed does not depend on the event
/// log's size, and they still answer after retention dropped the events.
///
/// Reads name one organization and return only its usage; the per-user
/// rule (members and viewers see only their own usage) is the caller's:
/// the facade enforces it, and the SQL entry points enforce it with RLS.
#[async_trait]
pub trait ReportStore: Backend {
    /// One page of a report ([`ReportQuery`](crate::model::report::ReportQuery)):
    /// per bucket of the query's granularity in the organization's time
    /// zone and per group, the sums of the rollups whose hour starts in
    /// `[from, to)` and that the filter keeps; rows ordered by
    /// [`ReportCursor`](crate::model::report::ReportCursor) order, strictly
    /// after `query.after`, at most `query.limit`, `next` set when more
    /// rows follow. A group with no usage has no row. `InvalidInput` for a
    /// query that does not validate; `NotFound` if the organization does
    /// not exist.
    async fn usage_report(
        &self,
        query: &crate::model::report::ReportQuery,
    ) -> crate::error::Result<crate::model::report::ReportPage>;

    /// One page of token rows for repricing
    /// ([`CostQuery`](crate::model::report::CostQuery)): as
    /// [`usage_report`](Self::usage_report), but grouped always by provider
    /// and model (plus operation and user when asked) and by cost
    /// provenance, each row with its token classes, cost and event count.
    /// Rows are ordered by bucket, key, then provenance (`None` first, then
    /// `Provider`, then price-table rows by provider, model, effective date
    /// and table); a page may end inside a bucket and key: the next page
    /// starts at the next bucket and key, so a page holds every provenance
    /// row of each of its keys (a page may exceed `limit` by the provenance
    /// rows of its last key).
    async fn usage_costs(
        &self,
        query: &crate::model::report::CostQuery,
    ) -> crate::error::Result<crate::model::report::CostPage>;

    /// One page of the organization's events in `[from, to)` that the
    /// filter keeps, ordered by (`occurred_at`, `id`), strictly after
    /// `query.after`. `InvalidInput` for a query that does not validate.
    /// Events dropped by retention are gone.
    async fn usage_events(
        &self,
        query: &crate::model::report::EventQuery,
    ) -> crate::error::Result<crate::model::report::EventPage>;

    /// One event of the organization, if it is stored (`None` for another
    /// organization's event).
    async fn usage_event(
        &self,
        org: crate::ids::OrgId,
        id: crate::ids::EventId,
    ) -> crate::error::Result<Option<crate::model::report::RecordedEvent>>;

    /// Compares the organization's metric rollups of the hours starting in
    /// `[from, to)` with the event log, and returns those that differ in
    /// amount or event count, ordered by hour, user (`None` first),
    /// provider, model, operation, metric. Reads only. `InvalidInput`
    /// naming `to` unless `from` is before `to`
    /// ([`RollupReconcileQuery::validate`](crate::model::report::RollupReconcileQuery::validate)),
    /// naming `from` if the range starts before what retention dropped (the
    /// log no longer holds those events); empty for an unknown
    /// organization.
    async fn reconcile_rollups(
        &self,
        query: &crate::model::report::RollupReconcileQuery,
    ) -> crate::error::Result<Vec<crate::model::report::RollupDrift>>;

    /// Sets every rollup (metric and token rollups) of the range to what
    /// the event log sums to, in one atomic step that excludes recording
    /// in the organization, and returns the metric drift it corrected (as
    /// [`reconcile_rollups`](Self::reconcile_rollups) would have). A retry
    /// finds nothing left. `NotFound` for an unknown organization.
    async fn repair_rollups(
        &self,
        query: &crate::model::report::RollupReconcileQuery,
    ) -> crate::error::Result<Vec<crate::model::report::RollupDrift>>;

    /// Maps the organization to the host's Stripe customer (`None` removes
    /// the mapping). Only mapped organizations are exported.
    /// `InvalidInput` naming `stripe_customer_id` for a malformed id;
    /// `NotFound` for an unknown organization.
    async fn set_billing_customer(
        &self,
        org: crate::ids::OrgId,
        stripe_customer_id: Option<&str>,
    ) -> crate::error::Result<()>;

    /// The organization's Stripe customer, if mapped.
    async fn billing_customer(
        &self,
        org: crate::ids::OrgId,
    ) -> crate::error::Result<Option<String>>;

    /// Claims the meter's next export batch
    /// ([`ExportClaim`](crate::model::report::ExportClaim) says what): the
    /// pending batch again if one is unacknowledged, else a new one with
    /// the next id, or `None` when nothing is left to export. Items below
    /// one unit are in the batch (they carry their remainder) but produce
    /// no meter event. Each item's `amount` is the hour's rollup amount
    /// less what earlier batches of this meter exported for that hour; the
    /// units and remainder chain through the organization's items in order
    /// from the remainder its last acknowledged batch left. Amounts become
    /// exported (and remainders carried) only when the batch is
    /// acknowledged. Items are claimed only for organizations with a
    /// billing customer; the first claim after an organization is mapped
    /// exports every not-yet-exported hour its rollups hold.
    async fn claim_export(
        &self,
        claim: &crate::model::report::ExportClaim,
    ) -> crate::error::Result<Option<crate::model::report::ExportBatch>>;

    /// Acknowledges the meter's pending batch `ack.batch`: `true` when it
    /// was pending and is now exported; `false` when it was already
    /// acknowledged (a retried ack). `NotFound` for a batch never claimed.
    async fn ack_export(&self, ack: &crate::model::report::ExportAck)
    -> crate::error::Result<bool>;

    /// Drops every organization's events that occurred before `before`
    /// from the event log (on a log partitioned by month: the months that
    /// end at or before it), keeping rollups, counters and the dedupe of
    /// event ids, so reports over those periods still answer and a
    /// dropped event recorded again still counts once.
    async fn drop_usage_events(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::Result<crate::model::report::RetentionOutcome>;
}

forward_capability!(ReportStore, report_store_methods);

/// The answer where a store has no usage history: `Unsupported`.
pub(crate) fn unsupported() -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::Unsupported,
        "this store has no usage history (Backend::reports is None)",
    )
}

/// `impl ReportStore for DynStore` from the method list: each call goes to
/// the store's [`Backend::reports`], or is `Unsupported`.
macro_rules! routed_through_backend {
    (; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        /// Any [`Store`](super::Store) answers report calls through its
        /// [`Backend::reports`]: the capability when it has one,
        /// `Unsupported` otherwise. Wrappers that hold a
        /// [`DynStore`](super::DynStore) (fault injection) pass calls on
        /// this way.
        #[async_trait]
        impl ReportStore for super::DynStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    match self.reports() {
                        Some(reports) => reports.$name($($arg),*).await,
                        None => Err(unsupported()),
                    }
                }
            )*
        }
    };
}

report_store_methods!(routed_through_backend! {});

#[cfg(any(feature = "test-util", feature = "supabase", feature = "postgres"))]
pub(crate) use report_store_methods;
