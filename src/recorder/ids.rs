//! Event ids: UUIDv7 from a per-recorder counter, unique by construction.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ids::EventId;

/// Event ids for one recorder: UUIDv7, the recording millisecond, then a
/// 74-bit counter that starts at a random value and goes up by one per id
/// (RFC 9562, section 6.2, method 1). Ids are unique within a recorder by
/// construction, so one random draw serves them all; two recorders'
/// counters would have to start within a few billion of each other, out of
/// 2^74, to collide. Ids are not secrets: they need only be unique.
#[derive(Debug)]
pub(super) struct EventIds {
    /// The counter's top 10 bits, fixed.
    high: u128,
    /// The counter's low 64 bits, the part that counts: unique for 2^64
    /// ids, far more than a recorder will ever make.
    low: AtomicU64,
}

impl EventIds {
    pub(super) fn new() -> Self {
        let seed = Uuid::new_v4().as_u128();
        EventIds {
            high: (seed >> 64) & 0x3ff,
            low: AtomicU64::new(seed as u64),
        }
    }

    pub(super) fn next(&self, at: DateTime<Utc>) -> EventId {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
