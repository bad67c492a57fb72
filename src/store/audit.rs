//! [`AuditStore`]: the audit log: who changed what in an organization, written with the change.
//!
//! Nothing here writes the log: every backend writes an event with each
//! change its other capabilities make (the SQL stores by triggers, in the
//! change's transaction; `MemoryStore` under its lock). Who acted travels
//! beside the calls, in the task's [`AuditContext`](crate::model::audit::AuditContext).

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ audit_store_methods {
    fn audit_log(query: &crate::model::audit::AuditQuery) -> crate::error::Result<Vec<crate::model::audit::AuditEvent>>;
});

/// The audit log: who changed what in an organization, written with the change.
///
/// Part of the [`Store`](super::Store) bundle. The contract (checked by the
/// contract suite on every backend):
///
/// - every change the other capabilities make to an organization, a
///   membership, a feature row, a limit, a rate limit, an invitation or a
///   verified domain writes exactly one event, atomically
///   with the change (a failed change writes none; an update that changes
///   nothing writes none), with the row before and after; deleting an
///   organization also writes the deletion of each of its rows;
/// - the event's actor is the [`AuditContext`](crate::model::audit::AuditContext) the call ran in (the
///   service when none); on the SQL stores a user JWT's is always its own
///   user;
/// - usage (recording, holds, counters, alerts) writes none;
/// - events are never changed or deleted through the store.
#[async_trait]
pub trait AuditStore: Backend {
    /// The events `query` admits ([`AuditQuery::admits`](crate::model::audit::AuditQuery::admits)),
    /// newest first (time, then id, both descending), at most `query.limit`.
    /// `query.org: None` reads every organization's. The SQL stores refuse
    /// that to a user JWT (`InvalidInput`), and a user JWT below admin of
    /// `query.org` (`PermissionDenied`).
    async fn audit_log(
        &self,
        query: &crate::model::audit::AuditQuery,
    ) -> crate::error::Result<Vec<crate::model::audit::AuditEvent>>;
}

forward_capability!(AuditStore, audit_store_methods);

pub(crate) use audit_store_methods;
