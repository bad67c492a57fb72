//! The in-memory queue of events waiting to be sent, cut into batches as
//! events arrive, and the progress `flush` waits on.

use std::collections::VecDeque;
use std::time::Instant;

use crate::model::UsageEvent;

#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Queued events, already cut into batches: every chunk but the last
    /// holds exactly `batch_size` events. `record` pushes into the last
    /// chunk, whose capacity is reserved up front, so it never moves the
    /// events already queued (and stays flat while the backend is down);
    /// the flusher takes a whole chunk as a batch without copying.
    pub(super) chunks: VecDeque<Vec<UsageEvent>>,
    /// Events in `chunks`.
    pub(super) len: usize,
    /// Events ever pushed; an event's position in this count is its queue
    /// sequence number.
    pub(super) pushed: u64,
    /// Events ever taken into batches (a prefix of the sequence).
    pub(super) taken: u64,
    /// No more `record` calls are accepted.
    pub(super) closed: bool,
    /// Stop retrying at this instant and persist what is left.
    pub(super) give_up_at: Option<Instant>,
    /// Undelivered events when there is no spool to put them in.
    pub(super) undelivered: Vec<UsageEvent>,
}

impl Queue {
    /// Appends `event`; true when that completes a batch.
    pub(super) fn push(&mut self, event: UsageEvent, batch_size: usize) -> bool {
        let chunk = match self.chunks.back_mut() {
            Some(chunk) if chunk.len() < batch_size => chunk,
            _ => {
                self.chunks.push_back(Vec::with_capacity(batch_size));
                self.chunks
                    .back_mut()
                    .unwrap_or_else(|| unreachable!("a chunk was just pushed"))
            }
        };
        chunk.push(event);
        self.len += 1;
        self.pushed += 1;
        chunk.len() == batch_size
    }

    /// The oldest chunk, if it is a full batch or `partial` allows less.
    pub(super) fn pop_batch(&mut self, batch_size: usize, partial: bool) -> Vec<UsageEvent> {
        match self.chunks.front() {
            Some(chunk) if partial || chunk.len() == batch_size => {
                let batch = self.chunks.pop_front().unwrap_or_default();
                self.len -= batch.len();
                self.taken += batch.len() as u64;
                batch
            }
            _ => Vec::new(),
        }
    }

    /// Every queued event, oldest first.
    pub(super) fn drain(&mut self) -> Vec<UsageEvent> {
        self.len = 0;
        self.chunks.drain(..).flatten().collect()
    }
}

/// What `flush` waits on. Batches finish out of order, so queue progress is
/// the contiguous prefix of queue sequence numbers whose batches settled.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    /// Every queued event below this sequence number is settled.
    pub(super) queue_settled: u64,
    /// Own spilled events delivered from the spool.
    pub(super) spill_settled: u64,
    /// The recorder stopped accepting events: `flush` stops waiting.
    pub(super) stopped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrgId;

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
