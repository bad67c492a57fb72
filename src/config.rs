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
