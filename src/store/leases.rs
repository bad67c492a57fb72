//! [`LeaseStore`]: budget leases: slices of an organization's remaining budget an instance decides on locally.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ lease_store_methods {
});

/// Budget leases: slices of an organization's remaining budget an instance decides on locally.
///
/// An optional capability, outside the [`Store`](super::Store) bundle: a
/// backend that has it returns itself from [`Backend::leases`].
#[async_trait]
pub trait LeaseStore: Backend {}

forward_capability!(LeaseStore, lease_store_methods);

pub(crate) use lease_store_methods;
