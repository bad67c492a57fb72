//! `ReportStore` for [`MemoryStore`]: rollups kept with every record, the
//! event log's reads, exports and retention, under the one lock.

use async_trait::async_trait;

use crate::model::UsageRecord;
use crate::store::ReportStore;

use super::MemoryStore;

/// What the usage history keeps beside the counters.
#[derive(Debug, Default)]
pub(super) struct ReportState {}

impl ReportState {
    /// Keeps what a batch's new events add to the history: called by the
    /// record path, under the lock, after the batch is accepted, with the
    /// events that were new (never a duplicate).
    pub(super) fn record(&mut self, _fresh: &[&UsageRecord]) {}
}

#[async_trait]
impl ReportStore for MemoryStore {}
