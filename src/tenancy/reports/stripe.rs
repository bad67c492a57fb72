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
//! Exactly once rests on Stripe's identifier dedupe, which Stripe
//! documents as holding "within a rolling period of at least 24 hours"
//! ([`STRIPE_IDENTIFIER_DEDUPE_WINDOW`]). An event that reached Stripe and
//! is sent again later than that may be counted twice. So the exporter
//! refuses to send again a pending batch claimed 24 hours ago or longer:
//! the run returns a `Conflict` error (not retryable) naming the batch,
//! its meter and its claim time, and sends nothing; later batches wait
//! behind it. Watch the export job's errors. To go on, check in Stripe
//! which of the batch's identifiers it has (the sink's own log, or the
//! customers' meter event summaries), then either run again with
//! [`ExportOptions::resend_stale_batch`] set to the batch's id (Stripe
//! counted none of them, or you accept duplicates), or
//! [`acknowledge_export`](Operator::acknowledge_export) it without sending
//! (Stripe has all of them; send any missing ones yourself first).
//!
//! # Timestamps, stamped at send time
//!
//! Stripe takes a meter event `timestamp` within the past 35 days
//! ([`STRIPE_MAX_EVENT_AGE`]) and at most 5 minutes ahead. An item's
//! [`timestamp`](crate::model::report::ExportItem::timestamp) is its hour's start, or 34 days
//! before the claim when the hour is older; a batch that keeps failing is
//! sent again later, so the exporter stamps each event again as it sends
//! it: [`ExportItem::timestamp_at`] the clock's time `t` just before that
//! send, `max(item timestamp, t − 34 days)`. The 34 days are Stripe's 35
//! less [`EXPORT_TIMESTAMP_MARGIN`], a day for clock skew, pacing and the
//! sink's own retries. The identifier and the value never change; usage of
//! an hour more than 34 days old lands in Stripe at `t − 34 days`. Hour
//! starts are before the claim, so no timestamp is in the future.
//!
//! [`STRIPE_IDENTIFIER_DEDUPE_WINDOW`]: crate::model::report::STRIPE_IDENTIFIER_DEDUPE_WINDOW
//! [`STRIPE_MAX_EVENT_AGE`]: crate::model::report::STRIPE_MAX_EVENT_AGE
//! [`EXPORT_TIMESTAMP_MARGIN`]: crate::model::report::EXPORT_TIMESTAMP_MARGIN
//! [`ExportItem::timestamp_at`]: crate::model::report::ExportItem::timestamp_at
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

use crate::error::{Error, ErrorKind, Result};
use crate::model::report::{
    ExportAck, ExportBatch, ExportClaim, ExportOptions, ExportRun, Meter, MeterSink,
};
use crate::tenancy::Operator;

impl Operator<'_> {
    /// Exports `meter` through `sink` until nothing is left (or
    /// `options.max_batches` batches): claim a batch (the pending one
    /// again after a crash), send its meter events one at a time, paced to
    /// `options.calls_per_second`, then acknowledge it. Only hours that
    /// ended at least `options.settle_secs` ago are claimed. A sink error
    /// stops the run and is returned; the batch stays pending and the next
    /// run sends all of it again (same identifiers and values; each
    /// timestamp stamped again at its send, see the module docs). Returns
    /// what the run did. Call it from a periodic job (every few minutes).
    ///
    /// A pending batch claimed 24 hours ago or longer
    /// ([`ExportBatch::is_past_dedupe_window`]), beyond Stripe's identifier
    /// dedupe, is not sent: `Conflict` (not retryable) naming the batch,
    /// unless `options.resend_stale_batch` names it.
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
            if batch.is_past_dedupe_window(now) && options.resend_stale_batch != Some(batch.id) {
                return Err(stale(&batch));
            }
            for item in &batch.items {
                tokio::time::sleep_until(next_call).await;
                let Some(event) = item.meter_event(&batch.event_name, self.tenancy.now()) else {
                    continue;
                };
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

    /// Marks `meter`'s batch `batch` delivered without sending anything:
    /// its amounts count as exported and its remainders are carried, as
    /// after [`export_meter`](Self::export_meter) sent it. For a pending
    /// batch the exporter refused (claimed 24 hours ago or longer) once
    /// Stripe has every one of its events: send any it lacks yourself
    /// first, or they are never billed. `true` when the batch was pending,
    /// `false` when it was acknowledged already; `NotFound` for a batch
    /// never claimed.
    pub async fn acknowledge_export(&self, meter: &Meter, batch: u64) -> Result<bool> {
        meter.validate()?;
        self.history_store()?
            .ack_export(&ExportAck {
                event_name: meter.event_name.clone(),
                batch,
                now: self.tenancy.now(),
            })
            .await
    }
}

/// The refusal to resend `batch`, claimed beyond Stripe's dedupe window.
fn stale(batch: &ExportBatch) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "batch {id} of meter {meter} was claimed at {at} and is still pending: Stripe \
             dedupes identifiers for 24 hours only, so sending it again could count events \
             twice; check which of its events Stripe has, then acknowledge it or set \
             ExportOptions::resend_stale_batch to {id}",
            id = batch.id,
            meter = batch.event_name,
            at = batch
                .claimed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    )
    .permanent()
}
