//! Sending one batch: retries, splitting a refused batch, and surviving a
//! panic without losing the batch's other events.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::Shared;
use super::stats::{Counters, FailedEvent};
use crate::error::{Error, ErrorKind, Result};
use crate::model::UsageEvent;
use crate::store::RecordOutcome;

/// What became of a batch: every event not listed here was stored.
#[derive(Default)]
pub(super) struct Delivery {
    /// Events that failed for good (counted and logged), each with its
    /// position in the batch.
    pub(super) failed: Vec<(usize, FailedEvent)>,
    /// Events given back to be spooled and replayed later, each with its
    /// position in the batch: not delivered because of an error that is
    /// neither transient nor theirs (an answer the store does not explain),
    /// or because delivery stopped.
    pub(super) kept: Vec<(usize, UsageEvent)>,
    /// Delivery stopped: the recorder is stopping, or the store cannot take
    /// usage at all. Every event from the first one it stopped at on is in
    /// `kept`.
    pub(super) stopped: bool,
}

impl Delivery {
    /// The whole batch given back, because delivery stopped.
    fn stopped(batch: Vec<UsageEvent>) -> Delivery {
        Delivery {
            failed: Vec::new(),
            kept: batch.into_iter().enumerate().collect(),
            stopped: true,
        }
    }

    /// The events given back, in batch order.
    pub(super) fn take_kept(&mut self) -> Vec<UsageEvent> {
        std::mem::take(&mut self.kept)
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }
}

/// What one attempt at a batch came to.
enum Attempt {
    Stored(RecordOutcome),
    Failed(Error),
    Panicked(String),
}

impl Shared {
    /// Sends one batch, retrying transient failures with backoff until it
    /// is stored or the recorder is stopping. A batch that fails with a
    /// permanent error, or whose delivery panics, is split into single
    /// events, so one bad event cannot hold back the others: the bad one
    /// alone is counted failed, with its reason, if the store refused it
    /// for good or its delivery panicked, and is kept otherwise. A batch
    /// the store refuses for lack of rights (the store cannot write usage
    /// at all) stops the recorder from accepting more and is given back.
    pub(super) async fn deliver(&self, batch: Vec<UsageEvent>) -> Delivery {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        // Prepared (validated, resolved into store records) once; only the
        // write is retried. `batch` stays for splitting and for giving back.
        let mut prepared = None;
        loop {
            let attempt = catching(async {
                let ready = match &mut prepared {
                    Some(ready) => ready,
                    unprepared => unprepared.insert(self.sink.prepare(&batch).await?),
                };
                ready.write().await
            })
            .await;
            let error = match attempt {
                Attempt::Stored(outcome) => {
                    Counters::add(&self.counters.sent, outcome.inserted);
                    Counters::add(&self.counters.duplicates, outcome.duplicates);
                    return Delivery::default();
                }
                Attempt::Panicked(why) => {
                    return self
                        .split(batch, format!("panicked: {why}"), Settle::Fail)
                        .await;
                }
                Attempt::Failed(e) => e,
            };
            if cannot_write(&error) {
                self.refuse_further_events(&error);
                return Delivery::stopped(batch);
            }
            if !error.is_retryable() {
                let settle = if refused_for_good(&error) {
                    Settle::Fail
                } else {
                    Settle::Keep
                };
                return self.split(batch, error.to_string(), settle).await;
            }
            if self.stopping() {
                return Delivery::stopped(batch);
            }
            self.counters.retried.fetch_add(1, Ordering::SeqCst);
            let delay = backoff.next().unwrap_or(self.config.retry_max_delay);
            tracing::warn!(error = %error, events = batch.len(), ?delay, "usage batch failed; retrying");
            self.sleep_unless_stopping(delay).await;
        }
    }

    /// A batch that failed with a permanent error: one event is settled
    /// per `settle`; several are sent one by one.
    async fn split(&self, mut batch: Vec<UsageEvent>, reason: String, settle: Settle) -> Delivery {
        if batch.len() == 1 {
            let mut delivery = Delivery::default();
            if let Some(event) = batch.pop() {
                match settle {
                    Settle::Fail => delivery.failed.push((0, self.counters.fail(event, reason))),
                    Settle::Keep => {
                        tracing::error!(reason = %reason,
                            "usage event not delivered (an error the store does not explain); kept for a later replay");
                        delivery.kept.push((0, event));
                    }
                }
            }
            return delivery;
        }
        tracing::warn!(reason = %reason, events = batch.len(), "usage batch refused; sending one by one");
        let mut delivery = Delivery::default();
        for (at, event) in batch.into_iter().enumerate() {
            if delivery.stopped {
                delivery.kept.push((at, event));
                continue;
            }
            let one = Box::pin(self.deliver(vec![event])).await;
            delivery
                .failed
                .extend(one.failed.into_iter().map(|(_, failed)| (at, failed)));
            delivery
                .kept
                .extend(one.kept.into_iter().map(|(_, event)| (at, event)));
            delivery.stopped |= one.stopped;
        }
        delivery
    }

    /// Sleeps `delay`, waking early when the recorder starts stopping.
    async fn sleep_unless_stopping(&self, delay: Duration) {
        let until = Instant::now().checked_add(delay);
        let until = match (until, self.give_up_at()) {
            (Some(until), Some(at)) => until.min(at),
            (Some(until), None) => until,
            (None, Some(at)) => at,
            (None, None) => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = self.wake.notified() => {}
        }
    }
}

/// What becomes of a single event that failed with a permanent error.
#[derive(Clone, Copy)]
enum Settle {
    /// Failed for good: counted, logged, reported.
    Fail,
    /// Given back, to be spooled and replayed.
    Keep,
}

/// Whether a permanent error is the event's own: the store will refuse it
/// however often it is sent (it is invalid, its organization is gone).
/// Anything else — an answer the store does not explain, above all — says
/// nothing against the event, which is kept.
fn refused_for_good(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::InvalidInput
            | ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::Conflict
    )
}

/// Whether an error means the store will take no usage at all from this
/// recorder: no valid identity, no right to write, or a misconfiguration.
fn cannot_write(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Unauthenticated | ErrorKind::PermissionDenied | ErrorKind::Config
    )
}

/// Runs `fut` to completion, turning a panic inside it into
/// [`Attempt::Panicked`] with the panic's message.
async fn catching<'a>(fut: impl Future<Output = Result<RecordOutcome>> + Send + 'a) -> Attempt {
    match CatchUnwind(Box::pin(fut)).await {
        Ok(Ok(outcome)) => Attempt::Stored(outcome),
        Ok(Err(e)) => Attempt::Failed(e),
        Err(panic) => Attempt::Panicked(panic_message(panic.as_ref())),
    }
}

/// A future that catches a panic of the future it wraps. Boxed, so that
/// it needs no pin projection (and no unsafe code).
struct CatchUnwind<'a, T>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

impl<T> Future for CatchUnwind<'_, T> {
    type Output = std::thread::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // After a panic the inner future is never polled again: this one is
        // then ready.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The message of a panic payload (`panic!` with a literal or a format).
pub(super) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
