//! [`RateLimitStore`]: short-window rate limits: the GCRA state, changed by compare-and-set.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ rate_limit_store_methods {
});

/// Short-window rate limits: the GCRA state, changed by compare-and-set.
///
/// An optional capability, outside the [`Store`](super::Store) bundle: a
/// backend that has it returns itself from [`Backend::rate_limits`].
#[async_trait]
pub trait RateLimitStore: Backend {}

forward_capability!(RateLimitStore, rate_limit_store_methods);

pub(crate) use rate_limit_store_methods;
