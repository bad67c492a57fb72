//! [`LimitStore`]: usage limits.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{LimitId, OrgId};
use crate::limits::Limit;

use super::Backend;

/// Usage limits: one per (organization, scope, metric, period).
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names.
#[async_trait]
pub trait LimitStore: Backend {
    /// The organization's limits, by creation time then id.
    async fn limits(&self, org: OrgId) -> Result<Vec<Limit>>;

    /// Sets a limit: replaces the value, mode and expiry of the existing limit with
    /// the same (org, scope, metric, period), keeping its id and creation
    /// time, or inserts `limit`. Returns the stored limit. `NotFound` if the
    /// organization does not exist.
    async fn put_limit(&self, limit: &Limit) -> Result<Limit>;

    /// Deletes a limit; whether it existed.
    async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool>;
}

forward_capability!(LimitStore, limit_store_methods);
