//! `RateLimitStore` for [`MemoryStore`].

use async_trait::async_trait;

use crate::store::RateLimitStore;

use super::MemoryStore;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct RateLimitState {}

#[async_trait]
impl RateLimitStore for MemoryStore {}
