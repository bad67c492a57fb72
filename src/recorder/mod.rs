//! [`UsageRecorder`]: batching, non-blocking usage recording for workers.
//!
//! [`UsageRecorder::record`] validates an event, gives it an id (UUIDv7) and
//! a time, prices it, puts it in a queue and returns; it never waits on the
//! network. A background task started on the current tokio runtime sends the
//! queue in batches — by size (default 500) or every interval (default 1 s),
//! one store call per batch, up to `max_in_flight` (default 4) at once —
//! through the same path as
//! [`Service::record_usage_batch`](crate::Service::record_usage_batch), so
//! counters, limits and alerts see the usage exactly as on the request path.
//!
//! # Durability: what `Ok` from `record` means
//!
//! `Ok` means *accepted*, not yet durable. An accepted event is in memory
//! until its batch is stored, or until it is spilled to the spool file (with
//! [`SpoolSync::EveryWrite`], durable from then on, power loss included).
//! [`flush`](UsageRecorder::flush) returns `Ok` once everything accepted
//! before it is stored, and an error saying so when some of it was not;
//! [`shutdown`](UsageRecorder::shutdown) drains or spools. A
//! process killed outright (SIGKILL, power loss) loses what was only in
//! memory: at most `max_buffered_events` plus the `max_in_flight` batches
//! being sent.
//!
//! # Never lost, never doubled
//!
//! - Every event has an id before it is queued: the caller's, or a UUIDv7
//!   of the millisecond it was recorded in and a per-recorder counter,
//!   unique within the recorder by construction and ordered by recording.
//! - Transient failures are retried with exponential backoff and jitter.
//!   Every retry resends the same event ids, and the store counts an id once.
//! - While the backend is down, events wait in memory up to
//!   `max_buffered_events`; past that they are appended to a spool file in
//!   `spool_dir` (see [`SpoolSync`] for the fsync policy). Spooled files are
//!   replayed when the backend recovers, and by the next recorder started on
//!   the same directory after a crash or a drop.
//! - When even the spool is unavailable (none configured, or the disk
//!   fails), [`Backpressure`] decides: reject `record` with an `Unavailable`
//!   error, or block the caller until there is room. Never a silent drop.
//! - An event the store refuses for good (it is invalid, or its organization
//!   was deleted: `InvalidInput`, `NotFound`, `AlreadyExists`, `Conflict`
//!   that is not retryable), or whose delivery panics, is split from its
//!   batch and failed alone: it is counted in [`RecorderStats::failed`],
//!   logged with its full JSON at error level, and listed with the reason
//!   in the [`ShutdownReport`]. The rest of its batch is delivered.
//! - Any other error that is not retryable (an answer the store does not
//!   explain, above all `Unexpected`) says nothing against the events: the
//!   batch is split the same way, and the events that still fail are kept —
//!   spooled and replayed with the spool, once per `flush_interval` while
//!   they keep failing, or, without a `spool_dir`, handed back in the
//!   [`ShutdownReport`].
//! - If the store takes no usage at all (no valid credentials, no right to
//!   write), the recorder stops accepting events: `record` and `flush`
//!   return the error, and what is queued is spooled or handed back. A
//!   recorder refuses to start on a user-JWT store in the first place. The
//!   same happens if the flusher task itself dies.
//! - [`shutdown`](UsageRecorder::shutdown) drains within a deadline and
//!   spools what it cannot deliver; dropping the last handle without
//!   shutdown spools the queue synchronously. Without a `spool_dir`,
//!   undelivered events are handed back in the [`ShutdownReport`].

mod config;
mod delivery;
mod flusher;
mod ids;
mod queue;
mod sink;
mod spool;
mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result, quoted};
use crate::ids::{EventId, MetricKey};
use crate::limits::validate_amount;
use crate::model::{Action, TenantContext, UsageEvent};
use crate::sync::lock;

pub use config::{Backpressure, RecorderBuilder, RecorderConfig, UnknownModelPolicy};
pub use spool::SpoolSync;
pub use stats::{FailedEvent, MAX_FAILED_KEPT, RecorderStats, ShutdownReport};

pub(crate) use sink::{PreparedBatch, UsageSink};

use ids::EventIds;
use queue::{Progress, Queue};
use spool::Spool;
use stats::Counters;

/// How many of `given_back` events of the queue events `start..end` a
/// `flush` waiting for the events below `queued` counts: all of them if the
/// range is below `queued`, at most its part below `queued` otherwise.
fn given_back_before(start: u64, end: u64, given_back: u64, queued: u64) -> u64 {
    if end <= queued {
        given_back
    } else {
        given_back.min(queued.saturating_sub(start))
    }
}

/// The longest a `shutdown` deadline is taken to be: a day. Longer ones
/// (`Duration::MAX` included) mean the same.
const MAX_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
struct Shared {
    /// The facade's write path.
    sink: Arc<dyn UsageSink>,
    ids: EventIds,
    config: RecorderConfig,
    queue: Mutex<Queue>,
    /// Signalled when the queue shrinks, for `Backpressure::Block`.
    room: Condvar,
    /// Wakes the flusher: a full batch, a flush, a shutdown.
    wake: Notify,
    counters: Counters,
    /// How far this recorder's own events are settled, for `flush`.
    progress: watch::Sender<Progress>,
    /// Settled batches past the contiguous prefix: start → (end, how many
    /// of its events were given back instead of stored).
    finished: Mutex<BTreeMap<u64, (u64, u64)>>,
    /// The `flush` calls waiting now.
    waiters: Mutex<Vec<Arc<FlushWaiter>>>,
    /// Own events spilled to the spool by `record` (memory full).
    spilled: AtomicU64,
    spool: Option<Mutex<Spool>>,
    spool_pending: AtomicBool,
    /// A `flush` wants partial batches sent now.
    urgent: AtomicBool,
    /// Why the recorder takes no more events, once it does not: the store
    /// refuses usage for good, or the flusher died.
    stopped: OnceLock<String>,
}

/// A batching, non-blocking usage recorder for worker services. Cheap to
/// clone; clones share the queue. See the [module docs](self) for the
/// delivery guarantees.
///
/// ```
/// # use tenancy::{MemoryStore, NewOrganization, Tenancy, UserId, UsageEvent, UsageRecorder};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// # let org = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
/// let recorder = UsageRecorder::builder(tenancy.clone()).start()?;
/// recorder.record(UsageEvent::new(org.id).ai_call("openai", "gpt-4o", "ad_copy").tokens(900, 0, 300))?;
/// recorder.flush().await?;
/// assert_eq!(recorder.stats().sent, 1);
/// recorder.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl UsageRecorder {
    fn launch(
        sink: Arc<dyn UsageSink>,
        config: RecorderConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<UsageRecorder> {
        let spool = match &config.spool_dir {
            Some(dir) => Some(Mutex::new(Spool::open(
                dir,
                Uuid::now_v7(),
                config.spool_sync,
            )?)),
            None => None,
        };
        let spool_pending = spool.as_ref().is_some_and(|s| lock(s).has_pending());
        let shared = Arc::new(Shared {
            sink,
            ids: EventIds::new(),
            config,
            queue: Mutex::new(Queue::default()),
            room: Condvar::new(),
            wake: Notify::new(),
            counters: Counters::default(),
            progress: watch::Sender::new(Progress::default()),
            finished: Mutex::default(),
            waiters: Mutex::default(),
            spilled: AtomicU64::new(0),
            spool,
            spool_pending: AtomicBool::new(spool_pending),
            urgent: AtomicBool::new(false),
            stopped: OnceLock::new(),
        });
        let flusher = runtime.spawn(Arc::clone(&shared).run_guarded());
        Ok(UsageRecorder {
            handle: Arc::new(Handle {
                shared,
                flusher: Mutex::new(Some(flusher)),
            }),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RecorderConfig {
        &self.handle.shared.config
    }

    /// Validates, prices and enqueues an event; returns its id. Never waits
    /// on the network. `Ok` means accepted, not yet durable (see the
    /// [module docs](self)). An invalid event — its time outside the
    /// supported window included (see [`UsageEvent`]) — is `InvalidInput`
    /// and nothing is enqueued; so is one whose computed cost is out of
    /// range. Once the recorder has stopped accepting events (shut down, or
    /// the store refuses usage for good), the error says why.
    pub fn record(&self, mut event: UsageEvent) -> Result<EventId> {
        let shared = &self.handle.shared;
        if let Some(why) = shared.stopped.get() {
            return Err(Error::new(ErrorKind::Unavailable, why.clone()).permanent());
        }
        event.validate()?;
        // One clock read serves the time check, the event time and its id.
        let now = shared.sink.now();
        event.check_time(now)?;
        let id = match event.id {
            Some(id) => id,
            None => *event.id.insert(shared.ids.next(now)),
        };
        let at = *event.occurred_at.get_or_insert(now);
        shared.price(&mut event, at)?;
        shared.enqueue(event)?;
        Ok(id)
    }

    /// Records one user activity — an ad generated, a page used — as one
    /// unit of the metric `action`, with `resource` in the metadata. Needs a
    /// role that may [`ConsumeUsage`](Action::ConsumeUsage): viewers may
    /// not.
    pub fn record_activity(
        &self,
        ctx: &TenantContext,
        action: &str,
        resource: &str,
    ) -> Result<EventId> {
        ctx.require(Action::ConsumeUsage)?;
        let metric = MetricKey::parse(action)?;
        let event = UsageEvent::new(ctx.org())
            .user(ctx.user())
            .ai_call("", "", action)
            .quantity(metric, Decimal::ONE)
            .metadata(serde_json::json!({ "resource": resource }));
        self.record(event)
    }

    /// Sends at once instead of waiting for the interval, and returns `Ok`
    /// once every event recorded before the call is stored or failed for
    /// good (see [`RecorderStats::failed`]). While the backend is down this
    /// waits; bound it with `tokio::time::timeout` if needed.
    ///
    /// An `Unavailable` error instead, saying why, when some of those events
    /// were not stored: the recorder shut down or stopped accepting events
    /// first, or the store answered with an error it does not explain (see
    /// the [module docs](self)). Such events are spooled for a later replay
    /// (or, without a spool, handed back by
    /// [`shutdown`](Self::shutdown)); a later `flush` does not wait for
    /// them. Once the recorder has stopped accepting events, every `flush`
    /// is an error saying why.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let waiter = shared.register_flush();
        let _registered = Registered {
            shared,
            waiter: &waiter,
        };
        let (queued, spilled) = (waiter.queued, waiter.spilled);
        let mut progress = shared.progress.subscribe();
        shared.urgent.store(true, Ordering::SeqCst);
        shared.wake.notify_one();
        let settled = progress
            .wait_for(|p| p.stopped || (p.queue_settled >= queued && p.spill_settled >= spilled))
            .await
            .map(|p| !p.stopped);
        let not_stored = waiter.given_back.load(Ordering::SeqCst);
        let why = match (settled, shared.stopped.get()) {
            (Ok(true), _) if not_stored == 0 => return Ok(()),
            (Ok(true), None) if lock(&shared.queue).closed => {
                "the recorder was shut down before they were stored".to_owned()
            }
            (Ok(true), None) => "the store answered with an error it does not explain".to_owned(),
            (Ok(true), Some(why)) => why.clone(),
            (_, Some(why)) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("not every event recorded before this flush was stored: {why}"),
                )
                .permanent());
            }
            (_, None) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the recorder's flusher has stopped",
                ));
            }
        };
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{not_stored} of the events recorded before this flush were not stored ({why}); \
                 they are spooled for a later replay, or handed back by shutdown without a spool"
            ),
        )
        .permanent())
    }

    /// Stops accepting events, delivers what is queued until `deadline`
    /// passes (a deadline over a day counts as a day), then spools whatever
    /// is left (or returns it, without a spool), and waits for the alert
    /// checks its deliveries queued. Other clones of this recorder stop
    /// accepting events too.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let shared = Arc::clone(&self.handle.shared);
        let deadline = deadline.min(MAX_SHUTDOWN_DEADLINE);
        let give_up_at = Instant::now() + deadline;
        {
            let mut queue = lock(&shared.queue);
            queue.closed = true;
            queue.give_up_at = Some(give_up_at);
        }
        shared.wake_all();
        let flusher = lock(&self.handle.flusher).take();
        if let Some(flusher) = flusher {
            // The flusher gives up by itself at the deadline; the extra
            // second covers a store call already under way.
            let _ = tokio::time::timeout(deadline + Duration::from_secs(1), flusher).await;
        }
        // Whatever is still queued (the flusher did not get to it) is
        // persisted now; a `flush` still waiting learns it will not be
        // stored.
        let leftover = lock(&shared.queue).drain();
        shared.persist(leftover);
        shared.stop("the usage recorder is shut down".to_owned());
        let left = give_up_at.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, shared.sink.flush_alerts()).await;
        ShutdownReport {
            stats: shared.stats(),
            undelivered: std::mem::take(&mut lock(&shared.queue).undelivered),
            failed: std::mem::take(&mut lock(&shared.counters.failed_events)),
        }
    }

    /// Counts since the recorder started.
    pub fn stats(&self) -> RecorderStats {
        self.handle.shared.stats()
    }
}

impl Drop for Handle {
    /// The last handle dropped without `shutdown`: stop the flusher and
    /// spool the queue synchronously, so the next recorder on the same
    /// directory delivers it.
    fn drop(&mut self) {
        let shared = &self.shared;
        let leftover: Vec<UsageEvent> = {
            let mut queue = lock(&shared.queue);
            if queue.closed && queue.len == 0 {
                return; // shut down properly
            }
            queue.closed = true;
            queue.give_up_at = Some(Instant::now());
            queue.drain()
        };
        shared.wake_all();
        let count = leftover.len();
        shared.persist(leftover);
        let lost = lock(&shared.queue).undelivered.len();
        if lost > 0 {
            tracing::error!(
                lost,
                "usage recorder dropped without shutdown and without a spool_dir: events lost"
            );
        } else if count > 0 {
            tracing::warn!(
                count,
                "usage recorder dropped without shutdown; queued events spooled"
            );
        }
    }
}

/// A `flush` waiting: what it waits for, and how many of those events
/// were given back (spooled or handed back) instead of stored.
#[derive(Debug)]
struct FlushWaiter {
    /// The queue events below this sequence number.
    queued: u64,
    /// This many own spills settled.
    spilled: u64,
    given_back: AtomicU64,
}

/// Removes a waiter when its `flush` returns or is dropped.
struct Registered<'a> {
    shared: &'a Shared,
    waiter: &'a Arc<FlushWaiter>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.shared.waiters).retain(|w| !Arc::ptr_eq(w, self.waiter));
    }
}

impl Shared {
    /// A waiter for a `flush` called now, told already of the events among
    /// those it waits for that were given back in batches settled out of
    /// order.
    fn register_flush(&self) -> Arc<FlushWaiter> {
        let finished = lock(&self.finished);
        let queued = lock(&self.queue).pushed;
        let given_back = finished
            .iter()
            .map(|(&start, &(end, given_back))| given_back_before(start, end, given_back, queued))
            .sum();
        let waiter = Arc::new(FlushWaiter {
            queued,
            spilled: self.spilled.load(Ordering::SeqCst),
            given_back: AtomicU64::new(given_back),
        });
        lock(&self.waiters).push(Arc::clone(&waiter));
        waiter
    }

    /// Tells the waiting `flush` calls that `given_back` events of the
    /// queue events `start..end` were given back instead of stored.
    fn given_back(&self, start: u64, end: u64, given_back: u64) {
        for waiter in lock(&self.waiters).iter() {
            let n = given_back_before(start, end, given_back, waiter.queued);
            waiter.given_back.fetch_add(n, Ordering::SeqCst);
        }
    }

    /// Tells the `flush` calls waiting for own spills that `n` replayed
    /// events (some perhaps spilled by this recorder) were given back.
    fn spills_given_back(&self, n: u64) {
        let settled = self.progress.borrow().spill_settled;
        for waiter in lock(&self.waiters).iter() {
            if waiter.spilled > settled {
                waiter.given_back.fetch_add(n, Ordering::SeqCst);
            }
        }
    }

    fn stats(&self) -> RecorderStats {
        let c = &self.counters;
        let queue = lock(&self.queue);
        RecorderStats {
            queued: queue.len as u64,
            recorded: queue.pushed + self.spilled.load(Ordering::SeqCst),
            sent: Counters::get(&c.sent),
            duplicates: Counters::get(&c.duplicates),
            retried: Counters::get(&c.retried),
            spooled: Counters::get(&c.spooled),
            replayed: Counters::get(&c.replayed),
            unreadable: Counters::get(&c.unreadable),
            failed: Counters::get(&c.failed),
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.get().is_some()
    }

    /// Stops accepting events for good, with the reason `record` and
    /// `flush` will give; wakes everyone waiting.
    fn stop(&self, why: String) {
        if self.stopped.set(why).is_ok() {
            self.progress.send_modify(|p| p.stopped = true);
            self.wake_all();
        }
    }

    /// Wakes everyone waiting on the recorder: callers blocked for room,
    /// deliveries sleeping between retries (`notify_waiters` reaches every
    /// task waiting now), and the flusher, even if it is not waiting at
    /// this moment (`notify_one` leaves it a permit).
    fn wake_all(&self) {
        self.room.notify_all();
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// The store refused a batch for lack of rights: no more events.
    fn refuse_further_events(&self, error: &Error) {
        tracing::error!(error = %error, "the store takes no usage from this recorder; stopping");
        self.stop(format!(
            "the store refuses usage from this recorder: {error}"
        ));
    }

    /// Fills in the cost from the price table at the prices in effect `at`
    /// (the event's time), per the unknown-model policy, and checks it.
    fn price(&self, event: &mut UsageEvent, at: DateTime<Utc>) -> Result<()> {
        let Some(prices) = &self.config.prices else {
            return Ok(());
        };
        if event.cost_usd.is_some() || event.total_tokens() == 0 || event.model.is_empty() {
            return Ok(());
        }
        let priced = prices.cost(
            &event.provider,
            &event.model,
            at,
            event.input_tokens,
            event.cached_input_tokens,
            event.output_tokens,
        )?;
        match priced {
            Some(cost) => {
                event.cost_usd = Some(validate_amount("cost_usd", cost)?);
                // A `cost_usd` quantity adds to the computed cost; delivery
                // would refuse their sum for good, so refuse it here.
                if let Some(&quantity) = event.quantities.get(&MetricKey::COST_USD)
                    && let Err(sum) = validate_amount("quantity", cost.saturating_add(quantity))
                {
                    return Err(Error::invalid_input(
                        "cost_usd",
                        format_args!(
                            "the computed cost {cost} and the event's cost_usd quantity: {}",
                            sum.message()
                        ),
                    ));
                }
            }
            None => match self.config.unknown_model {
                UnknownModelPolicy::Error => {
                    return Err(Error::invalid_input(
                        "model",
                        format_args!(
                            "no price for {}/{} on {}",
                            quoted(&event.provider),
                            quoted(&event.model),
                            at.date_naive()
                        ),
                    ));
                }
                UnknownModelPolicy::ZeroCost => {
                    tracing::warn!(provider = %event.provider, model = %event.model,
                        "no price for model; recording zero cost");
                    event.cost_usd = Some(Decimal::ZERO);
                }
            },
        }
        Ok(())
    }

    #[inline]
    fn enqueue(&self, event: UsageEvent) -> Result<()> {
        let mut queue = lock(&self.queue);
        if queue.closed || queue.len >= self.config.max_buffered_events {
            return self.enqueue_when_full(queue, event);
        }
        let full_batch = queue.push(event, self.config.batch_size);
        drop(queue);
        if full_batch {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// `enqueue` when the recorder is closed or memory is full: spill,
    /// reject or block.
    #[cold]
    fn enqueue_when_full<'a>(
        &'a self,
        mut queue: MutexGuard<'a, Queue>,
        event: UsageEvent,
    ) -> Result<()> {
        loop {
            if queue.closed {
                return Err(
                    Error::new(ErrorKind::Unavailable, "the usage recorder is shut down")
                        .permanent(),
                );
            }
            if let Some(why) = self.stopped.get() {
                return Err(Error::new(ErrorKind::Unavailable, why.clone()).permanent());
            }
            if queue.len < self.config.max_buffered_events {
                // Room was made while this call waited.
                let full_batch = queue.push(event, self.config.batch_size);
                drop(queue);
                if full_batch {
                    self.wake.notify_one();
                }
                return Ok(());
            }
            // Memory is full: spill this event to the spool if there is one.
            if let Some(spool) = &self.spool {
                drop(queue);
                match lock(spool).spill(&event) {
                    Ok(_) => {
                        self.counters.spooled.fetch_add(1, Ordering::SeqCst);
                        self.spilled.fetch_add(1, Ordering::SeqCst);
                        self.spool_pending.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "usage spool unavailable; applying backpressure");
                        if self.config.backpressure == Backpressure::Reject {
                            return Err(e);
                        }
                    }
                }
                queue = lock(&self.queue);
            }
            match self.config.backpressure {
                Backpressure::Reject => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "the usage recorder's buffer is full and no spool is available; retry later",
                    ));
                }
                Backpressure::Block => {
                    queue = self
                        .room
                        .wait_timeout(queue, Duration::from_millis(100))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}
