//! A bounded cache whose entries expire after a time-to-live measured on the
//! injected clock, and whose hits are read in place.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

struct Entry<V> {
    value: V,
    /// Microseconds since the Unix epoch, from `Clock::coarse_unix_micros`.
    loaded_at: i64,
}

/// Size-bounded, TTL-expiring cache. A TTL of zero disables it. Times are
/// microseconds since the Unix epoch, read with
/// [`Clock::coarse_unix_micros`](crate::clock::Clock::coarse_unix_micros).
///
/// A hit is read under the shard's read lock ([`with`](Self::with)), not
/// cloned: this is the hot path of every `has_feature`.
///
/// Past its capacity, an insert first drops expired entries, then the
/// oldest-loaded of the rest, a sixteenth of the capacity at a time, so
/// the scan that finds them is paid once per many inserts.
///
/// Invalidation bumps a generation counter; a load that started before an
/// invalidation is not inserted afterwards, so a change made through the
/// same instance is never hidden by a slow concurrent read of the old state.
pub(super) struct TtlCache<K, V> {
    entries: DashMap<K, Entry<V>, foldhash::fast::RandomState>,
    capacity: usize,
    ttl_micros: i64,
    generation: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache of up to `capacity` entries (at least one), each kept for
    /// `ttl` (saturating at `i64::MAX` microseconds).
    pub(super) fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            entries: DashMap::default(),
            capacity: capacity.max(1),
            ttl_micros: i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX),
            generation: AtomicU64::new(0),
        }
    }

    fn enabled(&self) -> bool {
        self.ttl_micros > 0
    }

    fn fresh(&self, entry: &Entry<V>, now: i64) -> bool {
        // A clock set backwards makes the age negative: fresh only while
        // within the TTL on either side.
        let age = now.saturating_sub(entry.loaded_at);
        age < self.ttl_micros && age > -self.ttl_micros
    }

    /// `read` applied to the cached value, if loaded less than a TTL before
    /// `now`; the value is borrowed, not cloned.
    pub(super) fn with<R>(&self, key: &K, now: i64, read: impl FnOnce(&V) -> R) -> Option<R> {
        if !self.enabled() {
            return None;
        }
        let entry = self.entries.get(key)?;
        self.fresh(&entry, now).then(|| read(&entry.value))
    }

    /// The cached value, if loaded less than a TTL before `now`.
    pub(super) fn get(&self, key: &K, now: i64) -> Option<V> {
        self.with(key, now, V::clone)
    }

    /// The cached value for `key`, or else `load`'s, which is cached unless
    /// an invalidation happened while it loaded.
    pub(super) async fn get_or_load(
        &self,
        key: K,
        now: i64,
        load: impl Future<Output = crate::error::Result<V>>,
    ) -> crate::error::Result<V> {
        if let Some(hit) = self.get(&key, now) {
            return Ok(hit);
        }
        let generation = self.generation();
        let value = load.await?;
        self.insert(key, value.clone(), now, generation);
        Ok(value)
    }

    /// Read before loading; pass to [`insert`](Self::insert).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a value loaded at `now`, unless an invalidation happened since
    /// `generation` was read.
    pub(super) fn insert(&self, key: K, value: V, now: i64, generation: u64) {
        if !self.enabled() || self.generation() != generation {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        self.entries.insert(
            key,
            Entry {
                value,
                loaded_at: now,
            },
        );
    }

    /// Drops expired entries, then the oldest-loaded, until a sixteenth of
    /// the capacity is free.
    fn make_room(&self, now: i64) {
        self.entries.retain(|_, entry| self.fresh(entry, now));
        let target = self.capacity - (self.capacity / 16).max(1);
        let excess = self.entries.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut by_age: Vec<(i64, K)> = self
            .entries
            .iter()
            .map(|e| (e.loaded_at, e.key().clone()))
            .collect();
        by_age.sort_unstable_by_key(|(loaded_at, _)| *loaded_at);
        for (_, key) in by_age.into_iter().take(excess) {
            self.entries.remove(&key);
        }
    }

    pub(super) fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(key);
    }
}

impl<K: Eq + Hash, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("ttl_micros", &self.ttl_micros)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn expires_after_ttl_and_skips_stale_loads() {
        let t0 = 1_000_000_000;
        let cache = TtlCache::new(10, Duration::from_secs(5));
        let generation = cache.generation();
        cache.insert(1, "a", t0, generation);
        assert_eq!(cache.get(&1, t0 + 4 * SECOND), Some("a"));
        assert_eq!(cache.with(&1, t0, |v| v.len()), Some(1));
        assert_eq!(cache.get(&1, t0 + 5 * SECOND), None);

        // A load that began before an invalidation is dropped.
        let stale_generation = cache.generation();
        cache.invalidate(&1);
        cache.insert(1, "old", t0, stale_generation);
        assert_eq!(cache.get(&1, t0), None);
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = TtlCache::new(10, Duration::ZERO);
        cache.insert(1, "a", 0, cache.generation());
        assert_eq!(cache.get(&1, 0), None);
    }

    #[test]
    fn stays_within_its_capacity_dropping_the_oldest() {
        let cache = TtlCache::new(32, Duration::from_secs(3600));
        for key in 0..100i64 {
            cache.insert(key, key, key * SECOND, cache.generation());
            assert!(cache.entries.len() <= 32, "{}", cache.entries.len());
        }
        // The newest survive.
        assert_eq!(cache.get(&99, 99 * SECOND), Some(99));
        assert_eq!(cache.get(&0, 99 * SECOND), None);
    }
}
