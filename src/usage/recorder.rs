//! `UsageRecorder`: batching, non-blocking usage recording for workers.
//!
//! [`UsageRecorder::record`] validates an event, gives it an id (UUIDv7) and
//! a time, prices it, puts it in a queue and returns; it never waits on the
//! network. A background task started on the current tokio runtime sends the
//! queue in batches — by size (default 500) or every interval (default 1 s),
//! one store call per batch, up to `max_in_flight` (default 4) at once —
//! through [`Tenancy::record_usage_batch`], so
//! counters, limits and alerts see the usage exactly as on the request path.
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
//! - An event the store refuses for good (say, its organization was deleted)
//!   is counted in [`RecorderStats::failed`] and logged with its full JSON at
//!   error level.
//! - [`shutdown`](UsageRecorder::shutdown) drains within a deadline and
//!   spools what it cannot deliver; dropping the last handle without
//!   shutdown spools the queue synchronously. Without a `spool_dir`,
//!   undelivered events are handed back in the [`ShutdownReport`].
//!
//! A process killed outright (SIGKILL, power loss) loses what was only in
//! memory: at most `max_buffered_events` plus the `max_in_flight` batches
//! being sent.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::context::TenantContext;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{EventId, MetricKey};
use crate::tenancy::Tenancy;
use crate::usage::UsageEvent;
use crate::usage::price::PriceTable;
use crate::usage::spool::{self, Spool, SpoolSync};

/// What `record` does when the queue is full and the spool is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backpressure {
    /// Return an `Unavailable` (retryable) error. The default.
    #[default]
    Reject,
    /// Block the calling thread until there is room. Use only where blocking
    /// a thread is acceptable (a worker's own thread, `spawn_blocking`).
    Block,
}

/// What `record` does with an AI call whose model has no price and no
/// caller-supplied cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownModelPolicy {
    /// Record it with zero cost and log a warning. The default.
    #[default]
    ZeroCost,
    /// Reject it: `InvalidInput` naming `model`.
    Error,
}

/// How a [`UsageRecorder`] batches, retries and spools.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Events per batch (one store call). Default 500.
    pub batch_size: usize,
    /// Longest an event waits before its batch is sent. Default 1 s.
    pub flush_interval: Duration,
    /// Batches sent concurrently. Default 4: with one, every batch waits a
    /// full round trip for the one before.
    pub max_in_flight: usize,
    /// Events kept in memory before spilling to the spool. Default 100 000.
    pub max_buffered_events: usize,
    /// Where to spool events that cannot be delivered. Default none.
    pub spool_dir: Option<PathBuf>,
    /// When spool writes are synced. Default [`SpoolSync::EveryWrite`].
    pub spool_sync: SpoolSync,
    /// What to do when the queue is full and there is no spool.
    pub backpressure: Backpressure,
    /// First retry delay. Default 100 ms.
    pub retry_min_delay: Duration,
    /// Longest retry delay. Default 10 s.
    pub retry_max_delay: Duration,
    /// Prices for computing the cost of events that have none. Default
    /// none: cost is recorded only when the caller supplies it.
    pub prices: Option<Arc<PriceTable>>,
    /// What to do with an unpriced model when `prices` is set.
    pub unknown_model: UnknownModelPolicy,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            batch_size: 500,
            flush_interval: Duration::from_secs(1),
            max_in_flight: 4,
            max_buffered_events: 100_000,
            spool_dir: None,
            spool_sync: SpoolSync::default(),
            backpressure: Backpressure::default(),
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(10),
            prices: None,
            unknown_model: UnknownModelPolicy::default(),
        }
    }
}

impl RecorderConfig {
    /// Sets the spool directory.
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// Sets the price table.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = Some(Arc::new(prices));
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::new(ErrorKind::Config, what.to_owned()));
        if self.batch_size == 0 {
            return bad("recorder batch_size must be at least 1");
        }
        if self.max_buffered_events < self.batch_size {
            return bad("recorder max_buffered_events must be at least batch_size");
        }
        if self.max_in_flight == 0 {
            return bad("recorder max_in_flight must be at least 1");
        }
        if self.flush_interval.is_zero() {
            return bad("recorder flush_interval must be longer than zero");
        }
        Ok(())
    }
}

/// Counts since the recorder started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Events waiting in memory now.
    pub queued: u64,
    /// Events accepted by `record`.
    pub recorded: u64,
    /// Events the store counted for the first time.
    pub sent: u64,
    /// Events the store already had (a retry that had landed).
    pub duplicates: u64,
    /// Batch attempts that failed transiently and were retried.
    pub retried: u64,
    /// Events written to the spool.
    pub spooled: u64,
    /// Events delivered from spool files.
    pub replayed: u64,
    /// Events the store refused for good; logged at error level.
    pub failed: u64,
}

/// What [`UsageRecorder::shutdown`] left behind.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// The final counts.
    pub stats: RecorderStats,
    /// Events neither delivered nor spooled (only without a `spool_dir`).
    /// Hand them to another recorder or store them yourself.
    pub undelivered: Vec<UsageEvent>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    duplicates: AtomicU64,
    retried: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    /// Queued events, already cut into batches: every chunk but the last
    /// holds exactly `batch_size` events. `record` pushes into the last
    /// chunk, whose capacity is reserved up front, so it never moves the
    /// events already queued (and stays flat while the backend is down);
    /// the flusher takes a whole chunk as a batch without copying.
    chunks: VecDeque<Vec<UsageEvent>>,
    /// Events in `chunks`.
    len: usize,
    /// Events ever pushed; an event's position in this count is its queue
    /// sequence number.
    pushed: u64,
    /// Events ever taken into batches (a prefix of the sequence).
    taken: u64,
    /// No more `record` calls are accepted.
    closed: bool,
    /// Stop retrying at this instant and persist what is left.
    give_up_at: Option<Instant>,
    /// Undelivered events when there is no spool to put them in.
    undelivered: Vec<UsageEvent>,
}

impl Queue {
    /// Appends `event`; true when that completes a batch.
    fn push(&mut self, event: UsageEvent, batch_size: usize) -> bool {
        let chunk = match self.chunks.back_mut() {
            Some(chunk) if chunk.len() < batch_size => chunk,
            _ => {
                self.chunks.push_back(Vec::with_capacity(batch_size));
                self.chunks.back_mut().expect("just pushed")
            }
        };
        chunk.push(event);
        self.len += 1;
        self.pushed += 1;
        chunk.len() == batch_size
    }

    /// The oldest chunk, if it is a full batch or `partial` allows less.
    fn pop_batch(&mut self, batch_size: usize, partial: bool) -> Vec<UsageEvent> {
        match self.chunks.front() {
            Some(chunk) if partial || chunk.len() == batch_size => {
                let batch = self.chunks.pop_front().expect("front exists");
                self.len -= batch.len();
                self.taken += batch.len() as u64;
                batch
            }
            _ => Vec::new(),
        }
    }

    /// Every queued event, oldest first.
    fn drain(&mut self) -> Vec<UsageEvent> {
        self.len = 0;
        self.chunks.drain(..).flatten().collect()
    }
}

/// What `flush` waits on. Batches finish out of order, so queue progress is
/// the contiguous prefix of queue sequence numbers whose batches settled.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Every queued event below this sequence number is settled.
    queue_settled: u64,
    /// Own spilled events delivered from the spool.
    spill_settled: u64,
}

/// Event ids for one recorder: UUIDv7, the recording millisecond, then a
/// 74-bit counter that starts at a random value and goes up by one per id
/// (RFC 9562, section 6.2, method 1). Ids are unique within a recorder by
/// construction, so one random draw serves them all; two recorders'
/// counters would have to start within a few billion of each other, out of
/// 2^74, to collide. Ids are not secrets: they need only be unique.
#[derive(Debug)]
struct EventIds {
    /// The counter's top 10 bits, fixed.
    high: u128,
    /// The counter's low 64 bits, the part that counts: unique for 2^64
    /// ids, far more than a recorder will ever make.
    low: AtomicU64,
}

impl EventIds {
    fn new() -> Self {
        let seed = Uuid::new_v4().as_u128();
        EventIds {
            high: (seed >> 64) & 0x3ff,
            low: AtomicU64::new(seed as u64),
        }
    }

    fn next(&self, at: DateTime<Utc>) -> EventId {
        let counter = (self.high << 64) | u128::from(self.low.fetch_add(1, Ordering::Relaxed));
        let millis = at.timestamp_millis().clamp(0, (1 << 48) - 1) as u128;
        // unix_ts_ms (48) | ver 7 (4) | rand_a (12) | var 0b10 (2) | rand_b (62)
        let bits = (millis << 80)
            | (0x7 << 76)
            | ((counter >> 62) << 64)
            | (0b10 << 62)
            | (counter & ((1 << 62) - 1));
        EventId::from(Uuid::from_u128(bits))
    }
}

#[derive(Debug)]
struct Shared {
    tenancy: Tenancy,
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
    /// Settled batches past the contiguous prefix: start → end.
    finished: Mutex<std::collections::BTreeMap<u64, u64>>,
    /// Own events spilled to the spool by `record` (memory full).
    spilled: AtomicU64,
    spool: Option<Mutex<Spool>>,
    spool_pending: AtomicBool,
    /// A `flush` wants partial batches sent now.
    urgent: AtomicBool,
}

/// A batching, non-blocking usage recorder for worker services. Cheap to
/// clone; clones share the queue. See the [module docs](crate::usage::recorder) for the
/// delivery guarantees.
///
/// ```
/// # use tenancy::{MemoryStore, NewOrganization, Tenancy, UserId, UsageEvent};
/// # use tenancy::usage::{RecorderConfig, UsageRecorder};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// # let org = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
/// let recorder = UsageRecorder::start(tenancy.clone(), RecorderConfig::default())?;
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl UsageRecorder {
    /// Starts a recorder and its background flusher on the current tokio
    /// runtime. It records through `tenancy` (its store, time zones, limits
    /// and alerts). Files left in `spool_dir` by earlier recorders are
    /// replayed first.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(tenancy: Tenancy, config: RecorderConfig) -> Result<UsageRecorder> {
        config.validate()?;
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
            tenancy,
            ids: EventIds::new(),
            config,
            queue: Mutex::new(Queue::default()),
            room: Condvar::new(),
            wake: Notify::new(),
            counters: Counters::default(),
            progress: watch::Sender::new(Progress::default()),
            finished: Mutex::default(),
            spilled: AtomicU64::new(0),
            spool,
            spool_pending: AtomicBool::new(spool_pending),
            urgent: AtomicBool::new(false),
        });
        let flusher = tokio::spawn(Arc::clone(&shared).run());
        Ok(UsageRecorder {
            handle: Arc::new(Handle {
                shared,
                flusher: Mutex::new(Some(flusher)),
            }),
        })
    }

    /// Validates, prices and enqueues an event; returns its id. Never waits
    /// on the network. Invalid events are `InvalidInput` and nothing is
    /// enqueued.
    pub fn record(&self, mut event: UsageEvent) -> Result<EventId> {
        let shared = &self.handle.shared;
        event.validate()?;
        // One clock read serves both the event time and its UUIDv7.
        let now = shared.tenancy.now();
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
    /// unit of the metric `action`, with `resource` in the metadata.
    pub fn record_activity(
        &self,
        ctx: &TenantContext,
        action: &str,
        resource: &str,
    ) -> Result<EventId> {
        let metric = MetricKey::parse(action)?;
        let event = UsageEvent::new(ctx.org())
            .user(ctx.user())
            .ai_call("", "", action)
            .quantity(metric, Decimal::ONE)
            .metadata(serde_json::json!({ "resource": resource }));
        self.record(event)
    }

    /// Returns once every event recorded before the call is stored (or
    /// refused for good). Sends at once instead of waiting for the
    /// interval. While the backend is down this waits; bound it with
    /// `tokio::time::timeout` if needed.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let queued = lock(&shared.queue).pushed;
        let spilled = shared.spilled.load(Ordering::SeqCst);
        let mut progress = shared.progress.subscribe();
        shared.urgent.store(true, Ordering::SeqCst);
        shared.wake.notify_one();
        progress
            .wait_for(|p| p.queue_settled >= queued && p.spill_settled >= spilled)
            .await
            .map(drop)
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the recorder's flusher has stopped"))
    }

    /// Stops accepting events, delivers what is queued until `deadline`
    /// passes, then spools whatever is left (or returns it, without a
    /// spool). Other clones of this recorder stop accepting events too.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let shared = Arc::clone(&self.handle.shared);
        {
            let mut queue = lock(&shared.queue);
            queue.closed = true;
            queue.give_up_at = Some(Instant::now() + deadline);
        }
        shared.room.notify_all();
        shared.wake.notify_waiters();
        shared.wake.notify_one();
        let flusher = lock(&self.handle.flusher).take();
        if let Some(flusher) = flusher {
            // The flusher gives up by itself at the deadline; the extra
            // second covers a store call already under way.
            let _ = tokio::time::timeout(deadline + Duration::from_secs(1), flusher).await;
        }
        // Whatever is still queued (the flusher did not get to it) is
        // persisted now.
        let leftover = lock(&shared.queue).drain();
        shared.persist(leftover);
        ShutdownReport {
            stats: shared.stats(),
            undelivered: std::mem::take(&mut lock(&shared.queue).undelivered),
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
        shared.room.notify_all();
        shared.wake.notify_waiters();
        shared.wake.notify_one();
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

enum Delivery {
    /// Stored (or refused for good and logged).
    Settled,
    /// Not delivered: the recorder is stopping. The events were given back.
    Stopped(Vec<UsageEvent>),
}

impl Shared {
    fn stats(&self) -> RecorderStats {
        let c = &self.counters;
        let queue = lock(&self.queue);
        RecorderStats {
            queued: queue.len as u64,
            recorded: queue.pushed + self.spilled.load(Ordering::SeqCst),
            sent: c.sent.load(Ordering::SeqCst),
            duplicates: c.duplicates.load(Ordering::SeqCst),
            retried: c.retried.load(Ordering::SeqCst),
            spooled: c.spooled.load(Ordering::SeqCst),
            replayed: c.replayed.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
        }
    }

    /// Marks the queue events `start..end` settled and moves the
    /// contiguous prefix forward.
    fn settle_range(&self, start: u64, end: u64) {
        let mut finished = lock(&self.finished);
        finished.insert(start, end);
        self.progress.send_modify(|p| {
            while let Some(end) = finished.remove(&p.queue_settled) {
                p.queue_settled = end;
            }
        });
    }

    /// Fills in the cost from the price table at the prices in effect `at`
    /// (the event's time), per the unknown-model policy.
    fn price(&self, event: &mut UsageEvent, at: DateTime<Utc>) -> Result<()> {
        let Some(prices) = &self.config.prices else {
            return Ok(());
        };
        if event.cost_usd.is_some() || event.total_tokens() == 0 || event.model.is_empty() {
            return Ok(());
        }
        match prices.cost(
            &event.provider,
            &event.model,
            at,
            event.input_tokens,
            event.cached_input_tokens,
            event.output_tokens,
        ) {
            Some(cost) => event.cost_usd = Some(cost),
            None => match self.config.unknown_model {
                UnknownModelPolicy::Error => {
                    return Err(Error::invalid_input(
                        "model",
                        format!(
                            "no price for {}/{} on {}",
                            event.provider,
                            event.model,
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
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the usage recorder is shut down",
                ));
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
                match lock(spool).append([&event]) {
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
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Takes the next batch off the queue, with the queue sequence number
    /// of its first event. A partial batch only when `partial` (the
    /// interval has passed, a flush asked, or the recorder is closing).
    fn take_batch(&self, partial: bool) -> (u64, Vec<UsageEvent>) {
        let mut queue = lock(&self.queue);
        let partial = partial || queue.closed;
        let start = queue.taken;
        let batch = queue.pop_batch(self.config.batch_size, partial);
        drop(queue);
        if !batch.is_empty() {
            self.room.notify_all();
        }
        (start, batch)
    }

    fn give_up_at(&self) -> Option<Instant> {
        lock(&self.queue).give_up_at
    }

    fn stopping(&self) -> bool {
        self.give_up_at().is_some_and(|at| Instant::now() >= at)
    }

    /// Puts events that could not be delivered in the spool, or, without
    /// one, aside for the shutdown report.
    fn persist(&self, events: Vec<UsageEvent>) {
        if events.is_empty() {
            return;
        }
        if let Some(spool) = &self.spool {
            match lock(spool).append(&events) {
                Ok(n) => {
                    self.counters.spooled.fetch_add(n as u64, Ordering::SeqCst);
                    self.spool_pending.store(true, Ordering::SeqCst);
                    tracing::warn!(events = n, "usage events spooled");
                    return;
                }
                Err(e) => tracing::error!(error = %e, "usage spool unavailable"),
            }
        }
        lock(&self.queue).undelivered.extend(events);
    }

    /// The flusher: keeps up to `max_in_flight` batches going, replays the
    /// spool when idle, until shut down.
    async fn run(self: Arc<Self>) {
        let mut in_flight = tokio::task::JoinSet::new();
        let mut ranges = std::collections::HashMap::new();
        let interval = self.config.flush_interval;
        // When a partial batch may go out, so an event waits at most about
        // one interval.
        let mut partial_due = tokio::time::Instant::now() + interval;
        loop {
            while in_flight.len() < self.config.max_in_flight {
                let partial = self.urgent.load(Ordering::SeqCst)
                    || tokio::time::Instant::now() >= partial_due;
                let (start, batch) = self.take_batch(partial);
                if batch.is_empty() {
                    if lock(&self.queue).len == 0 {
                        self.urgent.store(false, Ordering::SeqCst);
                        partial_due = tokio::time::Instant::now() + interval;
                    }
                    break;
                }
                let end = start + batch.len() as u64;
                let me = Arc::clone(&self);
                let task = in_flight.spawn(async move { me.deliver(batch).await });
                ranges.insert(task.id(), (start, end));
            }
            if !in_flight.is_empty() {
                tokio::select! {
                    Some(joined) = in_flight.join_next_with_id() => {
                        let (id, delivery) = match joined {
                            Ok((id, delivery)) => (id, Some(delivery)),
                            Err(e) => {
                                // Only a panic gets here; its events stay
                                // unsettled and `flush` reports nothing false.
                                tracing::error!(error = %e, "a usage delivery task failed");
                                (e.id(), None)
                            }
                        };
                        if let Some((start, end)) = ranges.remove(&id) {
                            match delivery {
                                Some(Delivery::Settled) => self.settle_range(start, end),
                                Some(Delivery::Stopped(events)) => {
                                    self.persist(events);
                                    self.settle_range(start, end);
                                }
                                None => {}
                            }
                        }
                    }
                    _ = self.wake.notified() => {}
                    // Only with a free slot: otherwise a due partial batch
                    // could not be sent anyway, and this would spin.
                    _ = tokio::time::sleep_until(partial_due),
                        if in_flight.len() < self.config.max_in_flight => {}
                }
                continue;
            }
            // Files can appear behind our back: a recorder in this process
            // dropped a moment ago still held its file's lock at our last
            // look. One directory listing per interval finds them.
            if let Some(spool) = &self.spool
                && !self.spool_pending.load(Ordering::SeqCst)
                && lock(spool).has_pending()
            {
                self.spool_pending.store(true, Ordering::SeqCst);
            }
            if self.spool_pending.load(Ordering::SeqCst) && !self.stopping() {
                self.replay().await;
            }
            let (closed, empty) = {
                let queue = lock(&self.queue);
                (queue.closed, queue.len == 0)
            };
            if closed && empty {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(partial_due) => {}
            }
        }
    }

    /// Delivers every spooled file it can; stops (keeping the files) if the
    /// recorder is stopping.
    async fn replay(&self) {
        let Some(spool) = &self.spool else { return };
        let files = match lock(spool).take_for_replay() {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the usage spool");
                return;
            }
        };
        self.spool_pending.store(false, Ordering::SeqCst);
        for path in files {
            let own = lock(spool).is_own(&path);
            let events = match spool::read_events(&path) {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a spool file");
                    self.spool_pending.store(true, Ordering::SeqCst);
                    continue;
                }
            };
            tracing::info!(path = %path.display(), events = events.len(), "replaying spooled usage");
            let mut events = events.into_iter();
            loop {
                let chunk: Vec<UsageEvent> = events.by_ref().take(self.config.batch_size).collect();
                let n = chunk.len() as u64;
                if n == 0 {
                    break;
                }
                match self.deliver(chunk).await {
                    Delivery::Settled => {
                        self.counters.replayed.fetch_add(n, Ordering::SeqCst);
                        if own {
                            self.progress.send_modify(|p| p.spill_settled += n);
                        }
                    }
                    // The file stays; the next recorder replays it (resent
                    // chunks count once).
                    Delivery::Stopped(_) => {
                        self.spool_pending.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
            if let Err(e) = spool::remove(&path) {
                tracing::error!(error = %e, "cannot remove a replayed spool file");
            }
        }
    }

    /// Sends one batch, retrying transient failures with backoff until it
    /// is stored or the recorder is stopping. A batch the store refuses for
    /// good is split, so one bad event cannot hold back the others.
    async fn deliver(&self, batch: Vec<UsageEvent>) -> Delivery {
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
            let written = match &prepared {
                Some(prepared) => self.tenancy.write_usage(prepared).await,
                None => match self.tenancy.prepare_usage(batch.iter().cloned()).await {
                    Ok(ready) => self.tenancy.write_usage(prepared.insert(ready)).await,
                    Err(e) => Err(e),
                },
            };
            match written {
                Ok(outcome) => {
                    self.counters
                        .sent
                        .fetch_add(outcome.inserted as u64, Ordering::SeqCst);
                    self.counters
                        .duplicates
                        .fetch_add(outcome.duplicates as u64, Ordering::SeqCst);
                    return Delivery::Settled;
                }
                Err(e) if e.is_retryable() => {
                    if self.stopping() {
                        return Delivery::Stopped(batch);
                    }
                    self.counters.retried.fetch_add(1, Ordering::SeqCst);
                    let delay = backoff.next().unwrap_or(self.config.retry_max_delay);
                    tracing::warn!(error = %e, events = batch.len(), ?delay, "usage batch failed; retrying");
                    self.sleep_unless_stopping(delay).await;
                }
                Err(e) if batch.len() == 1 => {
                    self.counters.failed.fetch_add(1, Ordering::SeqCst);
                    let json = serde_json::to_string(&batch[0]).unwrap_or_default();
                    tracing::error!(error = %e, event = %json, "usage event refused by the store; not retried");
                    return Delivery::Settled;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), "usage batch refused; sending one by one");
                    let mut stopped = Vec::new();
                    for event in batch {
                        if !stopped.is_empty() {
                            stopped.push(event);
                            continue;
                        }
                        if let Delivery::Stopped(rest) = Box::pin(self.deliver(vec![event])).await {
                            stopped.extend(rest);
                        }
                    }
                    return if stopped.is_empty() {
                        Delivery::Settled
                    } else {
                        Delivery::Stopped(stopped)
                    };
                }
            }
        }
    }

    /// Sleeps `delay`, waking early when the recorder starts stopping.
    async fn sleep_unless_stopping(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let until = match self.give_up_at() {
            Some(at) => until.min(at),
            None => until,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrgId;

    #[test]
    fn event_ids_are_v7_in_the_events_millisecond_and_count_up() {
        let ids = EventIds::new();
        let at = DateTime::from_timestamp_millis(1_767_225_600_123).unwrap();
        let first = Uuid::from(ids.next(at));
        let second = Uuid::from(ids.next(at));
        for id in [first, second] {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            assert_eq!(
                secs * 1000 + u64::from(nanos / 1_000_000),
                1_767_225_600_123
            );
        }
        // Same millisecond: the counter orders them.
        assert!(second > first);
        // Another recorder starts elsewhere.
        assert_ne!(Uuid::from(EventIds::new().next(at)), first);
    }

    #[test]
    fn event_id_counter_carries_across_the_variant_bits() {
        let ids = EventIds {
            high: 0,
            low: AtomicU64::new((1 << 62) - 1),
        };
        let at = DateTime::from_timestamp_millis(0).unwrap();
        let below = Uuid::from(ids.next(at));
        let above = Uuid::from(ids.next(at));
        assert_eq!(above.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(above.get_version_num(), 7);
        assert!(above > below);
    }

    #[test]
    fn the_queue_cuts_batches_as_events_arrive() {
        let org = OrgId::new_v7();
        let mut queue = Queue::default();
        let completed: Vec<bool> = (0..7)
            .map(|_| queue.push(UsageEvent::new(org), 3))
            .collect();
        assert_eq!(completed, [false, false, true, false, false, true, false]);
        assert_eq!(queue.len, 7);
        assert_eq!(queue.pop_batch(3, false).len(), 3);
        assert_eq!(queue.pop_batch(3, false).len(), 3);
        // The last chunk holds one event: only a partial take gets it.
        assert!(queue.pop_batch(3, false).is_empty());
        assert_eq!(queue.pop_batch(3, true).len(), 1);
        assert_eq!((queue.len, queue.pushed, queue.taken), (0, 7, 7));
        queue.push(UsageEvent::new(org), 3);
        queue.push(UsageEvent::new(org), 3);
        assert_eq!(queue.drain().len(), 2);
        assert_eq!(queue.len, 0);
    }
}
