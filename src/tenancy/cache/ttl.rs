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
    /// The first instant (same unit) the entry is stale at: `loaded_at`
    /// plus the TTL, or the value's own deadline if that is earlier.
    stale_at: i64,
}

/// Size-bounded, TTL-expiring cache. A TTL of zero disables it. Times are
/// microseconds since the Unix epoch, read with
/// [`Clock::coarse_unix_micros`](crate::clock::Clock::coarse_unix_micros).
/// An entry inserted with a deadline of its own
/// ([`insert_until`](Self::insert_until)) is stale at the earlier of its
/// deadline and its TTL: a hit compares one integer more, nothing else.
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
        // within the TTL on either side (and before the entry's deadline).
        now < entry.stale_at && now.saturating_sub(entry.loaded_at) > -self.ttl_micros
    }

    /// `read` applied to the cached value, if loaded less than a TTL before
    /// `now` and before its own deadline; the value is borrowed, not
    /// cloned.
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
        self.get_or_load_until(key, now, async { Ok((load.await?, None)) })
            .await
    }

    /// As [`get_or_load`](Self::get_or_load), for a load that also says
    /// until when its value holds (microseconds since the Unix epoch;
    /// `None`: for the TTL).
    pub(super) async fn get_or_load_until(
        &self,
        key: K,
        now: i64,
        load: impl Future<Output = crate::error::Result<(V, Option<i64>)>>,
    ) -> crate::error::Result<V> {
        if let Some(hit) = self.get(&key, now) {
            return Ok(hit);
        }
        let generation = self.generation();
        let (value, until) = load.await?;
        self.insert_until(key, value.clone(), now, generation, until);
        Ok(value)
    }

    /// Read before loading; pass to [`insert`](Self::insert).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a value loaded at `now`, unless an invalidation happened since
    /// `generation` was read.
    pub(super) fn insert(&self, key: K, value: V, now: i64, generation: u64) {
        self.insert_until(key, value, now, generation, None);
    }

    /// As [`insert`](Self::insert), for a value that holds only until
    /// `until` (microseconds since the Unix epoch; `None`: for the TTL): it
    /// is stale from the earlier of `until` and the TTL on. A value already
    /// stale at `now` is not cached.
    pub(super) fn insert_until(
        &self,
        key: K,
        value: V,
        now: i64,
        generation: u64,
        until: Option<i64>,
    ) {
        if !self.enabled() || self.generation() != generation {
            return;
        }
        let stale_at = until
            .unwrap_or(i64::MAX)
            .min(now.saturating_add(self.ttl_micros));
        if stale_at <= now {
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
                stale_at,
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

    /// Drops every entry; a load that began before is not cached after.
    pub(super) fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
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
    fn an_entry_with_a_deadline_is_stale_from_it_on() {
        let t0 = 1_000_000_000;
        let cache = TtlCache::new(10, Duration::from_secs(30));
        cache.insert_until(1, "trial", t0, cache.generation(), Some(t0 + 2 * SECOND));
        assert_eq!(cache.get(&1, t0 + 2 * SECOND - 1), Some("trial"));
        assert_eq!(cache.get(&1, t0 + 2 * SECOND), None);
        // A deadline past the TTL: the TTL wins.
        cache.insert_until(2, "long", t0, cache.generation(), Some(t0 + 3600 * SECOND));
        assert_eq!(cache.get(&2, t0 + 29 * SECOND), Some("long"));
        assert_eq!(cache.get(&2, t0 + 30 * SECOND), None);
        // Already stale: not cached at all.
        cache.insert_until(3, "gone", t0, cache.generation(), Some(t0));
        assert_eq!(cache.get(&3, t0), None);
        // Dropping everything also skips a load that began before.
        let generation = cache.generation();
        cache.insert_until(4, "kept", t0, generation, None);
        cache.invalidate_all();
        assert_eq!(cache.get(&4, t0), None);
        cache.insert(4, "stale load", t0, generation);
        assert_eq!(cache.get(&4, t0), None);
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
