//! Where a recorder's batches go, as the recorder sees it: the facade's
//! write path behind a trait, so that the recorder sits below the facade
//! and the facade plugs itself in (`tenancy/recording.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::UsageEvent;
use crate::store::{Principal, RecordOutcome};

/// The write path a recorder delivers through: the same one as
/// [`Tenancy::record_usage_batch`](crate::Tenancy::record_usage_batch), so
/// counters, limits and alerts see recorded usage exactly as they see the
/// request path's.
#[async_trait]
pub(crate) trait UsageSink: Send + Sync + std::fmt::Debug + 'static {
    /// The current time: the time of events without one, and of their ids.
    fn now(&self) -> DateTime<Utc>;

    /// Who the store acts as; recording needs the service role.
    fn principal(&self) -> Principal;

    /// Validates `events` and resolves them (time zones, limits) into a
    /// batch ready to write. Their times were checked when recorded and
    /// are not checked again: a spooled event may be older by now.
    async fn prepare(&self, events: &[UsageEvent]) -> Result<Box<dyn PreparedBatch>>;

    /// Returns once the alert checks queued so far are delivered.
    async fn flush_alerts(&self);
}

/// A batch [`UsageSink::prepare`] made ready: writing it again after a
/// failure resends the same records, which the store counts once.
#[async_trait]
pub(crate) trait PreparedBatch: Send + Sync {
    /// Writes the batch in one store call.
    async fn write(&self) -> Result<RecordOutcome>;
}
