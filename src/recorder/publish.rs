//! The recorder's stats reported to the `metrics` facade (feature
//! `metrics`): counters by how much they grew since the last report, and
//! gauges by how much they changed, so that the recorders of a process
//! add up and a recorder that ends takes its share out.

use std::sync::Mutex;

use super::stats::RecorderStats;
use crate::metrics as names;
use crate::sync::lock;

/// What a recorder last reported; `None` once it retired.
#[derive(Debug)]
pub(super) struct Published {
    last: Mutex<Option<RecorderStats>>,
}

impl Default for Published {
    fn default() -> Self {
        names::describe();
        Published {
            last: Mutex::new(Some(RecorderStats::default())),
        }
    }
}

impl Published {
    /// Reports what changed since the last report.
    pub(super) fn publish(&self, now: &RecorderStats) {
        let mut last = lock(&self.last);
        if let Some(last) = last.as_mut() {
            report(last, now);
            *last = *now;
        }
    }

    /// Reports what changed, then takes this recorder's gauges out: it
    /// reports nothing more.
    pub(super) fn retire(&self, now: &RecorderStats) {
        let mut last = lock(&self.last);
        if let Some(last) = last.take() {
            report(&last, now);
            let gone = RecorderStats {
                queued: 0,
                in_flight: 0,
                spool_files: 0,
                spool_bytes: 0,
                ..*now
            };
            report(now, &gone);
        }
    }
}

/// Reports the change from `last` to `now`.
fn report(last: &RecorderStats, now: &RecorderStats) {
    let counters = [
        (names::RECORDER_EVENTS_RECORDED, last.recorded, now.recorded),
        (names::RECORDER_EVENTS_SENT, last.sent, now.sent),
        (
            names::RECORDER_EVENTS_DUPLICATE,
            last.duplicates,
            now.duplicates,
        ),
        (names::RECORDER_EVENTS_FAILED, last.failed, now.failed),
        (names::RECORDER_EVENTS_SPOOLED, last.spooled, now.spooled),
        (names::RECORDER_EVENTS_REPLAYED, last.replayed, now.replayed),
        (names::RECORDER_RETRIES, last.retried, now.retried),
        (
            names::RECORDER_SPOOL_UNREADABLE,
            last.unreadable,
            now.unreadable,
        ),
    ];
    for (name, last, now) in counters {
        if now > last {
            ::metrics::counter!(name).increment(now - last);
        }
    }
    let gauges = [
        (names::RECORDER_QUEUE_DEPTH, last.queued, now.queued),
        (names::RECORDER_IN_FLIGHT, last.in_flight, now.in_flight),
        (
            names::RECORDER_SPOOL_FILES,
            last.spool_files,
            now.spool_files,
        ),
        (
            names::RECORDER_SPOOL_BYTES,
            last.spool_bytes,
            now.spool_bytes,
        ),
    ];
    for (name, last, now) in gauges {
        if now > last {
            ::metrics::gauge!(name).increment((now - last) as f64);
        } else if now < last {
            ::metrics::gauge!(name).decrement((last - now) as f64);
        }
    }
}
