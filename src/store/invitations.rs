//! [`InvitationStore`]: invitations to join an organization, by email or by shareable link.

use std::sync::Arc;

use async_trait::async_trait;

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ invitation_store_methods {
});

/// Invitations to join an organization, by email or by shareable link.
///
/// Part of the [`Store`](super::Store) bundle.
#[async_trait]
pub trait InvitationStore: Backend {}

forward_capability!(InvitationStore, invitation_store_methods);

pub(crate) use invitation_store_methods;
