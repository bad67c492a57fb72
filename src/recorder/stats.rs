//! What a recorder counts, the events it could not deliver, and what its
//! shutdown reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::UsageEvent;
use crate::sync::lock;

/// How many failed events a recorder keeps for its [`ShutdownReport`];
/// later ones are counted and logged only.
pub const MAX_FAILED_KEPT: usize = 1_000;

/// Counts since the recorder started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
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

/// What [`UsageRecorder::shutdown`](crate::UsageRecorder::shutdown) left
/// behind.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The final counts.
    pub stats: RecorderStats,
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
    /// error level, and keeps it for the report while there is room.
    pub(super) fn fail(&self, event: UsageEvent, reason: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let json = serde_json::to_string(&event).unwrap_or_default();
        tracing::error!(reason = %reason, event = %json, "usage event failed for good; not retried");
        let mut kept = lock(&self.failed_events);
        if kept.len() < MAX_FAILED_KEPT {
            kept.push(FailedEvent { event, reason });
        }
    }
}
