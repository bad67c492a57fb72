//! What a recorder counts, the events it could not deliver, and what its
//! flushes and its shutdown report.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::model::UsageEvent;
use crate::sync::lock;

/// How many failed events a recorder keeps for its [`ShutdownReport`],
/// and a flush for its [`FlushReport`]; later ones are counted and logged
/// only.
pub const MAX_FAILED_KEPT: usize = 1_000;

/// Counts since the recorder started, and what it holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Events waiting in memory now, not yet in a batch.
    pub queued: u64,
    /// Events in batches being sent now (retried while the backend is
    /// down); in memory too.
    pub in_flight: u64,
    /// Spool files this recorder holds now: the one it appends to and those
    /// it has taken for replay. A file left by a recorder that crashed
    /// counts once a recorder takes it.
    pub spool_files: u64,
    /// The size of those files, in bytes.
    pub spool_bytes: u64,
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
    /// Spool file lines that were not an event (torn by a crash mid-write,
    /// say): logged at error level and skipped, the rest of the file kept.
    pub unreadable: u64,
    /// Events the store refused for good, or whose delivery panicked;
    /// logged at error level and listed in the [`ShutdownReport`].
    pub failed: u64,
}

/// An event that will not be delivered, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    /// The event, as recorded (id and time filled in).
    pub event: UsageEvent,
    /// Why: the store's error, or the panic's message.
    pub reason: String,
}

/// Where events that are not stored (yet) are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pending {
    /// In memory: queued, or in a batch being sent. The recorder keeps
    /// retrying them; a process killed now loses them.
    pub in_memory: u64,
    /// In the spool: written to a spool file (durable with
    /// [`SpoolSync::EveryWrite`](super::SpoolSync::EveryWrite)), replayed
    /// when the backend takes them, by this recorder or the next one
    /// started on the same directory.
    pub in_spool: u64,
    /// Handed back: neither stored nor spooled (no `spool_dir`, or the spool
    /// failed). The recorder does not retry them;
    /// [`shutdown`](crate::UsageRecorder::shutdown) returns them in
    /// [`ShutdownReport::undelivered`].
    pub handed_back: u64,
}

impl Pending {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.in_memory + self.in_spool + self.handed_back
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// What a [`flush`](crate::UsageRecorder::flush) or
/// [`flush_within`](crate::UsageRecorder::flush_within) came to, for the
/// events it waited for: those recorded (by any clone of the recorder)
/// before the call and not yet settled then — stored, failed for good, or
/// given back to the spool.
///
/// Exact for events queued in memory. Events `record` spilled to the spool
/// (memory full) settle with their spool file: when a file holding some of
/// them is replayed, events of it that fail or are given back again are
/// counted against the flushes waiting for spilled events.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FlushReport {
    /// The events it waited for.
    pub waited_for: u64,
    /// Of those, stored: the store counted them now, or already had them.
    pub stored: u64,
    /// Of those, failed for good: the store refused them (invalid, their
    /// organization gone) or their delivery panicked. They are never
    /// retried; each is also counted in [`RecorderStats::failed`] and
    /// listed in the [`ShutdownReport`].
    pub failed: u64,
    /// The first [`MAX_FAILED_KEPT`] of the failed events, with the
    /// reason.
    pub failed_events: Vec<FailedEvent>,
    /// Of those, what is not stored yet, and where it is.
    pub pending: Pending,
    /// Whether the deadline of
    /// [`flush_within`](crate::UsageRecorder::flush_within) passed before
    /// every event settled (`pending.in_memory` then counts those still
    /// being sent, and `pending.in_spool` spilled ones not yet replayed).
    pub deadline_passed: bool,
    /// Why events were given back, when some were.
    pub(super) why: Option<String>,
}

impl FlushReport {
    /// Whether every event it waited for is stored or failed for good:
    /// nothing is [`pending`](Self::pending).
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// `Ok` if complete, else the `Unavailable` error `flush` returns.
    pub(super) fn into_result(self) -> Result<FlushReport> {
        if self.is_complete() {
            return Ok(self);
        }
        let why = self.why.as_deref().unwrap_or("the deadline passed first");
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} of the events recorded before this flush were not stored ({why}); \
                 they are spooled for a later replay, or handed back by shutdown without a spool",
                self.pending.total()
            ),
        )
        .permanent())
    }
}

/// What [`UsageRecorder::shutdown`](crate::UsageRecorder::shutdown) left
/// behind.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The final counts.
    pub stats: RecorderStats,
    /// What was not stored when it returned: events in the spool files this
    /// recorder holds (its own, and those it took over from recorders
    /// that crashed, as far as it has read them), events handed back in
    /// [`undelivered`](Self::undelivered), and, in memory, events of a
    /// store call still under way after the deadline and its one second of
    /// grace (the call's outcome is then not waited for; normally none).
    pub pending: Pending,
    /// Events neither delivered nor spooled (only without a `spool_dir`, or
    /// with a spool that failed). Hand them to another recorder or store
    /// them yourself.
    pub undelivered: Vec<UsageEvent>,
    /// Events that failed for good, with the reason: the first
    /// [`MAX_FAILED_KEPT`] of them (`stats.failed` counts all).
    pub failed: Vec<FailedEvent>,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) spooled: AtomicU64,
    pub(super) replayed: AtomicU64,
    pub(super) unreadable: AtomicU64,
    pub(super) failed: AtomicU64,
    /// The first failed events, for the shutdown report.
    pub(super) failed_events: Mutex<Vec<FailedEvent>>,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }

    pub(super) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Counts `event` as failed for good, logs it with its full JSON at
    /// error level, and keeps it for the shutdown report while there is
    /// room; returns it for the flush reports.
    pub(super) fn fail(&self, event: UsageEvent, reason: String) -> FailedEvent {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let json = serde_json::to_string(&event).unwrap_or_default();
        tracing::error!(reason = %reason, event = %json, "usage event failed for good; not retried");
        let failed = FailedEvent { event, reason };
        let mut kept = lock(&self.failed_events);
        if kept.len() < MAX_FAILED_KEPT {
            kept.push(failed.clone());
        }
        failed
    }
}
