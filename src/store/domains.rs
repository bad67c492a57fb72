//! [`DomainStore`]: verified email domains whose users may join an organization on their own.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ domain_store_methods {
});

/// Verified email domains whose users may join an organization on their own.
///
/// Part of the [`Store`](super::Store) bundle.
#[async_trait]
pub trait DomainStore: Backend {}

forward_capability!(DomainStore, domain_store_methods);

pub(crate) use domain_store_methods;
