//! `DomainStore` for [`MemoryStore`].

use async_trait::async_trait;

use crate::store::DomainStore;

use super::MemoryStore;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct DomainState {}

#[async_trait]
impl DomainStore for MemoryStore {}
