//! `LeaseStore` for [`MemoryStore`].

use async_trait::async_trait;

use crate::store::LeaseStore;

use super::MemoryStore;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct LeaseState {}

#[async_trait]
impl LeaseStore for MemoryStore {}
