//! The billing exporter: claims a meter's not-yet-exported usage, delivers
//! it as Stripe meter events through a [`MeterSink`], and acknowledges it.
//!
//! # Exactly once, across crashes
//!
//! A claim turns the not-yet-exported amount of each organization's hour
//! into an item with a deterministic `identifier` and stores it as the
//! meter's pending batch. Until that batch is acknowledged every claim
//! returns it again, unchanged: a process that dies mid-delivery resends
//! the same events with the same identifiers on its next run, and Stripe
//! (which dedupes by identifier) counts each once. The ack marks the
//! amounts exported in one step; usage recorded later in an exported hour
//! is a new delta with a new identifier.
//!
//! # Stripe's limits
//!
//! Stripe's `POST /v1/billing/meter_events` allows 1,000 calls per second
//! in live mode, and one concurrent call per customer and meter. The
//! exporter calls the sink for one event at a time, never concurrently (so
//! never two calls in flight for any customer and meter), and spaces calls
//! at most [`ExportOptions::calls_per_second`] apart (default 100, at most
//! 1,000). Run one exporter per meter: two would deliver the same pending
//! batch at once, which Stripe dedupes but which breaks the
//! one-call-per-customer-and-meter rule.

use std::time::Duration;

use chrono::TimeDelta;

use crate::error::Result;
use crate::model::report::{ExportAck, ExportClaim, ExportOptions, ExportRun, Meter, MeterSink};
use crate::tenancy::Operator;

impl Operator<'_> {
    /// Exports `meter` through `sink` until nothing is left (or
    /// `options.max_batches` batches): claim a batch (the pending one
    /// again after a crash), send its meter events one at a time, paced to
    /// `options.calls_per_second`, then acknowledge it. Only hours that
    /// ended at least `options.settle_secs` ago are claimed. A sink error
    /// stops the run and is returned; the batch stays pending and the next
    /// run sends all of it again (same identifiers). Returns what the run
    /// did. Call it from a periodic job (every few minutes).
    pub async fn export_meter(
        &self,
        meter: &Meter,
        sink: &dyn MeterSink,
        options: &ExportOptions,
    ) -> Result<ExportRun> {
        meter.validate()?;
        options.validate()?;
        let store = self.history_store()?;
        let interval = Duration::from_secs(1) / options.calls_per_second;
        let mut next_call = tokio::time::Instant::now();
        let mut run = ExportRun::default();
        loop {
            if options
                .max_batches
                .is_some_and(|max| run.batches >= u64::from(max))
            {
                break;
            }
            let now = self.tenancy.now();
            let claim = ExportClaim {
                meter: meter.clone(),
                up_to: now - TimeDelta::seconds(i64::from(options.settle_secs)),
                max_items: options.batch_size,
                now,
            };
            let Some(batch) = store.claim_export(&claim).await? else {
                break;
            };
            for event in batch.meter_events() {
                tokio::time::sleep_until(next_call).await;
                next_call = tokio::time::Instant::now() + interval;
                sink.send(&event).await?;
                run.events_sent += 1;
            }
            store
                .ack_export(&ExportAck {
                    event_name: meter.event_name.clone(),
                    batch: batch.id,
                    now: self.tenancy.now(),
                })
                .await?;
            run.batches += 1;
            run.items += batch.items.len() as u64;
        }
        Ok(run)
    }
}
