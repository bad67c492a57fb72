//! How a recorder batches, retries and spools, and the builder that checks
//! it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::UsageRecorder;
use super::sink::UsageSink;
use super::spool::SpoolSync;
use crate::config::{check_count, check_duration};
use crate::error::{Error, Result};
use crate::model::PriceTable;
use crate::store::Principal;

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

/// A recorder's settings, as [`RecorderBuilder`] checked them; read them
/// back with [`UsageRecorder::config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecorderConfig {
    /// Events per batch (one store call).
    pub batch_size: usize,
    /// Longest an event waits before its batch is sent.
    pub flush_interval: Duration,
    /// Batches sent concurrently.
    pub max_in_flight: usize,
    /// Events kept in memory before spilling to the spool.
    pub max_buffered_events: usize,
    /// Where events that cannot be delivered are spooled.
    pub spool_dir: Option<PathBuf>,
    /// When spool writes are synced.
    pub spool_sync: SpoolSync,
    /// What to do when the queue is full and there is no spool.
    pub backpressure: Backpressure,
    /// First retry delay.
    pub retry_min_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// Prices for computing the cost of events that have none.
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
    fn validate(&self) -> Result<()> {
        check_count("batch_size", self.batch_size, 1, 10_000)?;
        check_duration(
            "flush_interval",
            self.flush_interval,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )?;
        check_count("max_in_flight", self.max_in_flight, 1, 64)?;
        check_count(
            "max_buffered_events",
            self.max_buffered_events,
            self.batch_size,
            10_000_000,
        )?;
        check_duration(
            "retry_min_delay",
            self.retry_min_delay,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )?;
        check_duration(
            "retry_max_delay",
            self.retry_max_delay,
            self.retry_min_delay,
            Duration::from_secs(3600),
        )
    }
}

/// Configures and starts a [`UsageRecorder`]: from
/// [`UsageRecorder::builder`]. Every setting has a default;
/// [`start`](Self::start) checks them all, so a setting out of range is a
/// `Config` error naming it.
///
/// ```
/// # use std::time::Duration;
/// # use tenancy::{ErrorKind, MemoryStore, Tenancy, UsageRecorder};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// # let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// let recorder = UsageRecorder::builder(tenancy.clone())
///     .batch_size(1000)
///     .flush_interval(Duration::from_millis(250))
///     .start()?;
///
/// let err = UsageRecorder::builder(tenancy).flush_interval(Duration::MAX).start().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert!(err.message().contains("flush_interval"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until start()"]
pub struct RecorderBuilder {
    sink: Arc<dyn UsageSink>,
    config: RecorderConfig,
}

impl RecorderBuilder {
    pub(crate) fn new(sink: Arc<dyn UsageSink>) -> Self {
        RecorderBuilder {
            sink,
            config: RecorderConfig::default(),
        }
    }

    /// Events per batch (one store call). Default 500; 1 to 10 000.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.config.batch_size = events;
        self
    }

    /// Longest an event waits before its batch is sent. Default 1 s; 1 ms
    /// to 1 hour.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval = interval;
        self
    }

    /// Batches sent concurrently. Default 4 (with one, every batch waits a
    /// full round trip for the one before); 1 to 64.
    pub fn max_in_flight(mut self, batches: usize) -> Self {
        self.config.max_in_flight = batches;
        self
    }

    /// Events kept in memory before spilling to the spool. Default
    /// 100 000; from the batch size to 10 000 000.
    pub fn max_buffered_events(mut self, events: usize) -> Self {
        self.config.max_buffered_events = events;
        self
    }

    /// Where to spool events that cannot be delivered (created if missing).
    /// Default none.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.spool_dir = Some(dir.into());
        self
    }

    /// When spool writes are synced. Default [`SpoolSync::EveryWrite`].
    pub fn spool_sync(mut self, sync: SpoolSync) -> Self {
        self.config.spool_sync = sync;
        self
    }

    /// What to do when the queue is full and there is no spool. Default
    /// [`Backpressure::Reject`].
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.config.backpressure = policy;
        self
    }

    /// The retry delays: exponential with jitter from `min` (default
    /// 100 ms; 1 ms to 1 minute) up to `max` (default 10 s; `min` to 1
    /// hour).
    pub fn retry_delays(mut self, min: Duration, max: Duration) -> Self {
        self.config.retry_min_delay = min;
        self.config.retry_max_delay = max;
        self
    }

    /// Prices for computing the cost of events that have none. Default
    /// none: cost is recorded only when the caller supplies it.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.config.prices = Some(Arc::new(prices));
        self
    }

    /// What to do with an unpriced model when prices are set. Default
    /// [`UnknownModelPolicy::ZeroCost`].
    pub fn unknown_model(mut self, policy: UnknownModelPolicy) -> Self {
        self.config.unknown_model = policy;
        self
    }

    /// Checks the settings and starts the recorder and its background
    /// flusher on the current tokio runtime; files left in the spool
    /// directory by earlier recorders are replayed first.
    ///
    /// `Config` for a setting out of range, for a store that is not the
    /// service role (recording usage needs it: a user-JWT store would fail
    /// every event), and outside a tokio runtime; `Unavailable` if the spool
    /// directory cannot be created.
    pub fn start(self) -> Result<UsageRecorder> {
        self.config.validate()?;
        if self.sink.principal() != Principal::Service {
            return Err(Error::config(
                "a UsageRecorder needs a store acting as the service role: a user client \
                 (a user's JWT, row-level security) may not write usage",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::config("UsageRecorder::builder(..).start() needs a tokio runtime").with_source(e)
        })?;
        UsageRecorder::launch(self.sink, self.config, &runtime)
    }
}
