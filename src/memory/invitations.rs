//! `InvitationStore` for [`MemoryStore`].

use async_trait::async_trait;

use crate::store::InvitationStore;

use super::MemoryStore;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct InvitationState {}

#[async_trait]
impl InvitationStore for MemoryStore {}
