//! Locking a mutex whatever panicked while it was held.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking its data even if a thread panicked holding it.
/// Every mutex in this crate guards data that is consistent between
/// statements (each change validates before it mutates), so poison says
/// nothing about the data and must not turn one panic into many.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
