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
//! before it is stored or failed for good, with a [`FlushReport`] listing
//! the failed events, and an error saying so when some of it was not
//! stored; [`flush_within`](UsageRecorder::flush_within) stops waiting at a
//! deadline and reports what is still [`Pending`], in memory or in the
//! spool. [`shutdown`](UsageRecorder::shutdown) drains until its deadline,
//! then spools, and reports what is pending too. A process killed outright
//! (SIGKILL, power loss) loses what was only in memory: at most
//! `max_buffered_events` plus the `max_in_flight` batches being sent.
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
//!   in the [`FlushReport`] of the flushes waiting for it and in the
//!   [`ShutdownReport`]. The rest of its batch is delivered.
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
#[cfg(feature = "metrics")]
mod publish;
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
use crate::model::price::Unpriced;
use crate::model::{Action, TenantContext, UsageEvent};
use crate::sync::lock;

pub use config::{Backpressure, RecorderBuilder, RecorderConfig, UnknownModelPolicy};
pub use spool::SpoolSync;
pub use stats::{
    FailedEvent, FlushReport, MAX_FAILED_KEPT, Pending, RecorderStats, ShutdownReport,
};

pub(crate) use sink::{PreparedBatch, UsageSink};

use ids::EventIds;
use queue::{Progress, Queue};
use spool::Spool;
use stats::Counters;

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
    /// Settled batches past the contiguous prefix, by the queue sequence
    /// number of their first event.
    finished: Mutex<BTreeMap<u64, Settled>>,
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
    /// What it last reported to the `metrics` recorder.
    #[cfg(feature = "metrics")]
    published: publish::Published,
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
/// let flushed = recorder.flush().await?;
/// assert_eq!((flushed.stored, flushed.failed), (1, 0));
/// assert_eq!(recorder.stats().sent, 1);
/// let report = recorder.shutdown(std::time::Duration::from_secs(5)).await;
/// assert!(report.pending.is_empty());
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
            #[cfg(feature = "metrics")]
            published: publish::Published::default(),
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

    /// Sends at once instead of waiting for the interval, and waits until
    /// every event recorded before the call is stored or failed for good;
    /// then `Ok` with a [`FlushReport`] that counts them and lists the
    /// events that failed for good (never retried: the store refused them,
    /// or their delivery panicked). While the backend is down this waits;
    /// [`flush_within`](Self::flush_within) is the same with a deadline.
    ///
    /// An `Unavailable` error instead, saying why, when some of those events
    /// were not stored: the recorder shut down or stopped accepting events
    /// first, or the store answered with an error it does not explain (see
    /// the [module docs](self)). Such events are spooled for a later replay
    /// (or, without a spool, handed back by
    /// [`shutdown`](Self::shutdown)); a later `flush` does not wait for
    /// them. Once the recorder has stopped accepting events, every `flush`
    /// is an error saying why.
    ///
    /// ```
    /// # use tenancy::{MemoryStore, NewOrganization, OrgId, Tenancy, UserId, UsageEvent, UsageRecorder};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// # let org = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
    /// let recorder = UsageRecorder::builder(tenancy.clone()).start()?;
    /// recorder.record(UsageEvent::new(org.id).tokens(900, 0, 300))?;
    /// // Valid, but its organization does not exist: refused for good.
    /// let orphan = recorder.record(UsageEvent::new(OrgId::new_v7()).tokens(1, 0, 0))?;
    ///
    /// let report = recorder.flush().await?;
    /// assert_eq!((report.stored, report.failed), (1, 1));
    /// assert_eq!(report.failed_events[0].event.id, Some(orphan));
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<FlushReport> {
        self.flush_until(None).await?.into_result()
    }

    /// [`flush`](Self::flush) that stops waiting when `deadline` passes:
    /// for a worker that must stop on time while the backend may be down.
    ///
    /// `Ok` with a [`FlushReport`] unless the recorder has stopped
    /// accepting events (the same error as `flush`). The report says what
    /// became of the events recorded before the call:
    /// [`is_complete`](FlushReport::is_complete) when each is stored or
    /// failed for good; otherwise [`pending`](FlushReport::pending) counts
    /// those still in memory (queued, or being sent: the recorder goes on
    /// retrying them after the deadline), in the spool (spilled there, or
    /// given back after an error the store does not explain), and handed
    /// back (no spool), and [`deadline_passed`](FlushReport::deadline_passed)
    /// says whether the deadline cut it short. Passing the deadline changes
    /// nothing for the recorder: to stop, follow with
    /// [`shutdown`](Self::shutdown), which spools what is still in memory.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tenancy::{MemoryStore, NewOrganization, Tenancy, UserId, UsageEvent, UsageRecorder};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// # let org = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
    /// let recorder = UsageRecorder::builder(tenancy.clone()).start()?;
    /// recorder.record(UsageEvent::new(org.id).tokens(900, 0, 300))?;
    /// let report = recorder.flush_within(Duration::from_secs(5)).await?;
    /// if !report.is_complete() {
    ///     eprintln!("not stored yet: {:?}", report.pending);
    /// }
    /// let report = recorder.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.pending.is_empty() && report.undelivered.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn flush_within(&self, deadline: Duration) -> Result<FlushReport> {
        self.flush_until(Some(deadline)).await
    }

    /// `flush` with an optional deadline; the report, whatever it says.
    async fn flush_until(&self, deadline: Option<Duration>) -> Result<FlushReport> {
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
            .wait_for(|p| p.stopped || (p.queue_settled >= queued && p.spill_settled >= spilled));
        let settled = match deadline {
            Some(deadline) => tokio::time::timeout(deadline, settled).await.ok(),
            None => Some(settled.await),
        };
        // `None`: the deadline passed.
        let settled = settled.map(|settled| settled.map(|p| !p.stopped));
        match (settled, shared.stopped.get()) {
            (None | Some(Ok(true)), _) => {}
            (Some(_), Some(why)) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("not every event recorded before this flush was stored: {why}"),
                )
                .permanent());
            }
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the recorder's flusher has stopped",
                ));
            }
        }
        let report = shared.flush_report(&waiter);
        shared.publish();
        Ok(report)
    }

    /// Stops accepting events, delivers what is queued until `deadline`
    /// passes (a deadline over a day counts as a day), then spools whatever
    /// is left (or returns it, without a spool), and waits for the alert
    /// checks its deliveries queued. Other clones of this recorder stop
    /// accepting events too. Returns within `deadline` plus one second (a
    /// store call under way then is not waited for any longer) and the
    /// report says what was not stored: [`ShutdownReport::pending`] counts
    /// the events in the spool and those handed back in
    /// [`ShutdownReport::undelivered`].
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
        let stats = shared.stats();
        let undelivered = std::mem::take(&mut lock(&shared.queue).undelivered);
        let pending = Pending {
            in_memory: stats.in_flight,
            in_spool: shared.spool_usage().events,
            handed_back: undelivered.len() as u64,
        };
        shared.retire();
        ShutdownReport {
            stats,
            pending,
            undelivered,
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
        shared.retire();
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

/// Where events given back (not delivered, to be tried again later) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Into the spool, for a replay.
    Spool,
    /// Aside, for the shutdown report: there is no spool, or it failed.
    HandedBack,
}

/// How the queue events of one batch settled: those not listed here were
/// stored.
#[derive(Debug)]
struct Settled {
    /// The sequence number after its last event.
    end: u64,
    /// The sequence numbers of the events given back, and where they went.
    kept: Vec<u64>,
    kept_to: Place,
    /// The events that failed for good, with their sequence numbers.
    failed: Vec<(u64, FailedEvent)>,
}

impl Settled {
    /// A batch up to `end`, all stored (or lost with the runtime).
    fn empty(end: u64) -> Settled {
        Settled {
            end,
            kept: Vec::new(),
            kept_to: Place::Spool,
            failed: Vec::new(),
        }
    }
}

/// A `flush` waiting: what it waits for, and what became of those events
/// that were not stored.
#[derive(Debug)]
struct FlushWaiter {
    /// The queue events below this sequence number.
    queued: u64,
    /// This many own spills settled.
    spilled: u64,
    /// How many events it waits for: those of `queued` not settled in the
    /// contiguous prefix, and own spills not settled, when it was called.
    waited_for: u64,
    tally: Mutex<Tally>,
}

/// What became of a waiting flush's events that were not stored.
#[derive(Debug, Default)]
struct Tally {
    spooled: u64,
    handed_back: u64,
    failed: u64,
    failed_events: Vec<FailedEvent>,
}

impl Tally {
    fn give_back(&mut self, n: u64, place: Place) {
        match place {
            Place::Spool => self.spooled += n,
            Place::HandedBack => self.handed_back += n,
        }
    }

    fn fail(&mut self, failed: &FailedEvent) {
        self.failed += 1;
        if self.failed_events.len() < MAX_FAILED_KEPT {
            self.failed_events.push(failed.clone());
        }
    }
}

impl FlushWaiter {
    /// Counts what became of the events of a settled batch that this flush
    /// waits for (a batch may also hold events recorded after the call).
    fn count(&self, settled: &Settled) {
        let mut tally = lock(&self.tally);
        let kept = settled
            .kept
            .iter()
            .filter(|&&seq| seq < self.queued)
            .count();
        tally.give_back(kept as u64, settled.kept_to);
        for (seq, failed) in &settled.failed {
            if *seq < self.queued {
                tally.fail(failed);
            }
        }
    }
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
    /// A waiter for a `flush` called now, told already of the batches
    /// settled out of order, which it waits for too.
    fn register_flush(&self) -> Arc<FlushWaiter> {
        let finished = lock(&self.finished);
        let queued = lock(&self.queue).pushed;
        let spilled = self.spilled.load(Ordering::SeqCst);
        let progress = *self.progress.borrow();
        let waiter = Arc::new(FlushWaiter {
            queued,
            spilled,
            waited_for: queued.saturating_sub(progress.queue_settled)
                + spilled.saturating_sub(progress.spill_settled),
            tally: Mutex::default(),
        });
        for settled in finished.values() {
            waiter.count(settled);
        }
        lock(&self.waiters).push(Arc::clone(&waiter));
        waiter
    }

    /// What became of the events `waiter` waits for, now.
    fn flush_report(&self, waiter: &FlushWaiter) -> FlushReport {
        // Under the lock that settling takes, so that no batch settles
        // between the count of what is pending and the tally.
        let finished = lock(&self.finished);
        let progress = *self.progress.borrow();
        let queued = waiter.queued;
        let mut settled = progress.queue_settled.min(queued);
        for (&start, batch) in finished.range(..queued) {
            settled += batch.end.min(queued) - start;
        }
        let tally = std::mem::take(&mut *lock(&waiter.tally));
        drop(finished);
        let in_memory = queued.saturating_sub(settled);
        let spills = waiter.spilled.saturating_sub(progress.spill_settled);
        let pending = Pending {
            in_memory,
            in_spool: tally.spooled + spills,
            handed_back: tally.handed_back,
        };
        let given_back = tally.spooled + tally.handed_back;
        let why = (given_back > 0).then(|| match self.stopped.get() {
            Some(why) => why.clone(),
            None if lock(&self.queue).closed => {
                "the recorder was shut down before they were stored".to_owned()
            }
            None => "the store answered with an error it does not explain".to_owned(),
        });
        FlushReport {
            waited_for: waiter.waited_for,
            stored: waiter
                .waited_for
                .saturating_sub(tally.failed + pending.total()),
            failed: tally.failed,
            failed_events: tally.failed_events,
            pending,
            deadline_passed: in_memory + spills > 0,
            why,
        }
    }

    /// Tells the `flush` calls waiting for own spills what became of the
    /// events of a replayed chunk (some perhaps spilled by this recorder)
    /// that were not stored: `kept` given back to `place`, and `failed`.
    fn spills_settled_badly(&self, kept: u64, place: Place, failed: Vec<(usize, FailedEvent)>) {
        if kept == 0 && failed.is_empty() {
            return;
        }
        let settled = self.progress.borrow().spill_settled;
        for waiter in lock(&self.waiters).iter() {
            if waiter.spilled > settled {
                let mut tally = lock(&waiter.tally);
                tally.give_back(kept, place);
                for (_, event) in &failed {
                    tally.fail(event);
                }
            }
        }
    }

    /// Events in batches being sent now.
    fn in_flight(&self) -> u64 {
        let finished = lock(&self.finished);
        let settled = self.progress.borrow().queue_settled
            + finished
                .iter()
                .map(|(&start, batch)| batch.end - start)
                .sum::<u64>();
        let taken = lock(&self.queue).taken;
        drop(finished);
        taken.saturating_sub(settled)
    }

    /// What this recorder holds in its spool.
    fn spool_usage(&self) -> spool::SpoolUsage {
        self.spool
            .as_ref()
            .map(|spool| lock(spool).usage())
            .unwrap_or_default()
    }

    /// Reports the stats to the `metrics` recorder (feature `metrics`).
    fn publish(&self) {
        #[cfg(feature = "metrics")]
        self.published.publish(&self.stats());
    }

    /// Reports the stats a last time, and takes this recorder's share out
    /// of the gauges: it holds nothing any more.
    fn retire(&self) {
        #[cfg(feature = "metrics")]
        self.published.retire(&self.stats());
    }

    fn stats(&self) -> RecorderStats {
        let c = &self.counters;
        let in_flight = self.in_flight();
        let spool = self.spool_usage();
        let queue = lock(&self.queue);
        RecorderStats {
            queued: queue.len as u64,
            in_flight,
            spool_files: spool.files,
            spool_bytes: spool.bytes,
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
    ///
    /// A cost the caller set wins (provider-reported: marked
    /// [`CostSource::Provider`](crate::model::usage::CostSource::Provider)
    /// by [`UsageEvent::cost_usd`]). A computed cost prices every token
    /// class at its own rate ([`PriceTable::quote`](crate::model::PriceTable::quote)) and is marked with the
    /// price and table that set it. A model without a price, or an event
    /// with tokens in a class its price has no rate for, is unpriced: the
    /// unknown-model policy applies (`Error` names `model` and the class).
    fn price(&self, event: &mut UsageEvent, at: DateTime<Utc>) -> Result<()> {
        let Some(prices) = &self.config.prices else {
            return Ok(());
        };
        if event.cost_usd.is_some() || event.total_tokens() == 0 || event.model.is_empty() {
            return Ok(());
        }
        let quote = prices.quote(&event.provider, &event.model, at, &event.tokens_by_class())?;
        match quote {
            Ok(priced) => {
                let cost = priced.cost;
                event.cost_usd = Some(validate_amount("cost_usd", cost)?);
                event.cost_source = Some(priced.source);
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
            Err(unpriced) => match self.config.unknown_model {
                UnknownModelPolicy::Error => {
                    let what = match unpriced {
                        Unpriced::NoPrice => String::new(),
                        Unpriced::NoRate(class) => format!(" {class} tokens"),
                    };
                    return Err(Error::invalid_input(
                        "model",
                        format_args!(
                            "no price for {}/{}{what} on {}",
                            quoted(&event.provider),
                            quoted(&event.model),
                            at.date_naive()
                        ),
                    ));
                }
                UnknownModelPolicy::ZeroCost => {
                    tracing::warn!(provider = %event.provider, model = %event.model,
                        unpriced = ?unpriced, "no price for model; recording zero cost");
                    event.cost_usd = Some(Decimal::ZERO);
                    event.cost_source = None;
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
