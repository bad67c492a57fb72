//! Time, injected.
//!
//! The core reads the clock once per operation and passes `now` down; stores
//! never read it. Tests use [`FakeClock`] to cross day, month and
//! daylight-saving boundaries on demand.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// The current time in microseconds since the Unix epoch, possibly a few
    /// milliseconds coarse. Caches read it on every hit to enforce their
    /// TTL, so it should be cheap; the default derives it from
    /// [`now`](Self::now).
    fn coarse_unix_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

/// The system's wall clock. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// On Linux, `CLOCK_REALTIME_COARSE`: a few nanoseconds instead of a
    /// full clock read, at the kernel tick's resolution (1–4 ms), which is
    /// plenty for cache TTLs of seconds.
    #[cfg(target_os = "linux")]
    fn coarse_unix_micros(&self) -> i64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        t.tv_sec.saturating_mul(1_000_000) + t.tv_nsec / 1_000
    }
}

/// A clock that moves only when told to. Clones share the same time, so a
/// test can keep one handle and give another to [`Tenancy`](crate::Tenancy).
///
/// ```
/// use std::time::Duration;
/// use tenancy::clock::{Clock, FakeClock};
///
/// let clock = FakeClock::at("2026-03-31T23:59:00Z");
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(120));
/// assert_eq!(shared.now().to_rfc3339(), "2026-04-01T00:01:00+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct FakeClock {
    micros_since_epoch: Arc<AtomicI64>,
}

impl FakeClock {
    /// A clock stopped at `instant`.
    pub fn new(instant: DateTime<Utc>) -> Self {
        FakeClock {
            micros_since_epoch: Arc::new(AtomicI64::new(instant.timestamp_micros())),
        }
    }

    /// A clock stopped at an RFC 3339 time.
    ///
    /// # Panics
    /// If `rfc3339` does not parse: this constructor is for tests, where a
    /// typo should stop the test at once.
    pub fn at(rfc3339: &str) -> Self {
        let instant = DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("FakeClock::at({rfc3339:?}): {e}"));
        FakeClock::new(instant.with_timezone(&Utc))
    }

    /// Moves the clock to `instant` (forwards or backwards).
    pub fn set(&self, instant: DateTime<Utc>) {
        self.micros_since_epoch
            .store(instant.timestamp_micros(), Ordering::SeqCst);
    }

    /// Moves the clock forwards by `by`, stopping at the latest instant
    /// chrono represents.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        let latest = DateTime::<Utc>::MAX_UTC.timestamp_micros();
        let _ = self
            .micros_since_epoch
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(micros).min(latest))
            });
    }
}

impl Default for FakeClock {
    /// Stopped at the Unix epoch.
    fn default() -> Self {
        FakeClock::new(DateTime::UNIX_EPOCH)
    }
}

impl Clock for FakeClock {
    fn coarse_unix_micros(&self) -> i64 {
        self.micros_since_epoch.load(Ordering::SeqCst)
    }

    fn now(&self) -> DateTime<Utc> {
        let micros = self.micros_since_epoch.load(Ordering::SeqCst);
        Utc.timestamp_micros(micros)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
