//! [`AuditStore`]: the audit log: who changed what in an organization, written with the change.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ audit_store_methods {
});

/// The audit log: who changed what in an organization, written with the change.
///
/// Part of the [`Store`](super::Store) bundle.
#[async_trait]
pub trait AuditStore: Backend {}

forward_capability!(AuditStore, audit_store_methods);

pub(crate) use audit_store_methods;
