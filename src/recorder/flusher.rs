//! The flusher: the background task that keeps batches going, replays the
//! spool, and settles what `flush` waits on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::delivery::panic_message;
use super::stats::Counters;
use super::{Place, Settled, Shared, spool};
use crate::model::UsageEvent;
use crate::sync::lock;

impl Shared {
    /// The flusher task. If it ever panics, the recorder stops accepting
    /// events (`record` returns an error), what is queued is persisted, and
    /// `flush` returns an error instead of waiting on a queue nobody drains.
    pub(super) async fn run_guarded(self: Arc<Self>) {
        let me = Arc::clone(&self);
        let run = tokio::spawn(async move { me.run().await });
        if let Err(e) = run.await {
            let why = match e.try_into_panic() {
                Ok(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
                Err(e) => e.to_string(),
            };
            tracing::error!(reason = %why, "the usage recorder's flusher died; events are persisted");
            self.stop(format!("the recorder's flusher stopped ({why})"));
            let leftover = lock(&self.queue).drain();
            self.persist(leftover);
        }
    }

    /// Keeps up to `max_in_flight` batches going and replays the spool when
    /// idle, until shut down (or the store refuses usage for good).
    async fn run(self: Arc<Self>) {
        let mut in_flight = tokio::task::JoinSet::new();
        let mut ranges = HashMap::new();
        let interval = self.config.flush_interval;
        // When a partial batch may go out, so an event waits at most about
        // one interval.
        let mut partial_due = tokio::time::Instant::now() + interval;
        // When the spool directory is next listed for files behind our back.
        let mut next_scan = tokio::time::Instant::now();
        loop {
            self.publish();
            while in_flight.len() < self.config.max_in_flight && !self.is_stopped() {
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
                        // Deliveries catch their own panics; a join error is
                        // the runtime shutting down.
                        let (id, delivery) = match joined {
                            Ok((id, delivery)) => (id, Some(delivery)),
                            Err(e) => (e.id(), None),
                        };
                        if let Some((start, end)) = ranges.remove(&id) {
                            let mut settled = Settled::empty(end);
                            if let Some(mut delivery) = delivery {
                                settled.kept = delivery
                                    .kept
                                    .iter()
                                    .map(|(at, _)| start + *at as u64)
                                    .collect();
                                settled.kept_to = self.persist(delivery.take_kept());
                                settled.failed = delivery
                                    .failed
                                    .into_iter()
                                    .map(|(at, failed)| (start + at as u64, failed))
                                    .collect();
                            }
                            self.settle_range(start, settled);
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
            if self.is_stopped() {
                // The store takes no usage from us: keep what is queued.
                let leftover = lock(&self.queue).drain();
                self.persist(leftover);
                return;
            }
            // Files can appear behind our back: a recorder in this process
            // dropped a moment ago still held its file's lock at our last
            // look. One directory listing per interval finds them; not one
            // per wake-up, which is every full batch and every flush.
            if let Some(spool) = &self.spool
                && !self.spool_pending.load(Ordering::SeqCst)
                && tokio::time::Instant::now() >= next_scan
            {
                next_scan = tokio::time::Instant::now() + interval;
                if lock(spool).has_pending() {
                    self.spool_pending.store(true, Ordering::SeqCst);
                }
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

    /// Marks the queue events from `start` on settled as `settled` says,
    /// tells the waiting flushes, and moves the contiguous prefix forward.
    fn settle_range(&self, start: u64, settled: Settled) {
        let mut finished = lock(&self.finished);
        if !settled.kept.is_empty() || !settled.failed.is_empty() {
            for waiter in lock(&self.waiters).iter() {
                waiter.count(&settled);
            }
        }
        finished.insert(start, settled);
        self.progress.send_modify(|p| {
            while let Some(settled) = finished.remove(&p.queue_settled) {
                p.queue_settled = settled.end;
            }
        });
    }

    pub(super) fn give_up_at(&self) -> Option<Instant> {
        lock(&self.queue).give_up_at
    }

    /// Whether the recorder is shutting down and its deadline has passed.
    pub(super) fn stopping(&self) -> bool {
        self.is_stopped() || self.give_up_at().is_some_and(|at| Instant::now() >= at)
    }

    /// Puts events that could not be delivered in the spool, or, without
    /// one, aside for the shutdown report; says which.
    pub(super) fn persist(&self, events: Vec<UsageEvent>) -> Place {
        if events.is_empty() {
            return Place::Spool;
        }
        if let Some(spool) = &self.spool {
            match lock(spool).append(&events) {
                Ok(n) => {
                    Counters::add(&self.counters.spooled, n);
                    self.spool_pending.store(true, Ordering::SeqCst);
                    tracing::warn!(events = n, "usage events spooled");
                    return Place::Spool;
                }
                Err(e) => tracing::error!(error = %e, "usage spool unavailable"),
            }
        }
        lock(&self.queue).undelivered.extend(events);
        Place::HandedBack
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
        for file in files {
            let path = &file.path;
            let events = match spool::read_events(path) {
                Ok(contents) => {
                    self.counters
                        .unreadable
                        .fetch_add(contents.unreadable, Ordering::SeqCst);
                    lock(spool).read(path, contents.events.len() as u64);
                    contents.events
                }
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
                let mut delivery = self.deliver(chunk).await;
                if delivery.stopped {
                    // The file stays; the next recorder replays it (resent
                    // chunks count once).
                    self.spool_pending.store(true, Ordering::SeqCst);
                    return;
                }
                // What was kept goes back into the spool, for the next
                // replay.
                let kept = delivery.take_kept();
                let kept_n = kept.len() as u64;
                self.counters
                    .replayed
                    .fetch_add(n - kept_n, Ordering::SeqCst);
                let place = self.persist(kept);
                if file.spilled > 0 {
                    self.spills_settled_badly(kept_n, place, delivery.failed);
                }
            }
            if let Err(e) = spool::remove(path) {
                tracing::error!(error = %e, "cannot remove a replayed spool file");
            }
            // Own spills settle with their whole file: counting per chunk
            // would count again a chunk replayed twice.
            let spilled = lock(spool).finished(path);
            if spilled > 0 {
                self.progress.send_modify(|p| p.spill_settled += spilled);
            }
        }
    }
}
