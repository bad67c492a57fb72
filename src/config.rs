//! Range checks shared by every builder, so that a setting out of range is
//! a `Config` error naming it at `build()`/`start()`, never a panic later.

use std::time::Duration;

use crate::error::{Error, Result};

/// `Config` naming `setting` unless `min <= value <= max`.
pub(crate) fn check_duration(
    setting: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<()> {
    if value < min || value > max {
        return Err(Error::config(format!(
            "{setting} is {value:?}; it must be between {min:?} and {max:?}"
        )));
    }
    Ok(())
}

/// `Config` naming `setting` unless `min <= value <= max`.
pub(crate) fn check_count(setting: &str, value: usize, min: usize, max: usize) -> Result<()> {
    if value < min || value > max {
        return Err(Error::config(format!(
            "{setting} is {value}; it must be between {min} and {max}"
        )));
    }
    Ok(())
}

/// The setters, range checks and backoff of a retry policy: a `Copy`
/// struct with `max_retries`, `min_delay` and `max_delay` (exponential
/// backoff with jitter), which each client that retries defines with its
/// own defaults and documentation. `$setting` prefixes the names a
/// `Config` error gives (`"retry"` → `retry max_retries`).
#[cfg(any(feature = "supabase", feature = "webhook"))]
macro_rules! retry_policy {
    ($policy:ty, $setting:literal) => {
        impl $policy {
            /// Retries after the first attempt: 0 to 20; 0 disables retrying.
            pub fn max_retries(mut self, retries: usize) -> Self {
                self.max_retries = retries;
                self
            }

            /// The first and the longest delay: from 1 ms, the longest at
            /// least the first and at most a minute.
            pub fn delays(mut self, min: std::time::Duration, max: std::time::Duration) -> Self {
                self.min_delay = min;
                self.max_delay = max;
                self
            }

            pub(crate) fn validate(&self) -> $crate::error::Result<()> {
                use std::time::Duration;
                $crate::config::check_count(
                    concat!($setting, " max_retries"),
                    self.max_retries,
                    0,
                    20,
                )?;
                $crate::config::check_duration(
                    concat!($setting, " min_delay"),
                    self.min_delay,
                    Duration::from_millis(1),
                    Duration::from_secs(60),
                )?;
                $crate::config::check_duration(
                    concat!($setting, " max_delay"),
                    self.max_delay,
                    self.min_delay,
                    Duration::from_secs(60),
                )
            }

            pub(crate) fn backoff(&self) -> backon::ExponentialBuilder {
                backon::ExponentialBuilder::default()
                    .with_min_delay(self.min_delay)
                    .with_max_delay(self.max_delay)
                    .with_max_times(self.max_retries)
                    .with_jitter()
            }
        }
    };
}
#[cfg(any(feature = "supabase", feature = "webhook"))]
pub(crate) use retry_policy;
