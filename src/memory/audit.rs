//! `AuditStore` for [`MemoryStore`].

use async_trait::async_trait;

use crate::store::AuditStore;

use super::MemoryStore;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct AuditState {}

#[async_trait]
impl AuditStore for MemoryStore {}
