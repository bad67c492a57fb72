//! The facade as the recorder's write path: [`Tenancy`] plugged into a
//! [`UsageRecorder`] through the recorder's `UsageSink`, and the
//! constructor that does it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Tenancy;
use super::metering::PreparedUsage;
use crate::error::Result;
use crate::model::UsageEvent;
use crate::recorder::{PreparedBatch, RecorderBuilder, UsageRecorder, UsageSink};
use crate::store::Backend;
use crate::store::{Principal, RecordOutcome};

impl UsageRecorder {
    /// A builder recording through `tenancy` (its store, time zones, limits
    /// and alerts); [`start`](RecorderBuilder::start) it.
    pub fn builder(tenancy: Tenancy) -> RecorderBuilder {
        RecorderBuilder::new(Arc::new(tenancy))
    }
}

#[async_trait]
impl UsageSink for Tenancy {
    fn now(&self) -> DateTime<Utc> {
        Tenancy::now(self)
    }

    fn principal(&self) -> Principal {
        self.store().principal()
    }

    async fn prepare(&self, events: &[UsageEvent]) -> Result<Box<dyn PreparedBatch>> {
        let usage = self.prepare_usage(events.iter().cloned(), false).await?;
        Ok(Box::new(Prepared {
            tenancy: self.clone(),
            usage,
        }))
    }

    async fn flush_alerts(&self) {
        Tenancy::flush_alerts(self).await;
    }
}

struct Prepared {
    tenancy: Tenancy,
    usage: PreparedUsage,
}

#[async_trait]
impl PreparedBatch for Prepared {
    async fn write(&self) -> Result<RecordOutcome> {
        self.tenancy.write_usage(&self.usage).await
    }
}
